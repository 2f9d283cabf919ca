"""From a profile's corpus entry to the manifest a study uses: load, select classes, cap, check audio.

Every notebook prepares its corpora through `prepare_corpus`, so the data notebook's counts and
skipped-file list are exactly what the later studies train and test on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .audio import check_audio
from .corpora import load_corpus
from .folds import Fold, make_folds
from .manifest import EMOTIONS, select_classes


@dataclass
class PreparedCorpus:
    name: str
    manifest: pd.DataFrame  # the rows a study uses, index reset
    skipped: pd.DataFrame  # audio that failed the checks (policy "skip"), with reasons
    classes: list[str]  # class order used for label indices and confusion matrices
    spec: dict

    def labels(self) -> list[int]:
        """Class index of every manifest row, in `classes` order."""
        index = {c: i for i, c in enumerate(self.classes)}
        return [index[e] for e in self.manifest["emotion"]]


def cap_per_speaker(manifest: pd.DataFrame, per_speaker: int | None, seed: int) -> pd.DataFrame:
    """At most `per_speaker` rows per speaker, drawn with `seed` (quick profiles); None keeps all."""
    if not per_speaker:
        return manifest
    picked = manifest.sample(frac=1.0, random_state=seed).groupby("speaker", sort=False).head(per_speaker)
    return picked.sort_values("utt_id").reset_index(drop=True)


def prepare_corpus(name: str, params: dict) -> PreparedCorpus:
    """The corpus `name` as the profile's `corpora` entry describes it, checked under `audio_policy`."""
    spec = params["corpora"][name]
    options = {k: v for k, v in spec.items() if k not in ("loader", "selection", "protocols", "classes")}
    if spec.get("loader") == "csv":
        options.setdefault("corpus", name)  # the profile's name for it, in skip lists, caches and errors
    manifest = load_corpus(spec.get("loader", name), data_root=params.get("data_root"), **options)
    manifest = select_classes(manifest, spec.get("selection"))
    manifest = cap_per_speaker(manifest, params.get("per_speaker"), params.get("seed", 0))
    manifest, skipped = check_audio(manifest, policy=params.get("audio_policy", "fail"))
    present = set(manifest["emotion"])
    classes = spec.get("classes") or [e for e in EMOTIONS if e in present]  # the vocabulary's order
    unknown = sorted(set(manifest["emotion"]) - set(classes))
    if unknown:
        raise ValueError(f"{name}: emotions {unknown} are not among the profile's classes {classes}")
    return PreparedCorpus(name, manifest.reset_index(drop=True), skipped, list(classes), spec)


def protocol_folds(corpus: PreparedCorpus, protocol: str, params: dict,
                   limit: int | dict[str, int | None] | None = None) -> list[Fold]:
    """Folds of one named protocol of the corpus (e.g. `emobox`, `speaker_groups`).

    The first n folds are kept, n from `limit` or else the notebook's `max_folds` (one spelling in
    every notebook): one number for every corpus, or a mapping from corpus name to a number (a corpus
    not named, or null, keeps every fold).
    """
    protocols = corpus.spec.get("protocols", {})
    if protocol not in protocols:
        raise KeyError(f"{corpus.name}: no protocol {protocol!r}; the profile defines {sorted(protocols)}")
    spec = dict(protocols[protocol])
    spec.setdefault("seed", params.get("seed", 0))
    folds = make_folds(corpus.manifest, spec, splits_root=params.get("splits_root"))
    limit = params.get("max_folds") if limit is None else limit
    n = limit.get(corpus.name) if isinstance(limit, dict) else limit
    if n is not None and int(n) < 1:
        raise ValueError(f"{corpus.name}: max_folds {n} must be at least 1")
    return folds if n is None else folds[: int(n)]
