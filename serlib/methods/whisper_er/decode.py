"""Whisper-ER's decoding: beam search over the extended vocabulary, reading the tasks' tokens out,
and the untouched Whisper's transcripts (the zero-shot row of the paper's Table 4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...encoders.encoding import encode_padded_30s
from ...heads.pooling import pad_frames
from ...training.precision import autocast
from .model import (
    CrossKV,
    DecoderCache,
    ERVocabulary,
    cross_attention_kv,
    decoder_logits,
    encoder_batch,
    prefix_ids,
)


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
    # the beams of an utterance share its cross-attention keys and values (see `_cross_attention`)
    enc = encoder if isinstance(encoder, CrossKV) else cross_attention_kv(model, encoder)
    tokens = torch.tensor(prefixes, device=device).repeat_interleave(beam, dim=0)
    cache = DecoderCache()
    logits = decoder_logits(model, tokens, enc, encoder_mask, cache, fp32_logits=True)[:, -1]
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
        cache.reorder(source)
        if bool(finished.all()):
            break
        logits = decoder_logits(model, token[:, None], enc, encoder_mask, cache, fp32_logits=True)[:, -1]
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
    logits = decoder_logits(model, ids, encoder, encoder_mask, fp32_logits=True)[0, -1]
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


@torch.no_grad()
def zero_shot_transcripts(whisper, audios: list[np.ndarray], language: str, beam: int = 4, max_new_tokens: int = 64,
                          batch_size: int = 8) -> list[str]:
    """Stock Whisper's transcripts (no new tokens, no training): the zero-shot row of the paper's Table 4.

    The encoder sees 30-s-padded input as in Whisper's own decoding: on real-length states the stock
    decoder tends to repeat itself without ever emitting <|endoftext|>.
    """
    model = whisper.model.eval()
    prefix = prefix_ids(whisper, language)
    eot = whisper.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    texts = []
    for start in range(0, len(audios), batch_size):
        states = encode_padded_30s(whisper, audios[start : start + batch_size], layers=[-1])[:, 0]
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        for hyp in beam_search(model, states, mask, prefix, eot, beam, max_new_tokens):
            texts.append(whisper.tokenizer.decode(hyp.tokens, skip_special_tokens=True).strip())
    return texts


@torch.no_grad()
def decode(whisper, vocab: ERVocabulary, tasks: tuple[str, ...], inputs: list[torch.Tensor], kind: str = "kv",
           beam: int = 4, max_new_tokens: int = 8, batch_size: int = 16, precision: str = "no") -> pd.DataFrame:
    """Beam search over the extended vocabulary; one row per utterance (emotion, gender, text, fallback).

    When the best hypothesis holds no emotion token, the emotion with the highest probability at the
    place where it belongs is taken instead, and `fallback` says so (the notebooks count these).
    `kind` is what the inputs are (model.ENCODER_INPUTS); log-mels are encoded once per batch before
    the search. `precision` "bf16" decodes under bf16 autocast, as a model trained that way was validated.
    """
    model = whisper.model.eval()
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(inputs), batch_size):
        padded, mask = (t.to(device) for t in pad_frames(inputs[start : start + batch_size]))
        with autocast(device, precision):
            rows += _decode_batch(whisper, vocab, tasks, model, padded, mask, kind, beam, max_new_tokens)
    return pd.DataFrame(rows)


def _decode_batch(whisper, vocab: ERVocabulary, tasks: tuple[str, ...], model, padded: torch.Tensor, mask: torch.Tensor,
                  kind: str, beam: int, max_new_tokens: int) -> list[dict]:
    """decode's rows for one padded batch of encoder inputs."""
    if kind in ("mel", "upper"):  # the encoder (or its top layers) once, then the search on its output
        padded, mask = encoder_batch(padded, kind).encode(model, mask)
        kind = "states"
    rows = []
    for j, hyp in enumerate(beam_search(model, encoder_batch(padded, kind), mask, vocab.prefix, vocab.eot, beam,
                                        max_new_tokens)):
        out = parse(hyp.tokens, vocab, whisper.tokenizer)
        used = "ser" in tasks and out.emotion is None
        if used:
            n = int(mask[j].sum())
            one = encoder_batch(padded[j : j + 1, ..., :n, :], kind)
            out.emotion = fallback_emotion(model, one, mask[j : j + 1, :n], vocab.prefix, hyp.tokens, vocab)
        rows.append({"emotion": out.emotion, "gender": out.gender, "text": out.text, "fallback": used,
                     "finished": hyp.finished})
    return rows
