"""Whisper-ER and SerialMTL (Fukuda et al.): the model, Whisper with emotion and gender tokens.

The vocabulary gains one special token per emotion class and per gender; the decoder is trained to
emit, after the usual prefix `<|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|>` (given,
never scored), the tokens of the chosen tasks in the paper's order, then `<|endoftext|>`
(`data.target_tokens`). Here: the extended vocabulary, the decoder over real encoder frames only
(transformers' Whisper decoder passes no encoder mask: it always sees 30 s), so batches of
real-length states from the feature cache decode exactly as each utterance alone, and beam search.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...encoders.encoding import encode_batch, encode_from

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
        self._cast: tuple[tuple, torch.Tensor] | None = None

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.base, self.extra])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        old = self.base.shape[0]
        pretrained = nn.functional.embedding(ids.clamp(max=old - 1), self.base)
        added = nn.functional.embedding((ids - old).clamp(min=0), self.extra)
        return torch.where((ids < old)[..., None], pretrained, added)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h @ self._base_for(h).T, h @ self.extra.T], dim=-1)

    def _base_for(self, h: torch.Tensor) -> torch.Tensor:
        """The fixed rows in the dtype autocast computes `h @ base.T` in, cast once and kept: autocast
        re-casts only trained weights cheaply, and re-casting this 51k x d matrix took 30 % of a
        bf16 CPU step."""
        kind = h.device.type
        if not torch.is_autocast_enabled(kind) or torch.get_autocast_dtype(kind) == self.base.dtype:
            return self.base
        key = (torch.get_autocast_dtype(kind), self.base.device, self.base.data_ptr(), self.base._version)
        if self._cast is None or self._cast[0] != key:
            self._cast = (key, self.base.detach().to(key[0]))
        return self._cast[1]


def train_new_rows_only(model, vocab: ERVocabulary) -> None:
    """Fix the pretrained token embeddings; only the new task tokens' rows keep learning."""
    first_new = min(vocab.emotion_ids + list(vocab.genders.values()))
    weight = model.model.decoder.embed_tokens.weight
    if sorted(vocab.emotion_ids + list(vocab.genders.values())) != list(range(first_new, weight.shape[0])):
        raise ValueError("the task tokens must be the last rows of the embedding matrix")
    model.model.decoder.embed_tokens = SplitEmbedding(weight, weight.shape[0] - first_new)
    model.proj_out.weight.requires_grad_(False)  # the old tied matrix: no longer used, never trained


def _vocabulary_logits(model, h: torch.Tensor, fp32: bool = False) -> torch.Tensor:
    """Token logits of decoder states; `fp32`: computed in float32 whatever the autocast, so that
    picking the best token (validation, beam search) sees no ties from bf16/fp16 rounding (bf16 keeps
    8 bits of mantissa: near-equal logits round to one value, and argmax takes the lowest id)."""
    if fp32 and (h.dtype != torch.float32 or torch.is_autocast_enabled(h.device.type)):
        with torch.autocast(h.device.type, enabled=False):
            return _vocabulary_logits(model, h.float())
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


# --- the decoder ------------------------------------------------------------------------------------
# One forward for training (teacher forcing) and decoding (step by step, with a cache), written out
# from each decoder layer's own modules rather than through their forward: transformers' Whisper
# decoder takes no encoder mask (it always sees 30 s), and on CPU its fused attention kernel cost
# more than the rest of a short-target training step (its backward zero-fills and computes gradients
# for the fixed cross-attention keys and values, and its cache copies them at every call). Plain
# matmul attention over precomputed keys and values computes only what the loss needs.
# Tests check it against transformers' decoder, batched and step by step.


def _additive(mask: torch.Tensor) -> torch.Tensor:
    """[B, S] bool (True = real frame) -> additive float32 [B, 1, 1, S]."""
    add = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    add.masked_fill_(~mask, torch.finfo(torch.float32).min)
    return add[:, None, None, :]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, T, D] -> [B, heads, T, D / heads]."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, T, d] -> [B, T, heads * d]."""
    return x.transpose(1, 2).flatten(2)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout: float,
               training: bool) -> torch.Tensor:
    """softmax(q k^T + mask) v for a pre-scaled `q`; scores and softmax in float32."""
    weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)).float() + mask, dim=-1).to(v.dtype)
    return torch.matmul(nn.functional.dropout(weights, p=dropout, training=training), v)


def _cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout: float,
                     training: bool) -> torch.Tensor:
    """`_attention` where `q` may hold n rows per encoder row (beams of one utterance, consecutive):
    [n * B, heads, T, d] against keys and values [B, heads, S, d]. The n rows become n * T queries of
    their utterance, so its keys and values are read once rather than copied per beam (beam search's
    cross-attention was bound by reading them)."""
    n = q.shape[0] // k.shape[0]
    if n * k.shape[0] != q.shape[0]:
        raise ValueError(f"{q.shape[0]} query rows for {k.shape[0]} encoder rows: not a whole number of beams each")
    if n == 1:
        return _attention(q, k, v, mask, dropout, training)
    b, heads, steps, d = k.shape[0], q.shape[1], q.shape[2], q.shape[3]
    folded = q.view(b, n, heads, steps, d).transpose(1, 2).reshape(b, heads, n * steps, d)
    out = _attention(folded, k, v, mask, dropout, training)
    return out.view(b, heads, n, steps, d).transpose(1, 2).reshape(b * n, heads, steps, d)


@dataclass
class CrossKV:
    """Cross-attention keys and values of every decoder layer, kv [B, layers, 2, heads, S, head_dim].

    They depend only on the encoder states and the layers' key/value projections, so where both are
    frozen (the CPU profile) they are computed once per utterance (`cross_attention_kv`) instead of
    in every step, where they would cost more than the rest of a short-target decoder step.
    """

    kv: torch.Tensor

    def layer(self, i: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, heads, S, head_dim] of layer `i`, in `dtype`."""
        return self.kv[:, i, 0].to(dtype), self.kv[:, i, 1].to(dtype)

    def to(self, *args, **kwargs) -> "CrossKV":  # lets accelerate move batches holding it
        return CrossKV(self.kv.to(*args, **kwargs))


def cross_attention_kv(model, encoder_states: torch.Tensor) -> CrossKV:
    """Every decoder layer's cross-attention keys and values for encoder states [B, S, D].

    Differentiable: where the projections train (decoder and full fine-tuning), each step computes
    them from the states; under `torch.no_grad()` this precomputes them for frozen projections.
    """
    layers = model.model.decoder.layers
    heads = layers[0].encoder_attn.num_heads
    return CrossKV(torch.stack([torch.stack([_split_heads(layer.encoder_attn.k_proj(encoder_states), heads),
                                             _split_heads(layer.encoder_attn.v_proj(encoder_states), heads)], dim=1)
                                for layer in layers], dim=1))


def freeze_cross_attention_kv(model) -> None:
    """Fix the decoder's cross-attention key/value projections (required for precomputed CrossKV)."""
    for layer in model.model.decoder.layers:
        layer.encoder_attn.k_proj.requires_grad_(False)
        layer.encoder_attn.v_proj.requires_grad_(False)


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


@dataclass
class UpperStates:
    """Padded cached states [B, T, D] of layer L - k for partial fine-tuning: the encoder, cut to its
    top k layers (`keep_top_layers`), runs on them inside each step; the mask is over their frames."""

    states: torch.Tensor

    def to(self, *args, **kwargs) -> "UpperStates":  # lets accelerate move batches holding it
        return UpperStates(self.states.to(*args, **kwargs))

    def encode(self, model, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_from(model.model.encoder, self.states, mask), mask


# What a batch's encoder side holds: precomputed cross-attention K/V (CPU profile), cached encoder
# states (decoder fine-tuning), cached states of layer L - k (the top k layers fine-tuned), or
# log-mels (full fine-tuning of encoder and decoder).
ENCODER_INPUTS = ("kv", "states", "upper", "mel")


def encoder_batch(padded: torch.Tensor, inputs: str) -> torch.Tensor | CrossKV | MelBatch | UpperStates:
    """A padded batch of encoder inputs as decoder_logits takes it (see ENCODER_INPUTS)."""
    if inputs not in ENCODER_INPUTS:
        raise ValueError(f"encoder inputs {inputs!r}: use one of {ENCODER_INPUTS}")
    wrap = {"kv": CrossKV, "mel": MelBatch, "upper": UpperStates}.get(inputs)
    return wrap(padded) if wrap else padded


class DecoderCache:
    """What step-by-step decoding keeps: each layer's self-attention keys and values so far, and the
    cross-attention keys, values and mask (computed at the first step, then only read)."""

    def __init__(self):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.cross: CrossKV | None = None
        self.cross_mask: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0

    def extend(self, i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `i`'s keys and values with the new steps' appended."""
        if i == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[i] = torch.cat([self.keys[i], k], dim=2)
            self.values[i] = torch.cat([self.values[i], v], dim=2)
        return self.keys[i], self.values[i]

    def reorder(self, source: torch.Tensor) -> None:
        """Row j continues the hypothesis of row source[j]. Beams of one utterance share its encoder
        rows, and `source` stays within them, so the cross-attention part needs no reordering."""
        self.keys = [k.index_select(0, source) for k in self.keys]
        self.values = [v.index_select(0, source) for v in self.values]


def _decoder_layer(layer, i: int, h: torch.Tensor, causal: torch.Tensor, cross: CrossKV, cross_mask: torch.Tensor,
                   cache: DecoderCache | None) -> torch.Tensor:
    """transformers' WhisperDecoderLayer.forward written out: pre-norm self-attention (causal),
    cross-attention over real frames only, feed-forward; each a residual branch."""
    training = layer.training
    a = layer.self_attn
    x = layer.self_attn_layer_norm(h)
    q = _split_heads(a.q_proj(x) * a.scaling, a.num_heads)
    k, v = _split_heads(a.k_proj(x), a.num_heads), _split_heads(a.v_proj(x), a.num_heads)
    if cache is not None:
        k, v = cache.extend(i, k, v)
    x = a.out_proj(_merge_heads(_attention(q, k, v, causal, a.dropout, training)))
    h = h + nn.functional.dropout(x, p=layer.dropout, training=training)
    c = layer.encoder_attn
    x = layer.encoder_attn_layer_norm(h)
    q = _split_heads(c.q_proj(x) * c.scaling, c.num_heads)
    x = c.out_proj(_merge_heads(_cross_attention(q, *cross.layer(i, q.dtype), cross_mask, c.dropout, training)))
    h = h + nn.functional.dropout(x, p=layer.dropout, training=training)
    x = layer.activation_fn(layer.fc1(layer.final_layer_norm(h)))
    x = layer.fc2(nn.functional.dropout(x, p=layer.activation_dropout, training=training))
    return h + nn.functional.dropout(x, p=layer.dropout, training=training)


def decoder_logits(model, input_ids: torch.Tensor, encoder: torch.Tensor | CrossKV | MelBatch,
                   encoder_mask: torch.Tensor, cache: DecoderCache | None = None,
                   positions: torch.Tensor | None = None, fp32_logits: bool = False) -> torch.Tensor:
    """Logits [B, T, V] of Whisper's decoder over real encoder frames only.

    `encoder` is the encoder states [B, S, D], their precomputed cross-attention keys/values, or
    log-mels (`MelBatch`, run through the encoder here: training only, decoding encodes once first).
    With `cache`, `input_ids` are the new tokens only and the cache grows by them; the encoder side
    is read at the first call and kept in the cache.
    `positions` [B, T] selects the output positions whose logits are needed (training scores only
    a few of them, and the vocabulary projection is a large part of a short-target step).
    `fp32_logits`: the vocabulary projection in float32 (see `_vocabulary_logits`).
    """
    dec = model.model.decoder
    if cache is not None and cache.cross is not None:
        cross, cross_mask = cache.cross, cache.cross_mask
    else:
        if isinstance(encoder, (MelBatch, UpperStates)):
            encoder, encoder_mask = encoder.encode(model, encoder_mask)
        cross = encoder if isinstance(encoder, CrossKV) else cross_attention_kv(model, encoder)
        cross_mask = _additive(encoder_mask)
        if cache is not None:
            cache.cross, cache.cross_mask = cross, cross_mask
    past = cache.length if cache is not None else 0
    steps = input_ids.shape[1]
    h = dec.embed_tokens(input_ids) + dec.embed_positions.weight[past : past + steps]
    h = nn.functional.dropout(h, p=dec.dropout, training=dec.training)
    causal = torch.full((steps, past + steps), torch.finfo(torch.float32).min, device=h.device).triu(past + 1)
    for i, layer in enumerate(dec.layers):
        h = _decoder_layer(layer, i, h, causal, cross, cross_mask, cache)
    h = dec.layer_norm(h)
    if positions is not None:
        h = h.gather(1, positions[..., None].expand(-1, -1, h.shape[-1]))
    return _vocabulary_logits(model, h, fp32_logits)


class ERForward(nn.Module):
    """Whisper-ER's teacher-forced forward as a module of its own, the model the trainer is given.

    Under DDP the trainer wraps what it is given and gradients sync only through the wrapper's
    forward: the loss calls this module (`model(batch)`), never `decoder_logits` on submodules of a
    wrapped model. Its parameters are the Whisper model's (names prefixed `whisper.`).
    """

    def __init__(self, whisper: nn.Module):
        super().__init__()
        self.whisper = whisper

    def forward(self, batch: dict, fp32_logits: bool = False) -> torch.Tensor:
        return decoder_logits(self.whisper, batch["input_ids"], batch["enc"], batch["enc_mask"],
                              positions=batch["positions"], fp32_logits=fp32_logits)
