"""One package per method of the study, each with its model, loss, data and `run.py` (the fold loop
a notebook calls, returning a typed result):

- conventional: Whisper encoder + average pooling + linear layer (the baseline of every paper);
- attentive_pooling: Shendabadi et al., attentive and QKV pooling, and the layer-by-layer study;
- whisper_er: Fukuda et al., Whisper-ER and SerialMTL (emotion, gender and text as tokens);
- phoneme_mtl: Li et al., layer fusion with an emotion-tagged phoneme CTC task;
- emo_dna: Ye et al., cross-corpus adaptation with decoupling and dual-level alignment.
"""
