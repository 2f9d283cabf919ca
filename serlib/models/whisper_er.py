"""Whisper-ER and SerialMTL (Fukuda et al.): emotion, gender and text as tokens of the whole Whisper.

The vocabulary gains one special token per emotion class and per gender; the decoder is trained to
emit, after the usual prefix `<|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|>` (given,
never scored), the tokens of the chosen tasks in the paper's order, then `<|endoftext|>`:

    STL-SER  <|happy|> <|endoftext|>
    STL-ASR  Really good . <|endoftext|>
    STL-GR   <|male|> <|endoftext|>
    A+G+S    Really good . <|male|> <|happy|> <|endoftext|>

Cross-attention here masks the padding of variable-length encoder states (transformers' Whisper
decoder passes no encoder mask: it always sees 30 s), so batches of real-length states from the
feature cache decode exactly as each utterance alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from .encoding import encode_batch
from .heads import pad_frames

TASKS = ("asr", "gender", "ser")  # the paper's serial order: text, then gender, then emotion
GENDER_TOKENS = ("male", "female")


def special(name: str) -> str:
    return f"<|{name}|>"


# --- vocabulary -------------------------------------------------------------------------------------


@dataclass
class ERVocabulary:
    """Ids of the new task tokens and of the prefix, for one extended Whisper tokenizer."""

    emotions: dict[str, int]  # class name -> token id
    genders: dict[str, int]
    prefix: list[int]  # start of transcript [, language, task], no timestamps
    eot: int
    init: str = ""  # how the new embedding rows were initialised, for reports

    @property
    def emotion_ids(self) -> list[int]:
        return list(self.emotions.values())


def extend_vocabulary(whisper, emotions: list[str], genders: tuple[str, ...] = GENDER_TOKENS,
                      language: str | None = "en", init: str = "label") -> ERVocabulary:
    """Add `<|emotion|>` / `<|gender|>` tokens to the tokenizer and grow the tied embedding matrix.

    Pretrained rows are left untouched. New rows start as the mean embedding of the label's own
    word pieces (" happy" -> its BPE tokens) when `init="label"`, so each new token begins near what
    the decoder already associates with the word; `init="mean"` uses the mean of all pretrained rows.
    Re-extending with tokens that exist already reuses their ids (nothing is added twice).
    """
    tok, model = whisper.tokenizer, whisper.model
    names = [special(e) for e in emotions] + [special(g) for g in genders]
    new = [n for n in names if n not in tok.get_vocab()]
    old_rows = model.get_input_embeddings().weight.shape[0]
    complete_timestamps(tok, old_rows)
    if new:
        tok.add_tokens(new, special_tokens=True)
    ids = dict(zip(names, tok.convert_tokens_to_ids(names)))
    size = max(len(tok), old_rows)
    if size > old_rows:
        model.resize_token_embeddings(size, mean_resizing=False)
        weight = model.get_input_embeddings().weight
        with torch.no_grad():
            mean = weight[:old_rows].mean(dim=0)
            for name in new:
                row = ids[name]
                if init == "label":
                    pieces = tok.encode(" " + name[2:-2], add_special_tokens=False)
                    weight[row] = weight[pieces].mean(dim=0)
                elif init == "mean":
                    weight[row] = mean
                else:
                    raise ValueError(f"unknown init {init!r}: use 'label' or 'mean'")
    model.config.vocab_size = model.get_input_embeddings().weight.shape[0]
    return ERVocabulary(
        emotions={e: ids[special(e)] for e in emotions},
        genders={g: ids[special(g)] for g in genders},
        prefix=prefix_ids(whisper, language),
        eot=tok.convert_tokens_to_ids("<|endoftext|>"),
        init=init,
    )


def complete_timestamps(tokenizer, model_rows: int) -> None:
    """Give the tokenizer the timestamp tokens <|0.00|> ... <|30.00|> it lacks, if it lacks them.

    Some converted English-only tokenizers stop before the 1,501 timestamp tokens that the model's
    embedding matrix still has rows for; new tokens would otherwise take those pretrained rows.
    """
    missing = model_rows - len(tokenizer)
    if missing <= 0:
        return
    if missing != 1501:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model {model_rows} rows: "
                         "not the 1,501 timestamp tokens, so new tokens cannot be placed safely")
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(missing)], special_tokens=True)


def prefix_ids(whisper, language: str | None) -> list[int]:
    """The given decoder prefix; English-only checkpoints (no language/task tokens) get SOT + no-timestamps."""
    tok = whisper.tokenizer
    sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
    notimestamps = tok.convert_tokens_to_ids("<|notimestamps|>")
    if not whisper.multilingual:
        return [sot, notimestamps]
    if not language:
        raise ValueError("a multilingual Whisper needs the utterance language for its prefix")
    lang = tok.convert_tokens_to_ids(special(language))
    if lang is None or lang == tok.unk_token_id:
        raise ValueError(f"Whisper has no language token {special(language)}")
    return [sot, lang, tok.convert_tokens_to_ids("<|transcribe|>"), notimestamps]


class SplitEmbedding(nn.Module):
    """Token embeddings (and the tied output layer) whose pretrained rows stay fixed and new rows train.

    On CPU most of a short-target decoder step goes into the gradient and optimizer update of the
    51k x d embedding matrix; keeping its pretrained rows fixed and training only the task tokens'
    rows (plus every decoder layer) makes a step several times cheaper. The GPU profile trains all.
    """

    def __init__(self, weight: torch.Tensor, n_new: int):
        super().__init__()
        self.base = nn.Parameter(weight[:-n_new].detach().clone(), requires_grad=False)
        self.extra = nn.Parameter(weight[-n_new:].detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.base, self.extra])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        old = self.base.shape[0]
        pretrained = nn.functional.embedding(ids.clamp(max=old - 1), self.base)
        added = nn.functional.embedding((ids - old).clamp(min=0), self.extra)
        return torch.where((ids < old)[..., None], pretrained, added)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h @ self.base.T, h @ self.extra.T], dim=-1)


def train_new_rows_only(model, vocab: ERVocabulary) -> None:
    """Fix the pretrained token embeddings; only the new task tokens' rows keep learning."""
    first_new = min(vocab.emotion_ids + list(vocab.genders.values()))
    weight = model.model.decoder.embed_tokens.weight
    if sorted(vocab.emotion_ids + list(vocab.genders.values())) != list(range(first_new, weight.shape[0])):
        raise ValueError("the task tokens must be the last rows of the embedding matrix")
    model.model.decoder.embed_tokens = SplitEmbedding(weight, weight.shape[0] - first_new)
    model.proj_out.weight.requires_grad_(False)  # the old tied matrix: no longer used, never trained


def _vocabulary_logits(model, h: torch.Tensor) -> torch.Tensor:
    tokens = model.model.decoder.embed_tokens
    return tokens.logits(h) if isinstance(tokens, SplitEmbedding) else model.proj_out(h)


def randomise_decoder(model: nn.Module, seed: int) -> None:
    """The paper's ablation (Table 5): every decoder weight re-initialised at random, encoder kept.

    The token embeddings are the decoder's input and (tied) output layer, so they are re-drawn too.
    """
    torch.manual_seed(seed)
    decoder = model.model.decoder
    for module in decoder.modules():
        if isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm)):
            model._init_weights(module)
    # Whisper's decoder positions are learned: _init_weights leaves them, so draw them like tokens.
    nn.init.normal_(decoder.embed_positions.weight, std=model.config.init_std)


# --- targets ----------------------------------------------------------------------------------------


@dataclass
class Targets:
    """A batch of teacher-forced sequences: inputs, scored labels and which task each label serves."""

    input_ids: torch.Tensor  # [B, L] prefix + targets, without the final token
    labels: torch.Tensor  # [B, L] next token, -100 where not scored (prefix, padding)
    task: torch.Tensor  # [B, L] index into `tasks` of each scored label, -1 elsewhere
    tasks: tuple[str, ...]


def target_tokens(vocab: ERVocabulary, tokenizer, tasks: tuple[str, ...], text: str = "",
                  gender: str = "", emotion: str = "") -> list[tuple[int, int]]:
    """(token id, task index) pairs after the prefix, in the paper's order, ending with <|endoftext|>.

    `<|endoftext|>` is scored and counted with the last task of the sequence (for STL-SER, I = 2 as
    in the paper): it is what closes that task's output.
    """
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise ValueError(f"tasks {tasks} must be a non-empty subset of {TASKS}")
    out: list[tuple[int, int]] = []
    ordered = [t for t in TASKS if t in tasks]
    for t in ordered:
        i = ordered.index(t)
        if t == "asr":
            if not text.strip():
                raise ValueError("the ASR task needs a transcript")
            out += [(tid, i) for tid in tokenizer.encode(" " + text.strip(), add_special_tokens=False)]
        elif t == "gender":
            if gender not in vocab.genders:
                raise ValueError(f"gender {gender!r} has no token; known: {list(vocab.genders)}")
            out.append((vocab.genders[gender], i))
        else:
            if emotion not in vocab.emotions:
                raise ValueError(f"emotion {emotion!r} has no token; known: {list(vocab.emotions)}")
            out.append((vocab.emotions[emotion], i))
    out.append((vocab.eot, len(ordered) - 1))
    return out


def build_targets(vocab: ERVocabulary, tokenizer, tasks: tuple[str, ...], rows: list[dict],
                  prefixes: list[list[int]] | None = None) -> Targets:
    """Teacher-forcing tensors for a batch of utterances (dicts with text, gender, emotion)."""
    ordered = tuple(t for t in TASKS if t in tasks)
    seqs, roles = [], []
    for i, row in enumerate(rows):
        prefix = prefixes[i] if prefixes else vocab.prefix
        pairs = target_tokens(vocab, tokenizer, ordered, row.get("text", ""), row.get("gender", ""),
                              row.get("emotion", ""))
        seqs.append(prefix + [t for t, _ in pairs])
        roles.append([-1] * len(prefix) + [k for _, k in pairs])
    length = max(len(s) for s in seqs) - 1
    input_ids = torch.full((len(seqs), length), vocab.eot, dtype=torch.long)
    labels = torch.full((len(seqs), length), -100, dtype=torch.long)
    task = torch.full((len(seqs), length), -1, dtype=torch.long)
    for b, (seq, role) in enumerate(zip(seqs, roles)):
        n = len(seq) - 1
        input_ids[b, :n] = torch.tensor(seq[:-1])
        labels[b, :n] = torch.tensor(seq[1:])
        task[b, :n] = torch.tensor(role[1:])
        labels[b, :n][task[b, :n] < 0] = -100
    return Targets(input_ids, labels, task, ordered)


# --- losses -----------------------------------------------------------------------------------------


def stl_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Equation 5: L = -sum_i log P(y_i | X) over the scored tokens of each utterance, batch mean."""
    nll = nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100, reduction="none")
    return nll.sum(dim=1).mean()


def serial_mtl_loss(logits: torch.Tensor, labels: torch.Tensor, task: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """Equation 6: L = sum_t -(1/I(t)) sum_{i in task t} log P(y_i | X), batch mean.

    Each task's negative log-likelihood is divided by its own token count I(t), so a long
    transcript does not outweigh the single gender or emotion token. `<|endoftext|>` belongs to
    the last task (see `target_tokens`). With one task this is the STL loss divided by I.
    """
    nll = nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100, reduction="none")
    total = torch.zeros(labels.shape[0], device=logits.device)
    for t in range(n_tasks):
        member = (task == t) & (labels != -100)
        count = member.sum(dim=1)
        if bool((count == 0).any()):
            raise ValueError(f"task {t} has no scored token in some utterance")
        total = total + (nll * member).sum(dim=1) / count
    return total.mean()


# --- decoding ---------------------------------------------------------------------------------------


def _encoder_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, S] bool (True = real frame) -> additive [B, 1, 1, S]."""
    add = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    add.masked_fill_(~mask, torch.finfo(dtype).min)
    return add[:, None, None, :]


@dataclass
class CrossKV:
    """Cross-attention keys and values [B, layers, 2, S, D], computed once from frozen projections.

    On CPU the decoder's cross-attention key/value projections of the encoder states cost more than
    the rest of a short-target decoder step; when those projections are frozen (and the encoder is),
    their outputs never change, so they are computed once per utterance (`cross_attention_kv`).
    """

    kv: torch.Tensor

    def repeat_interleave(self, n: int) -> "CrossKV":
        return CrossKV(self.kv.repeat_interleave(n, dim=0))

    def to(self, *args, **kwargs) -> "CrossKV":  # lets accelerate move batches holding it
        return CrossKV(self.kv.to(*args, **kwargs))


@dataclass
class MelBatch:
    """Padded log-mels [B, T, n_mels] for full fine-tuning: the encoder runs inside each step.

    Its mask is over mel frames; `encode` turns both into encoder states and their frame mask.
    """

    mels: torch.Tensor

    def to(self, *args, **kwargs) -> "MelBatch":  # lets accelerate move batches holding it
        return MelBatch(self.mels.to(*args, **kwargs))

    def encode(self, model, mel_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = model.model.encoder
        mels = [self.mels[i, : int(n)].T for i, n in enumerate(mel_mask.sum(dim=1).tolist())]
        states, frame_mask = encode_batch(encoder, mels, layers=[len(encoder.layers)])
        return states[:, 0], frame_mask


# What a batch's encoder side holds: precomputed cross-attention K/V (CPU profile), cached encoder
# states (decoder fine-tuning), or log-mels (full fine-tuning of encoder and decoder).
ENCODER_INPUTS = ("kv", "states", "mel")


def encoder_batch(padded: torch.Tensor, inputs: str) -> torch.Tensor | CrossKV | MelBatch:
    """A padded batch of encoder inputs as decoder_logits takes it (see ENCODER_INPUTS)."""
    if inputs not in ENCODER_INPUTS:
        raise ValueError(f"encoder inputs {inputs!r}: use one of {ENCODER_INPUTS}")
    return CrossKV(padded) if inputs == "kv" else MelBatch(padded) if inputs == "mel" else padded


@torch.no_grad()
def cross_attention_kv(model, encoder_states: torch.Tensor) -> CrossKV:
    """Keys and values of every decoder layer's cross-attention for encoder states [B, S, D]."""
    layers = model.model.decoder.layers
    return CrossKV(torch.stack([torch.stack([layer.encoder_attn.k_proj(encoder_states),
                                             layer.encoder_attn.v_proj(encoder_states)], dim=1)
                                for layer in layers], dim=1))


def freeze_cross_attention_kv(model) -> None:
    """Fix the decoder's cross-attention key/value projections (required for precomputed CrossKV)."""
    for layer in model.model.decoder.layers:
        layer.encoder_attn.k_proj.requires_grad_(False)
        layer.encoder_attn.v_proj.requires_grad_(False)


def _prefill(cache: EncoderDecoderCache, cross: CrossKV, heads: int, dtype: torch.dtype) -> None:
    b, n_layers, _, frames, dim = cross.kv.shape
    for i in range(n_layers):
        k, v = (cross.kv[:, i, j].to(dtype).view(b, frames, heads, dim // heads).transpose(1, 2) for j in (0, 1))
        cache.cross_attention_cache.update(k, v, i)
        cache.is_updated[i] = True  # transformers then reads them instead of projecting the states


def decoder_logits(model, input_ids: torch.Tensor, encoder: torch.Tensor | CrossKV, encoder_mask: torch.Tensor,
                   cache: EncoderDecoderCache | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Logits [B, T, V] of Whisper's decoder over real encoder frames only.

    Mirrors transformers' WhisperDecoder.forward, adding the cross-attention mask it lacks.
    `encoder` is the encoder states [B, S, D], their precomputed cross-attention keys/values, or
    log-mels (`MelBatch`, run through the encoder here: training only, decoding encodes once first).
    With `cache`, `input_ids` are the new tokens only and the cache grows by them.
    `positions` [B, T] selects the output positions whose logits are needed (training scores only
    a few of them, and the vocabulary projection is a large part of a short-target step).
    """
    dec = model.model.decoder
    if isinstance(encoder, MelBatch):
        encoder, encoder_mask = encoder.encode(model, encoder_mask)
    use_cache = cache is not None
    if isinstance(encoder, CrossKV):
        cache = cache if cache is not None else new_cache()
        if not cache.is_updated.get(0):
            _prefill(cache, encoder, dec.layers[0].encoder_attn.num_heads, dec.layer_norm.weight.dtype)
        states = encoder.kv.new_zeros(encoder.kv.shape[0], 1, encoder.kv.shape[-1])  # unused: cache is read
        use_cache = True
    else:
        states = encoder
    past = cache.get_seq_length() if cache is not None else 0
    steps = input_ids.shape[1]
    h = dec.embed_tokens(input_ids) + dec.embed_positions.weight[past : past + steps]
    h = nn.functional.dropout(h, p=dec.dropout, training=dec.training)
    causal = torch.full((steps, past + steps), torch.finfo(h.dtype).min, device=h.device, dtype=h.dtype)
    causal = torch.triu(causal, diagonal=past + 1)[None, None]
    cross = _encoder_mask(encoder_mask, h.dtype)
    for layer in dec.layers:
        h = layer(h, causal, states.to(h.dtype), encoder_attention_mask=cross,
                  past_key_values=cache, use_cache=use_cache)
    h = dec.layer_norm(h)
    if positions is not None:
        h = h.gather(1, positions[..., None].expand(-1, -1, h.shape[-1]))
    return _vocabulary_logits(model, h)


def new_cache() -> EncoderDecoderCache:
    return EncoderDecoderCache(DynamicCache(), DynamicCache())


@dataclass
class Hypothesis:
    tokens: list[int]  # generated tokens after the prefix, <|endoftext|> excluded
    score: float  # sum of log-probabilities (incl. <|endoftext|> when reached)
    finished: bool


@torch.no_grad()
def beam_search(model, encoder: torch.Tensor | CrossKV, encoder_mask: torch.Tensor, prefix: list[int] | list[list[int]],
                eot: int, beam: int = 4, max_new_tokens: int = 32, length_penalty: bool = True) -> list[Hypothesis]:
    """The best hypothesis per utterance from a width-`beam` search over the whole vocabulary.

    Hypotheses are ranked by total log-probability, divided by their length when `length_penalty`
    (as Whisper's own decoder ranks them, so longer transcripts are not penalised for their length).
    A hypothesis that reaches <|endoftext|> is kept as finished; the search stops when every beam of
    every utterance has finished or after `max_new_tokens`.
    """
    model.eval()
    b = encoder_mask.shape[0]
    prefixes = prefix if prefix and isinstance(prefix[0], list) else [prefix] * b
    if len({len(p) for p in prefixes}) != 1:
        raise ValueError("all prefixes of a batch must have the same length")
    device = encoder_mask.device
    enc = encoder.repeat_interleave(beam) if isinstance(encoder, CrossKV) else encoder.repeat_interleave(beam, dim=0)
    enc_mask = encoder_mask.repeat_interleave(beam, dim=0)
    tokens = torch.tensor(prefixes, device=device).repeat_interleave(beam, dim=0)
    cache = new_cache()
    logits = decoder_logits(model, tokens, enc, enc_mask, cache)[:, -1]
    scores = torch.full((b, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished = torch.zeros(b * beam, dtype=torch.bool, device=device)
    generated = torch.zeros(b * beam, 0, dtype=torch.long, device=device)
    for _ in range(max_new_tokens):
        logp = torch.log_softmax(logits.float(), dim=-1)
        # a finished beam can only repeat <|endoftext|> at no cost: its score stays as it was
        logp[finished] = float("-inf")
        logp[finished, eot] = 0.0
        candidates = (scores.view(-1, 1) + logp).view(b, -1)
        top, flat = candidates.topk(beam, dim=1)
        source = flat // logp.shape[-1] + torch.arange(b, device=device)[:, None] * beam
        token = flat % logp.shape[-1]
        source, token = source.view(-1), token.view(-1)
        was_finished = finished[source]
        generated = torch.cat([generated[source], token[:, None]], dim=1)
        finished = was_finished | (token == eot)
        scores = top
        cache.reorder_cache(source)
        if bool(finished.all()):
            break
        logits = decoder_logits(model, token[:, None], enc, enc_mask, cache)[:, -1]
    out = []
    lengths = []
    for row in generated.tolist():
        body = row[: row.index(eot)] if eot in row else row
        lengths.append(len(body) + (1 if eot in row else 0))
    ranked = scores.view(-1) / torch.tensor(lengths, device=device).clamp(min=1) if length_penalty else scores.view(-1)
    best = ranked.view(b, beam).argmax(dim=1)
    for i in range(b):
        k = i * beam + int(best[i])
        row = generated[k].tolist()
        done = eot in row
        out.append(Hypothesis(row[: row.index(eot)] if done else row, float(scores.view(-1)[k]), done))
    return out


@torch.no_grad()
def fallback_emotion(model, encoder, encoder_mask, prefix: list[int], tokens: list[int],
                     vocab: ERVocabulary) -> str:
    """The emotion token with the highest probability where the emotion should be.

    The emotion is the last task, so its place is right after the decoded tokens that precede it:
    the hypothesis up to its first emotion-less end (everything it produced, <|endoftext|> excluded).
    """
    ids = torch.tensor([prefix + tokens], device=encoder_mask.device)
    logits = decoder_logits(model, ids, encoder, encoder_mask)[0, -1]
    emotion_ids = torch.tensor(vocab.emotion_ids, device=logits.device)
    names = list(vocab.emotions)
    return names[int(logits[emotion_ids].argmax())]


@dataclass
class Decoded:
    emotion: str | None  # None when no emotion token was emitted
    gender: str | None
    text: str


def parse(tokens: list[int], vocab: ERVocabulary, tokenizer) -> Decoded:
    """Split a hypothesis into its transcript, gender token and emotion token."""
    emotion_of = {i: e for e, i in vocab.emotions.items()}
    gender_of = {i: g for g, i in vocab.genders.items()}
    emotion = next((emotion_of[t] for t in tokens if t in emotion_of), None)
    gender = next((gender_of[t] for t in tokens if t in gender_of), None)
    text_ids = [t for t in tokens if t not in emotion_of and t not in gender_of]
    return Decoded(emotion, gender, tokenizer.decode(text_ids, skip_special_tokens=True).strip())


# --- training glue ----------------------------------------------------------------------------------


def scored_positions(targets: Targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Only the positions whose next token is scored: (positions [B, M], labels [B, M], task [B, M]).

    The vocabulary projection dominates the decoder's cost on short targets, so training computes
    logits only where the loss needs them; padding entries have label -100 and task -1.
    """
    scored = targets.labels != -100
    width = int(scored.sum(dim=1).max())
    b = targets.labels.shape[0]
    positions = torch.zeros(b, width, dtype=torch.long)
    labels = torch.full((b, width), -100, dtype=torch.long)
    task = torch.full((b, width), -1, dtype=torch.long)
    for i in range(b):
        idx = scored[i].nonzero().flatten()
        positions[i, : len(idx)] = idx
        labels[i, : len(idx)] = targets.labels[i, idx]
        task[i, : len(idx)] = targets.task[i, idx]
    return positions, labels, task


class ERDataset(torch.utils.data.Dataset):
    """Per utterance: encoder states [S, D], cross-attention K/V [layers, 2, S, D] or log-mels [T, n_mels]; its row.

    Rows are dicts with what the targets need: text, gender, emotion.
    """

    def __init__(self, encoder: list[torch.Tensor], rows: list[dict]):
        if len(encoder) != len(rows):
            raise ValueError(f"{len(encoder)} encoder inputs but {len(rows)} rows")
        self.encoder, self.rows = encoder, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.encoder[i], self.rows[i]


def er_collate(vocab: ERVocabulary, tokenizer, tasks: tuple[str, ...], inputs: str = "states"):
    """Batches for the trainer: padded encoder inputs, frame mask, and teacher-forcing targets."""

    def collate(items) -> dict:
        encoder, rows = zip(*items)
        enc, mask = pad_frames(list(encoder))
        targets = build_targets(vocab, tokenizer, tasks, list(rows))
        positions, labels, task = scored_positions(targets)
        return {"enc": encoder_batch(enc, inputs), "enc_mask": mask, "input_ids": targets.input_ids,
                "positions": positions, "labels": labels, "task": task}

    return collate


def er_loss(n_tasks: int, serial: bool):
    """loss_fn for the trainer: equation 5 (`serial=False`, one task) or equation 6."""

    def loss_fn(model, batch) -> torch.Tensor:
        logits = decoder_logits(model, batch["input_ids"], batch["enc"], batch["enc_mask"],
                                positions=batch["positions"])
        if serial:
            return serial_mtl_loss(logits, batch["labels"], batch["task"], n_tasks)
        return stl_loss(logits, batch["labels"])

    return loss_fn
