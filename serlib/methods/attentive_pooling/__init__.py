"""Attentive and QKV pooling on Whisper features, and the layer-by-layer analysis (Shendabadi et al.)."""
