"""The schema every profile is checked against before any notebook starts.

A misspelt key must not be ignored (`max_fold: 1` once ran every fold, with exit code 0): every
section is a fixed set of keys, each with a type. `check_profile` raises a ProfileError naming the
profile file, the key path and, for an unknown key, the nearest valid one:

    params/mine.yaml: `01_baselines.pooling.max_fold`: unknown key; did you mean `max_folds`?

Training sections take the fields of `TrainConfig` (and Emo-DNA's `UDAConfig`) that a profile may
set; the run-level ones (seed, device, precision) come from `common`.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.corpora import LOADERS
from ..data.folds import KINDS
from ..data.manifest import SELECTIONS
from ..methods.emo_dna.adaptation import METHODS, UDAConfig
from ..methods.whisper_er.run import TASK_SETS
from ..training.trainer import TrainConfig
from .params import TOP_LEVEL, ProfileError

# --- the type language: a spec is one of these, or a dict of fixed keys -----------------------------


@dataclass(frozen=True)
class Spec:
    arg: Any


class Opt(Spec):
    """A key that may be left out (`arg`: its spec)."""


class Choice(Spec):
    """One of the values in the tuple `arg`."""


class ListOf(Spec):
    """A list whose items follow `arg`."""


class MapOf(Spec):
    """A mapping with free keys (corpus names, protocol names, model sizes) whose values follow `arg`."""


class Either(Spec):
    """Any one of the specs in the tuple `arg`."""


NUMBER = (int, float)
INT, FLOAT, BOOL, STR, ANY = int, NUMBER, bool, str, object
NONE = type(None)


def nullable(spec) -> Either:
    return Either((spec, NONE))


def _dataclass_keys(cls, leave_out: set[str]) -> dict:
    """Every field of a config dataclass a profile may set, optional (the dataclass has defaults)."""
    kinds = {"int": INT, "float": FLOAT, "bool": BOOL, "str": STR}
    keys = {}
    for f in dataclasses.fields(cls):
        if f.name in leave_out:
            continue
        text = str(f.type).replace(" ", "")
        base = kinds.get(text.split("|")[0], ANY)
        keys[f.name] = Opt(nullable(base) if "None" in text else base)
    return keys


TRAIN = _dataclass_keys(TrainConfig, {"seed", "device", "precision", "out_dir", "resume", "progress"})
TRAIN["lr_multipliers"] = Opt(nullable(MapOf(FLOAT)))
TRAIN["betas"] = Opt(ListOf(FLOAT))
UDA_TRAIN = _dataclass_keys(UDAConfig, {"decouple", "corpus_align", "class_align", "seed", "device"})
MAX_FOLDS = Opt(Either((INT, MapOf(nullable(INT)), NONE)))
MODE = Choice(("frozen", "partial", "finetune"))  # partial: the top `encoder_layers` train on cached states
MODELS = MapOf(nullable(ListOf(STR)))  # Whisper size -> languages it runs on (null: every corpus)
HEAD = {"out_dim": Opt(INT), "heads": Opt(INT), "hidden": Opt(nullable(INT)), "dropout": Opt(FLOAT)}
UMAP = {"n_neighbors": INT, "min_dist": FLOAT, "models": Opt(ListOf(STR))}

PROTOCOL = {
    "kind": Choice(KINDS), "file": Opt(STR), "folder": Opt(STR), "valid": Opt(Either((INT, FLOAT, STR, NONE))),
    "valid_speakers": Opt(INT), "valid_utterances": Opt(FLOAT), "allow_speaker_overlap": Opt(BOOL),
    "k": Opt(INT), "speakers_per_fold": Opt(INT), "seed": Opt(INT), "missing": Opt(Choice(("error", "drop"))),
    "key_prefix": Opt(STR),
}
CORPUS = {
    "loader": Choice(tuple(LOADERS)), "selection": Opt(nullable(Choice(("all", *SELECTIONS)))),
    "classes": Opt(nullable(ListOf(STR))),
    "protocols": MapOf(PROTOCOL), "path": Opt(STR), "root": Opt(STR), "corpus": Opt(STR),
    "label_map": Opt(MapOf(STR)), "encoding": Opt(STR),
}
COMMON = {
    "seed": INT, "device": Choice(("auto", "cpu", "cuda", "mps")),
    "precision": Choice(("auto", "fp32", "bf16", "fp16")),
    "data_root": nullable(STR), "splits_root": nullable(STR), "cache_dir": nullable(STR),
    "audio_policy": Choice(("fail", "skip")), "per_speaker": nullable(INT), "max_folds": MAX_FOLDS,
    "whisper": STR, "corpora": MapOf(CORPUS),
}
ER = {
    "protocols": MapOf(STR), "max_folds": MAX_FOLDS, "mode": MODE, "encoder_layers": INT,
    "decoder": Choice(("light", "full")), "beam": INT, "examples": INT, "baseline_train": TRAIN, "train": TRAIN,
}
SECTIONS = {
    "00_data": {"corpora_to_run": ListOf(STR), "audio_examples": INT},
    "01_baselines": {
        "protocols": MapOf(ListOf(STR)), "max_folds": MAX_FOLDS, "mode": MODE, "encoder_layers": INT, "layer": INT,
        "head": HEAD, "train": TRAIN,
        "pooling": {"protocols": MapOf(ListOf(STR)), "max_folds": MAX_FOLDS,
                    "methods": ListOf(Choice(("mean", "attentive", "qkv"))),
                    "frame_group": INT, "torch_threads": INT, "head": HEAD, "train": TRAIN},
    },
    "02_whisper_er": {**ER, "ablation_folds": MapOf(nullable(INT))},
    "03_serial_mtl": {**ER, "models": MODELS, "systems": ListOf(Choice(tuple(TASK_SETS))), "zero_shot": BOOL,
                      "zero_shot_utterances": nullable(INT)},
    "04_phoneme_mtl": {
        "protocols": MapOf(STR), "max_folds": MAX_FOLDS, "lambdas": ListOf(FLOAT), "seeds": ListOf(INT), "mode": MODE,
        "encoder_layers": INT, "frame_group": INT, "torch_threads": INT, "head": HEAD,
        "shared_layer": nullable({"dim": INT, "context": INT, "dropout": FLOAT}), "train": TRAIN,
        "finetune": {"backbone": nullable(STR), "train": TRAIN},
    },
    "05_cross_corpus": {
        "pairs": ListOf(ListOf(STR)), "classes": nullable(ListOf(STR)), "layer": INT,
        "standardise": Choice(("per_corpus", "source")), "seeds": ListOf(INT),
        "methods": ListOf(Choice(tuple(METHODS))),
        "umap": UMAP, "train": UDA_TRAIN,
    },
    "06_layer_analysis": {
        "protocols": MapOf(STR), "max_folds": MAX_FOLDS, "models": MODELS,
        "pooling": Choice(("mean", "attentive", "qkv")),
        "frame_group": INT, "torch_threads": INT, "head": HEAD, "knn": INT, "umap": UMAP, "train": TRAIN,
    },
}


# Keys that belong elsewhere, with where (for the message about a key in the wrong place).
ELSEWHERE = {
    "max_folds": "`max_folds` is set per notebook section (or in `common`), not in a protocol",
    "steps": "training length is `max_steps` (in a `train` section)",
    "precision": "`precision` is set once, in `common` (auto: by the hardware)",
    "dropout": "`dropout` belongs in the section's `head`",
    "corpora_to_run": "the corpora a notebook trains on are the keys of its `protocols`",
}


# --- checking ----------------------------------------------------------------------------------------


def _name(value) -> str:
    return "null" if value is None else type(value).__name__


def _describe(spec) -> str:
    """A spec in words, for messages."""
    if isinstance(spec, Opt):
        return _describe(spec.arg)
    if isinstance(spec, Either):
        return " or ".join(_describe(o) for o in spec.arg)
    if isinstance(spec, (dict, MapOf)):
        return "a mapping"
    if isinstance(spec, ListOf):
        return "a list"
    if isinstance(spec, Choice):
        return "one of " + ", ".join(map(str, spec.arg))
    if spec is NONE:
        return "null"
    types = spec if isinstance(spec, tuple) else (spec,)
    return "a number" if types == NUMBER else "/".join(t.__name__ for t in types)


def _check(value, spec, where: str, errors: list[str]) -> None:
    if isinstance(spec, Opt):
        spec = spec.arg
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            errors.append(f"`{where}`: expected a mapping with keys {sorted(spec)}, got {_name(value)}")
            return
        for key, item in value.items():
            if key not in spec:
                near = difflib.get_close_matches(str(key), [str(k) for k in spec], n=1, cutoff=0.6)
                hint = f"; did you mean `{near[0]}`?" if near else f"; valid keys: {', '.join(sorted(spec))}"
                moved = difflib.get_close_matches(str(key), list(ELSEWHERE), n=1, cutoff=0.8)
                if moved and not near:
                    hint = f"; {ELSEWHERE[moved[0]]}"
                errors.append(f"`{where}.{key}`: unknown key{hint}")
            else:
                _check(item, spec[key], f"{where}.{key}", errors)
        for key, item in spec.items():
            if key not in value and not isinstance(item, Opt):
                errors.append(f"`{where}.{key}`: missing key")
    elif isinstance(spec, Either):
        attempts = []
        for option in spec.arg:
            attempt: list[str] = []
            _check(value, option, where, attempt)
            if not attempt:
                return
            attempts.append((option, attempt))
        # a mapping or list that fails inside: report what is wrong in it; else the types allowed
        inner = [a for o, a in attempts if isinstance(value, dict) and isinstance(o, (dict, MapOf))
                 or isinstance(value, list) and isinstance(o, ListOf)]
        errors.extend(inner[0] if inner else [f"`{where}`: expected {_describe(spec)}, got {_name(value)} {value!r}"])
    elif isinstance(spec, Choice):
        if value not in spec.arg:
            near = difflib.get_close_matches(str(value), [str(v) for v in spec.arg], n=1, cutoff=0.6)
            hint = f"; did you mean `{near[0]}`?" if near else ""
            errors.append(f"`{where}`: {value!r} is not one of {', '.join(map(str, spec.arg))}{hint}")
    elif isinstance(spec, ListOf):
        if not isinstance(value, list):
            errors.append(f"`{where}`: expected a list, got {_name(value)}")
            return
        for i, item in enumerate(value):
            _check(item, spec.arg, f"{where}[{i}]", errors)
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            errors.append(f"`{where}`: expected a mapping, got {_name(value)}")
            return
        for key, item in value.items():
            _check(item, spec.arg, f"{where}.{key}", errors)
    else:
        types = spec if isinstance(spec, tuple) else (spec,)
        if spec is ANY:
            return
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):  # true is not a number
            errors.append(f"`{where}`: expected {_describe(spec)}, got {_name(value)} {value!r}")


def _references(profile: dict, notebooks: list[str], errors: list[str]) -> None:
    """Corpora and protocols that sections name must exist in the catalogue."""
    corpora = profile["common"].get("corpora") or {}

    def corpus(name: str, where: str) -> dict | None:
        if name not in corpora:
            near = difflib.get_close_matches(str(name), list(corpora), n=1, cutoff=0.6)
            hint = f"; did you mean `{near[0]}`?" if near else f"; the catalogue has {', '.join(sorted(corpora))}"
            errors.append(f"`{where}`: unknown corpus `{name}`{hint}")
            return None
        return corpora[name]

    def protocols(mapping: dict, where: str) -> None:
        for name, chosen in (mapping or {}).items():
            spec = corpus(name, f"{where}.{name}")
            for protocol in ([chosen] if isinstance(chosen, str) else chosen or []):
                if spec is not None and protocol not in (spec.get("protocols") or {}):
                    errors.append(f"`{where}.{name}`: `{name}` has no protocol `{protocol}` "
                                  f"(it has {', '.join(sorted(spec.get('protocols') or {}))})")

    for notebook in notebooks:
        section = profile.get(notebook) or {}
        protocols(section.get("protocols"), f"{notebook}.protocols")
        if isinstance(section.get("pooling"), dict):
            protocols(section["pooling"].get("protocols"), f"{notebook}.pooling.protocols")
            for name in section["pooling"].get("protocols") or {}:
                if name not in (section.get("protocols") or {}):
                    errors.append(f"`{notebook}.pooling.protocols.{name}`: the pooling comparison runs on the "
                                  f"notebook's own corpora ({', '.join(section.get('protocols') or {})})")
        for i, name in enumerate(section.get("corpora_to_run") or []):
            corpus(name, f"{notebook}.corpora_to_run[{i}]")
        for i, pair in enumerate(section.get("pairs") or []):
            if len(pair) != 2:
                errors.append(f"`{notebook}.pairs[{i}]`: a pair is [source, target], got {pair!r}")
            for name in pair:
                corpus(name, f"{notebook}.pairs[{i}]")


def check_profile(profile: dict, path: Path | str) -> None:
    """ProfileError listing every problem of a merged profile (see the module notes).

    The study's own notebooks have a schema each (`SECTIONS`). A section that is none of them and
    close to none of their names belongs to a notebook of the user's (its keys are that notebook's
    business); one whose name is close to a known one is a misspelling and refused. `common` must be
    complete when the profile runs any of the study's notebooks.
    """
    errors: list[str] = []
    custom = set()
    for key in profile:
        if key in TOP_LEVEL or key in SECTIONS:
            continue
        near = difflib.get_close_matches(str(key), [*TOP_LEVEL, *SECTIONS], n=1, cutoff=0.75)
        if near:
            errors.append(f"`{key}`: unknown section; did you mean `{near[0]}`?")
        elif isinstance(profile[key], dict):
            custom.add(key)  # a section of a notebook of the user's
        else:
            errors.append(f"`{key}`: unknown top-level key; profiles have {', '.join(TOP_LEVEL)} and notebook sections")
    notebooks = profile.get("notebooks")
    _check(notebooks, ListOf(STR), "notebooks", errors)
    notebooks = notebooks if isinstance(notebooks, list) else []
    ours = [n for n in notebooks if n in SECTIONS]
    common = COMMON if ours else {k: Opt(v) for k, v in COMMON.items()}
    _check(profile.get("common"), common, "common", errors)
    if not ours:  # a profile of the user's own notebooks: `common` may hold their keys too
        errors[:] = [e for e in errors if "unknown key" not in e or not e.startswith("`common.")]
    for notebook in notebooks:
        if notebook in SECTIONS:
            if notebook not in profile:
                errors.append(f"`{notebook}`: missing section (the profile runs this notebook)")
            else:
                _check(profile[notebook], SECTIONS[notebook], notebook, errors)
        elif notebook in profile and notebook not in custom:
            errors.append(f"`{notebook}`: its section must be a mapping")
    if not errors:
        _references(profile, [n for n in notebooks if n in SECTIONS], errors)
    if errors:
        shown = "\n  ".join(errors[:12]) + (f"\n  ... {len(errors) - 12} more" if len(errors) > 12 else "")
        raise ProfileError(f"{path}: {shown}" if len(errors) == 1 else f"{path}:\n  {shown}")
