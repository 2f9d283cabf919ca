"""Whisper-ER / SerialMTL: vocabulary extension, targets, both losses, masked decoding, beam search."""

from __future__ import annotations

import math

import pytest
import torch

from serlib.encoders.backbones import ct2_files
from serlib.heads.pooling import pad_frames
from serlib.methods.whisper_er.data import ERDataset, build_targets, er_collate, scored_positions, target_tokens
from serlib.methods.whisper_er.decode import beam_search, parse
from serlib.methods.whisper_er.loss import serial_mtl_loss, stl_loss
from serlib.methods.whisper_er.model import (
    CrossKV,
    DecoderCache,
    ERForward,
    cross_attention_kv,
    decoder_logits,
    extend_vocabulary,
    prefix_ids,
    train_new_rows_only,
)
from tests.whisper_fixtures import tiny_whisper, tiny_whisper_with_tokenizer

EMOTIONS = ["neutral", "happy", "sad", "angry"]


@pytest.fixture
def whisper():
    """A tiny random Whisper with the real multilingual tokenizer (51,865 tokens); the tests that build
    their own toy models (losses, decoder, beam search) run without the weight packages."""
    if ct2_files("base") is None:
        pytest.skip("needs the Whisper tokenizer shipped with the base CTranslate2 package")
    return tiny_whisper_with_tokenizer()


def test_extension_keeps_old_ids_and_rows(whisper):
    before_rows = whisper.model.get_input_embeddings().weight.detach().clone()
    before_ids = whisper.tokenizer.encode(" Kids are talking by the door.", add_special_tokens=False)
    vocab = extend_vocabulary(whisper, EMOTIONS)
    weight = whisper.model.get_input_embeddings().weight
    old = before_rows.shape[0]
    assert torch.equal(weight[:old], before_rows)
    assert sorted(vocab.emotion_ids + list(vocab.genders.values())) == list(range(old, old + 6))
    assert whisper.tokenizer.encode(" Kids are talking by the door.", add_special_tokens=False) == before_ids
    happy = whisper.tokenizer.encode(" happy", add_special_tokens=False)
    torch.testing.assert_close(weight[vocab.emotions["happy"]], before_rows[happy].mean(dim=0))
    assert whisper.model.proj_out.weight.data_ptr() == weight.data_ptr()  # output layer still tied
    assert whisper.model.config.vocab_size == old + 6
    again = extend_vocabulary(whisper, EMOTIONS)  # nothing is added twice
    assert again.emotions == vocab.emotions and weight.shape[0] == old + 6


def test_prefix_is_sot_language_task_notimestamps(whisper):
    ids = prefix_ids(whisper, "ur")
    assert whisper.tokenizer.convert_ids_to_tokens(ids) == [
        "<|startoftranscript|>", "<|ur|>", "<|transcribe|>", "<|notimestamps|>"]
    whisper.model.generation_config.is_multilingual = False  # an English-only checkpoint
    assert whisper.tokenizer.convert_ids_to_tokens(prefix_ids(whisper, None)) == [
        "<|startoftranscript|>", "<|notimestamps|>"]


def test_targets_and_masks_for_each_task_mix(whisper):
    vocab = extend_vocabulary(whisper, EMOTIONS)
    tok = whisper.tokenizer
    row = {"text": "Really good.", "gender": "male", "emotion": "happy"}
    text = tok.encode(" Really good.", add_special_tokens=False)
    e, g, eot = vocab.emotions["happy"], vocab.genders["male"], vocab.eot
    assert target_tokens(vocab, tok, ("ser",), **row) == [(e, 0), (eot, 0)]
    assert target_tokens(vocab, tok, ("gender",), **row) == [(g, 0), (eot, 0)]
    assert target_tokens(vocab, tok, ("asr",), **row) == [(t, 0) for t in text] + [(eot, 0)]
    # the paper's order whatever order the tasks are named in: text, gender, emotion
    assert target_tokens(vocab, tok, ("ser", "gender", "asr"), **row) == (
        [(t, 0) for t in text] + [(g, 1), (e, 2), (eot, 2)])
    assert target_tokens(vocab, tok, ("ser", "asr"), **row)[-2:] == [(e, 1), (eot, 1)]

    rows = [row, {"text": "Yes.", "gender": "female", "emotion": "sad"}]
    t = build_targets(vocab, tok, ("asr", "ser"), rows)
    p = len(vocab.prefix)
    first = vocab.prefix + text + [e, eot]
    assert t.input_ids[0].tolist() == first[:-1]
    assert t.labels[0, : p - 1].tolist() == [-100] * (p - 1)  # the prefix is given, never scored
    assert t.labels[0, p - 1:].tolist() == first[p:]
    assert t.task[0, p - 1:].tolist() == [0] * len(text) + [1, 1]
    short = len(tok.encode(" Yes.", add_special_tokens=False)) + 2
    assert (t.labels[1] != -100).sum() == short and (t.labels[1, p - 1 + short:] == -100).all()  # padding
    positions, labels, task = scored_positions(t)
    assert labels[0].tolist() == first[p:] and task[1, short:].eq(-1).all()
    assert torch.equal(t.labels.gather(1, positions)[0], labels[0])
    with pytest.raises(ValueError, match="transcript"):
        target_tokens(vocab, tok, ("asr",), text="", gender="male", emotion="sad")
    with pytest.raises(ValueError, match="no token"):
        target_tokens(vocab, tok, ("ser",), emotion="bored")


def test_losses_against_hand_computed_values():
    # two utterances, vocabulary of 3; log-probabilities chosen so the sums are easy to follow
    probs = torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]],
                          [[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]]])
    logits = probs.log()
    labels = torch.tensor([[0, 1, 2, -100], [0, 1, 2, 0]])
    task = torch.tensor([[0, 0, 1, -1], [0, 0, 1, 1]])
    nll = lambda p: -math.log(p)  # noqa: E731
    first = nll(0.5) + nll(0.8) + nll(0.6)
    second = first + nll(1 / 3)
    assert stl_loss(logits, labels).item() == pytest.approx((first + second) / 2, rel=1e-6)
    # equation 6: task 0 = mean of its two tokens, task 1 = mean of its one (or two) tokens
    u1 = (nll(0.5) + nll(0.8)) / 2 + nll(0.6)
    u2 = (nll(0.5) + nll(0.8)) / 2 + (nll(0.6) + nll(1 / 3)) / 2
    assert serial_mtl_loss(logits, labels, task, 2).item() == pytest.approx((u1 + u2) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="task 1"):
        serial_mtl_loss(logits, labels, torch.tensor([[0, 0, 0, -1], [0, 0, 1, 1]]), 2)


@torch.no_grad()
def test_decoding_ignores_encoder_padding(whisper):
    model = whisper.model.eval()
    g = torch.Generator().manual_seed(0)
    states = [torch.randn(n, 16, generator=g) for n in (7, 12)]
    enc = torch.zeros(2, 12, 16)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    for i, s in enumerate(states):
        enc[i, : len(s)], mask[i, : len(s)] = s, True
    enc[0, 7:] = 100.0  # garbage in the padding must not matter
    ids = torch.tensor([prefix_ids(whisper, "en")] * 2)
    together = decoder_logits(model, ids, enc, mask)
    alone = decoder_logits(model, ids[:1], states[0][None], torch.ones(1, 7, dtype=torch.bool))
    torch.testing.assert_close(together[0], alone[0], rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_best_token_choices_see_float32_logits_under_bf16():
    """Validation and beam search pick tokens from fp32 logits, so bf16 rounding makes no ties (whose
    argmax would fall to the lowest id); the training loss keeps the autocast's logits."""
    model = tiny_whisper(seed=4).eval()
    enc = torch.randn(1, 9, 16, generator=torch.Generator().manual_seed(5))
    batch = {"input_ids": torch.tensor([[2, 5, 7]]), "enc": enc, "enc_mask": torch.ones(1, 9, dtype=torch.bool),
             "positions": None}
    forward = ERForward(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert forward(batch).dtype == torch.bfloat16
        exact = forward(batch, fp32_logits=True)
    assert exact.dtype == torch.float32
    assert not torch.equal(exact, exact.bfloat16().float())  # bf16 would have rounded (and tied) them
    assert [n for n, _ in forward.named_parameters()][0].startswith("whisper.")


@torch.no_grad()
def test_decoder_matches_transformers_and_its_cache():
    """Without padding our decoder is transformers' decoder; step-by-step with the cache, the same again."""
    model = tiny_whisper(seed=4).eval()
    enc = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(5))
    mask = torch.ones(2, 9, dtype=torch.bool)
    ids = torch.tensor([[2, 5, 7, 9, 11], [2, 6, 8, 10, 12]])
    stock = model.proj_out(model.model.decoder(input_ids=ids, encoder_hidden_states=enc).last_hidden_state)
    ours = decoder_logits(model, ids, enc, mask)
    torch.testing.assert_close(ours, stock, rtol=1e-4, atol=1e-4)
    cache = DecoderCache()
    steps = [decoder_logits(model, ids[:, :2], enc, mask, cache)[:, -1]]
    for t in range(2, ids.shape[1]):
        steps.append(decoder_logits(model, ids[:, t : t + 1], enc, mask, cache)[:, -1])
    torch.testing.assert_close(torch.stack(steps, 1), ours[:, 1:], rtol=1e-4, atol=1e-4)
    positions = torch.tensor([[4, 1], [0, 3]])
    picked = decoder_logits(model, ids, enc, mask, positions=positions)
    torch.testing.assert_close(picked, ours.gather(1, positions[..., None].expand(-1, -1, ours.shape[-1])))


@torch.no_grad()
def test_beam_search_finds_the_best_sequence_on_a_toy_model():
    """With a beam as wide as all sequences, the search is exhaustive: compare with brute force.

    Ranking by log-probability per token (Whisper's length normalisation) keeps three-token
    hypotheses competitive with stopping at once, so the cache bookkeeping of every step matters.
    """
    vocab_size, eot, prefix, steps = 8, 1, [2], 3
    model = tiny_whisper(seed=3, vocab_size=vocab_size, max_target_positions=8).eval()
    enc = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(1, 5, dtype=torch.bool)

    def logp(tokens):
        return torch.log_softmax(decoder_logits(model, torch.tensor([prefix + tokens]), enc, mask)[0, -1], -1)

    candidates = []  # (score per token, total score, tokens)
    frontier = [([], 0.0)]
    for _ in range(steps):
        grown = []
        for tokens, score in frontier:
            lp = logp(tokens)
            done = score + float(lp[eot])
            candidates.append((done / (len(tokens) + 1), done, tokens))
            grown += [(tokens + [t], score + float(lp[t])) for t in range(vocab_size) if t != eot]
        frontier = grown
    candidates += [(score / len(tokens), score, tokens) for tokens, score in frontier]
    _, best_score, best_tokens = max(candidates, key=lambda c: c[0])
    assert len(best_tokens) > 0  # the toy must not be decided at the first step
    hyp = beam_search(model, enc, mask, prefix, eot, beam=vocab_size ** steps, max_new_tokens=steps)[0]
    assert hyp.tokens == best_tokens and hyp.score == pytest.approx(best_score, abs=1e-4)
    narrow = beam_search(model, enc, mask, prefix, eot, beam=2, max_new_tokens=steps)[0]
    toks = narrow.tokens + ([eot] if narrow.finished else [])
    true = sum(float(logp(toks[:i])[t]) for i, t in enumerate(toks))
    assert narrow.score == pytest.approx(true, abs=1e-4)  # the reported score is its tokens' score


@torch.no_grad()
def test_greedy_is_a_beam_of_one(whisper):
    model = whisper.model.eval()
    enc = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(1, 6, dtype=torch.bool)
    prefix = prefix_ids(whisper, "en")
    ids = list(prefix)
    for _ in range(3):
        ids.append(int(decoder_logits(model, torch.tensor([ids]), enc, mask)[0, -1].argmax()))
    hyp = beam_search(model, enc, mask, prefix, eot=50257, beam=1, max_new_tokens=3)[0]
    expected = ids[len(prefix):]
    assert hyp.tokens == (expected[: expected.index(50257)] if 50257 in expected else expected)


def test_parse_splits_text_gender_and_emotion(whisper):
    vocab = extend_vocabulary(whisper, EMOTIONS)
    tok = whisper.tokenizer
    tokens = tok.encode(" Really good.", add_special_tokens=False) + [vocab.genders["female"], vocab.emotions["sad"]]
    out = parse(tokens, vocab, tok)
    assert (out.text, out.gender, out.emotion) == ("Really good.", "female", "sad")
    assert parse(tok.encode(" hello", add_special_tokens=False), vocab, tok).emotion is None


@torch.no_grad()
def test_precomputed_cross_attention_keys_and_values_change_nothing(whisper):
    """Decoding from cached K/V equals decoding from the states, in a padded batch and in a beam."""
    model = whisper.model.eval()
    g = torch.Generator().manual_seed(6)
    states = [torch.randn(n, 16, generator=g) for n in (7, 12)]
    enc, mask = pad_frames(states)
    kv_each = [cross_attention_kv(model, s[None]).kv[0] for s in states]  # [layers, 2, heads, S_i, d] each
    kv, kv_mask = pad_frames(kv_each)
    assert torch.equal(mask, kv_mask)
    ids = torch.tensor([prefix_ids(whisper, "en")] * 2)
    torch.testing.assert_close(decoder_logits(model, ids, CrossKV(kv), mask), decoder_logits(model, ids, enc, mask),
                               rtol=1e-4, atol=1e-4)
    prefix = prefix_ids(whisper, "en")
    from_states = beam_search(model, enc, mask, prefix, eot=50257, beam=3, max_new_tokens=4)
    from_kv = beam_search(model, CrossKV(kv), mask, prefix, eot=50257, beam=3, max_new_tokens=4)
    assert [h.tokens for h in from_kv] == [h.tokens for h in from_states]


@torch.no_grad()
def test_a_padded_batch_decodes_as_each_utterance_alone(whisper):
    """The beams of an utterance read its own keys and values (shared, not copied per beam): a batch of
    utterances of different lengths gives each one's hypothesis and score from a search of its own."""
    model = whisper.model.eval()
    g = torch.Generator().manual_seed(8)
    states = [torch.randn(n, 16, generator=g) for n in (5, 11, 8)]
    enc, mask = pad_frames(states)
    prefix = prefix_ids(whisper, "en")
    together = beam_search(model, enc, mask, prefix, eot=50257, beam=3, max_new_tokens=5)
    for s, hyp in zip(states, together):
        alone = beam_search(model, s[None], torch.ones(1, len(s), dtype=torch.bool), prefix, eot=50257, beam=3,
                            max_new_tokens=5)[0]
        assert hyp.tokens == alone.tokens and hyp.score == pytest.approx(alone.score, abs=1e-4)


def test_collate_builds_training_batches(whisper):
    vocab = extend_vocabulary(whisper, EMOTIONS)
    rows = [{"emotion": "sad"}, {"emotion": "happy"}]
    data = ERDataset([torch.randn(5, 16), torch.randn(9, 16)], rows, vocab, whisper.tokenizer, ("ser",))
    batch = er_collate(vocab, ("ser",))([data[0], data[1]])
    assert batch["enc"].shape == (2, 9, 16) and batch["enc_mask"].sum(1).tolist() == [5, 9]
    assert batch["labels"].tolist() == [[vocab.emotions["sad"], vocab.eot], [vocab.emotions["happy"], vocab.eot]]
    kv_data = ERDataset([torch.randn(2, 2, 2, 5, 8).half(), torch.randn(2, 2, 2, 9, 8).half()], rows, vocab,
                        whisper.tokenizer, ("ser",))
    kv_batch = er_collate(vocab, ("ser",), inputs="kv")([kv_data[0], kv_data[1]])
    assert isinstance(kv_batch["enc"], CrossKV) and kv_batch["enc"].kv.shape == (2, 2, 2, 2, 9, 8)
    assert kv_batch["enc"].kv.dtype == torch.float16  # K/V batches stay half-size until each layer reads them


def test_only_new_rows_train_when_the_pretrained_embeddings_are_split_off(whisper):
    vocab = extend_vocabulary(whisper, EMOTIONS)
    model = whisper.model.eval()
    enc, mask = torch.randn(2, 6, 16), torch.ones(2, 6, dtype=torch.bool)
    ids = torch.tensor([prefix_ids(whisper, "en") + [vocab.emotions["sad"]]] * 2)
    before = decoder_logits(model, ids, enc, mask).detach()
    pretrained = model.get_input_embeddings().weight[:-6].detach().clone()
    train_new_rows_only(model, vocab)
    torch.testing.assert_close(decoder_logits(model, ids, enc, mask), before)  # same function
    tokens = model.model.decoder.embed_tokens
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    decoder_logits(model, ids, enc, mask)[:, -1, vocab.emotions["happy"]].sum().backward()
    opt.step()
    assert torch.equal(tokens.base, pretrained) and tokens.base.grad is None
    assert tokens.extra.grad is not None and tokens.extra.grad.abs().sum() > 0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable < sum(p.numel() for p in model.parameters()) - pretrained.numel()


def test_split_embedding_casts_its_fixed_rows_once_per_dtype_and_notices_changes(whisper):
    vocab = extend_vocabulary(whisper, EMOTIONS)
    train_new_rows_only(whisper.model, vocab)
    tokens = whisper.model.model.decoder.embed_tokens
    h = torch.randn(2, 3, 16)
    exact = torch.cat([h @ tokens.base.T, h @ tokens.extra.T], dim=-1)
    torch.testing.assert_close(tokens.logits(h), exact)  # fp32: the rows as they are
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = tokens.logits(h)
        cast = tokens._cast[1]
        assert cast.dtype == torch.bfloat16 and torch.equal(tokens.logits(h), first) and tokens._cast[1] is cast
        with torch.no_grad():
            tokens.base[0] += 1.0  # a changed base (e.g. loaded weights) is cast again
        tokens.logits(h)
        assert tokens._cast[1] is not cast
    torch.testing.assert_close(first.float(), exact, atol=0.1, rtol=0.05)


def test_the_fallback_takes_the_best_emotion_token_where_the_emotion_belongs(whisper, monkeypatch):
    """On hand-made logits: a text token ranks first overall, yet the fallback picks the best *emotion* token,
    read at the place right after the hypothesis."""
    import serlib.methods.whisper_er.decode as decode_module
    from serlib.methods.whisper_er.decode import fallback_emotion

    vocab = extend_vocabulary(whisper, EMOTIONS)
    seen = {}

    def fake_logits(model, ids, encoder, mask, cache=None, positions=None, fp32_logits=False):
        seen["ids"] = ids.tolist()
        logits = torch.zeros(1, ids.shape[1], len(whisper.tokenizer))
        logits[0, -1, 7] = 50.0  # a text token: the overall argmax
        logits[0, -1, vocab.emotions["sad"]] = 9.0
        logits[0, -1, vocab.emotions["angry"]] = 8.0
        logits[0, -2, vocab.emotions["happy"]] = 99.0  # an earlier position must not count
        return logits

    monkeypatch.setattr(decode_module, "decoder_logits", fake_logits)
    hypothesis = [vocab.genders["male"]]
    got = fallback_emotion(None, None, torch.ones(1, 3, dtype=torch.bool), vocab.prefix, hypothesis, vocab)
    assert got == "sad" and seen["ids"] == [vocab.prefix + hypothesis]


def test_targets_are_tokenised_once_per_dataset_not_per_batch(whisper):
    """The slow tokenizer runs when the dataset is made; batches (every step) only pad."""
    vocab = extend_vocabulary(whisper, EMOTIONS)
    rows = [{"text": "Kids are talking by the door.", "gender": "male", "emotion": e} for e in EMOTIONS]
    calls = []
    encode = whisper.tokenizer.encode
    whisper.tokenizer.encode = lambda *a, **k: calls.append(1) or encode(*a, **k)
    data = ERDataset([torch.randn(5, 16) for _ in rows], rows, vocab, whisper.tokenizer, ("asr", "ser"))
    made = len(calls)
    collate = er_collate(vocab, ("asr", "ser"), inputs="states")
    for _ in range(3):
        collate([data[i] for i in range(len(data))])
    assert made == len(rows) and len(calls) == made and data.lengths() == [5] * len(rows)
