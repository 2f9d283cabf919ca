"""Folds computed from a manifest (never stored as copies of the data).

A fold spec is a plain dict (one section of a parameter profile), dispatched on `kind`:

- `session`: leave one session out (`valid: session` takes the next session, cyclically, for
  validation: the papers' "one session for test, one for validation" IEMOCAP protocol).
- `speaker`: leave one speaker out (`speakers_per_fold: n` leaves n consecutive speakers out).
- `speaker_groups`: `k` groups of speakers balanced by utterance count (greedy, largest speaker first;
  ties broken by `seed`), each group the test set of one fold.
- `emobox` / `split_file`: an external CSV `key,emo,test_fold` (`file`, relative to the splits root;
  EmoBox's own files ship with serlib and serve when the splits root lacks them), or EmoBox's
  `data/<corpus>` folder of `fold_k/*_test_fold_k.jsonl` files (`folder`); one fold per distinct non-empty test_fold (test = its rows, train = every other matched row).
  Manifest keys are `<corpus>-<utt_id>` (`key_prefix` replaces the corpus name), compared with the
  file's keys lower-cased and with '_' read as '-' (EmoBox writes `cremad-1001-DFA-ANG-XX` for
  `1001_DFA_ANG_XX.wav`). A manifest row without a key is an error unless `missing: drop` leaves
  it out; keys of the file that the manifest lacks (e.g. classes not selected) are ignored.

Common options: `valid` ("none", `session`, a number of training speakers, or a fraction: the share
of training utterances to reach with whole speakers, the genders taking turns where the manifest
has them; `valid_speakers: n` is the same as `valid: n`),
`valid_utterances` (a class-stratified share of training utterances, for protocols that already share
speakers: needs `allow_speaker_overlap`), `seed` and `allow_speaker_overlap` (a fold that shares
speakers between its parts is then marked `speaker_independent=False` with a note, instead of
raising SpeakerLeakError). How many folds a notebook runs is its own `max_folds`
(`prepare.protocol_folds`), not part of the protocol.

Fold indices are integer row positions into the manifest after `reset_index(drop=True)`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from .manifest import EMOTIONS

PARTS = ("train", "valid", "test")
KINDS = ("session", "speaker", "speaker_groups", "emobox", "split_file")


class SpeakerLeakError(ValueError):
    """A fold shares speakers between two of its parts; `overlaps` maps (part, part) -> speakers."""

    def __init__(self, fold: str, overlaps: dict[tuple[str, str], list[str]], n_test_speakers: int):
        self.fold = fold
        self.overlaps = overlaps
        parts = "; ".join(
            f"{a} and {b} share {len(spk)} speaker(s): {', '.join(spk[:8])}{' ...' if len(spk) > 8 else ''}"
            for (a, b), spk in overlaps.items()
        )
        super().__init__(
            f"fold {fold} is not speaker-independent ({n_test_speakers} test speakers): {parts}. "
            "Set allow_speaker_overlap: true to run it anyway, marked as not speaker-independent."
        )
        self.n_test_speakers = n_test_speakers

    def __reduce__(self):
        return (type(self), (self.fold, self.overlaps, self.n_test_speakers))


@dataclass
class Fold:
    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    speaker_independent: bool = True
    note: str = ""


def _positions(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask).astype(np.int64)


def _require(m: pd.DataFrame, column: str, why: str) -> np.ndarray:
    values = m[column].fillna("").astype(str).to_numpy()
    blank = values == ""
    if blank.any():
        corpora = sorted(set(m.loc[blank, "corpus"].astype(str)))
        raise ValueError(
            f"{why} needs a {column} on every row, but {int(blank.sum())} of {len(m)} rows "
            f"(corpus {', '.join(corpora)}) have none; give the corpus a {column} column "
            f"(e.g. in the generic CSV) or choose another fold kind"
        )
    return values


def assert_speaker_independent(manifest: pd.DataFrame, fold: Fold) -> None:
    """Raise SpeakerLeakError naming the speakers any two of train/valid/test share."""
    speakers = manifest["speaker"].fillna("").astype(str).to_numpy()
    sets = {}
    for part in PARTS:
        values = speakers[getattr(fold, part)]
        if (values == "").any():
            raise ValueError(
                f"fold {fold.name}: {int((values == '').sum())} {part} rows have no speaker, so "
                "speaker independence cannot be checked"
            )
        sets[part] = set(values)
    overlaps = {
        (a, b): sorted(sets[a] & sets[b])
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test"))
        if sets[a] & sets[b]
    }
    if overlaps:
        raise SpeakerLeakError(fold.name, overlaps, len(sets["test"]))


# ---- one builder per kind: each returns [(name, train, test, valid or None, note)] ------------------


def _session_folds(m: pd.DataFrame, spec: dict, splits_root) -> list:
    session = _require(m, "session", "fold kind 'session'")
    sessions = sorted(set(session))
    by_valid_session = spec.get("valid") == "session"
    if len(sessions) < (3 if by_valid_session else 2):
        raise ValueError(
            f"fold kind 'session' needs at least {3 if by_valid_session else 2} sessions, got {sessions}"
        )
    out = []
    for i, name in enumerate(sessions):
        test = session == name
        if by_valid_session:
            valid = session == sessions[(i + 1) % len(sessions)]
            out.append((name, _positions(~test & ~valid), _positions(test), _positions(valid), ""))
        else:
            out.append((name, _positions(~test), _positions(test), None, ""))
    return out


def _speaker_folds(m: pd.DataFrame, spec: dict, splits_root) -> list:
    speaker = _require(m, "speaker", "fold kind 'speaker'")
    per_fold = int(spec.get("speakers_per_fold", 1))
    speakers = sorted(set(speaker))
    if per_fold < 1 or len(speakers) < 2 * per_fold:
        raise ValueError(
            f"fold kind 'speaker' with speakers_per_fold={per_fold} needs at least {2 * per_fold} "
            f"speakers, got {len(speakers)}"
        )
    out = []
    for start in range(0, len(speakers), per_fold):
        chosen = speakers[start : start + per_fold]
        test = np.isin(speaker, chosen)
        out.append(("+".join(chosen), _positions(~test), _positions(test), None, ""))
    return out


def speaker_groups(speakers: pd.Series, k: int, seed: int = 0) -> list[list[str]]:
    """k speaker groups balanced by utterance count: greedy, largest speaker to the lightest group.

    Speakers are shuffled with `seed` before a stable sort by count, so ties fall the same way for
    the same seed whatever the manifest's row order.
    """
    counts = speakers.value_counts().sort_index()
    if k < 2 or k > len(counts):
        raise ValueError(
            f"speaker_groups: k={k} must be between 2 and the number of speakers ({len(counts)})"
        )
    perm = np.random.default_rng(seed).permutation(len(counts))
    names, sizes = counts.index.to_numpy()[perm], counts.to_numpy()[perm]
    groups: list[list[str]] = [[] for _ in range(k)]
    loads = np.zeros(k, dtype=np.int64)
    for j in np.argsort(-sizes, kind="stable"):
        g = int(np.argmin(loads))
        groups[g].append(str(names[j]))
        loads[g] += sizes[j]
    return [sorted(g) for g in groups]


def _group_folds(m: pd.DataFrame, spec: dict, splits_root) -> list:
    speaker = _require(m, "speaker", "fold kind 'speaker_groups'")
    if "k" not in spec:
        raise ValueError("fold kind 'speaker_groups' needs `k`, the number of groups")
    groups = speaker_groups(pd.Series(speaker), int(spec["k"]), int(spec.get("seed", 0)))
    out = []
    for g, members in enumerate(groups, start=1):
        test = np.isin(speaker, members)
        out.append((f"group{g}", _positions(~test), _positions(test), None, ""))
    return out


def split_key(key: str) -> str:
    """EmoBox keys and `<corpus>-<utt_id>` compared alike: lower case, '_' -> '-'."""
    return str(key).strip().lower().replace("_", "-")


PACKAGED_SPLITS = Path(__file__).parent / "splits"  # EmoBox's fold files, shipped (splits/emobox/ATTRIBUTION.md)


def split_file_path(relative: str, splits_root=None) -> Path:
    """A split file named relative to the splits root: the user's splits root when one is given (the
    parameter or $SERLIB_SPLITS) or `<data root>/splits` holds it, else the copy shipped with serlib."""
    explicit = splits_root or os.environ.get(paths.SPLITS_ENV)
    if explicit:
        return paths.inside(paths.splits_root(explicit), relative)
    try:
        path = paths.inside(paths.splits_root(), relative)
        if path.is_file():
            return path
    except paths.DataRootError:
        pass
    return paths.inside(PACKAGED_SPLITS, relative)


def read_split_csv(path: Path) -> pd.DataFrame:
    """A split CSV `key, emo, test_fold` (strings; test_fold empty where a row is in no test fold)."""
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"key", "test_fold"} <= set(table.columns):
        raise ValueError(
            f"split file {path} needs columns key, test_fold; it has {list(table.columns)}"
        )
    return table


def read_emobox_jsonl(folder: Path) -> pd.DataFrame:
    """EmoBox's own layout, `<folder>/fold_<k>/<corpus>_test_fold_<k>.jsonl` (one JSON object per line
    with `key` and `emo`), as the table `read_split_csv` gives: each key with the fold it is tested in."""
    if not folder.is_dir():
        raise FileNotFoundError(f"EmoBox folder {folder} does not exist (expected {folder}/fold_1/*_test_fold_1.jsonl)")
    rows, seen = [], {}
    fold_dirs = sorted((d for d in folder.glob("fold_*") if d.name[5:].isdigit()), key=lambda d: int(d.name[5:]))
    for fold_dir in fold_dirs:
        k = fold_dir.name[5:]
        tests = sorted(fold_dir.glob(f"*_test_fold_{k}.jsonl")) or sorted(fold_dir.glob(f"*_test_fold{k}.jsonl"))
        if len(tests) != 1:
            raise ValueError(f"{fold_dir}: expected one *_test_fold_{k}.jsonl file, found {[t.name for t in tests]}")
        for n, line in enumerate(tests[0].read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key, emo = str(item["key"]), str(item.get("emo", ""))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{tests[0]} line {n}: not an EmoBox record with a `key` ({exc})") from None
            if key in seen:
                raise ValueError(f"{tests[0]} line {n}: key {key} is already a test utterance of fold {seen[key]}")
            seen[key] = k
            rows.append({"key": key, "emo": emo, "test_fold": k})
    if not rows:
        raise ValueError(f"EmoBox folder {folder} holds no fold_<k>/*_test_fold_<k>.jsonl files")
    return pd.DataFrame(rows)


def _split_file_folds(m: pd.DataFrame, spec: dict, splits_root) -> list:
    if bool(spec.get("file")) == bool(spec.get("folder")):
        raise ValueError(
            f"fold kind {spec['kind']!r} needs `file` (a split CSV relative to the splits root) or `folder` "
            "(EmoBox's data/<corpus> folder with fold_k/*.jsonl, relative to the splits root), not both"
        )
    if spec.get("file"):
        path = split_file_path(spec["file"], splits_root)
        table = read_split_csv(path)
    else:
        path = paths.inside(paths.splits_root(splits_root), spec["folder"])
        table = read_emobox_jsonl(path)
    keys = table["key"].map(split_key)
    if keys.duplicated().any():
        raise ValueError(
            f"split file {path} repeats keys (after normalising): {keys[keys.duplicated()].tolist()[:5]}"
        )
    fold_of = dict(zip(keys, table["test_fold"].str.strip()))

    prefix = spec.get("key_prefix")
    ours = [split_key(f"{prefix or c}-{u}") for c, u in zip(m["corpus"], m["utt_id"])]
    found = np.array([k in fold_of for k in ours], dtype=bool)
    if not found.any():
        raise ValueError(
            f"none of the {len(m)} manifest rows has a key in {path}: manifest keys look like "
            f"{ours[:2]}, the file's like {keys.tolist()[:2]} (compared lower-case, '_' as '-')"
        )
    missing = spec.get("missing", "error")
    if missing not in ("error", "drop"):
        raise ValueError(f"split file option missing: {missing!r}; use 'error' or 'drop'")
    if not found.all() and missing == "error":
        absent = m.loc[~found, "utt_id"].astype(str).tolist()
        raise ValueError(
            f"{len(absent)} of {len(m)} manifest rows have no key in {path}, e.g. {absent[:5]}; "
            "select the classes the split uses first, or set missing: drop"
        )
    fold = np.array([fold_of.get(k, "") for k in ours], dtype=object)
    values = sorted({v for v in table["test_fold"].str.strip() if v})
    if all(v.isdigit() for v in values):
        values.sort(key=int)
    if not values:
        raise ValueError(f"split file {path} names no test fold (test_fold is empty everywhere)")
    note = (
        f"{int((~found).sum())} manifest rows without a key in {path.name} left out"
        if not found.all()
        else ""
    )
    out = []
    for value in values:
        test = found & (fold == value)
        out.append((f"fold{value}", _positions(found & ~test), _positions(test), None, note))
    return out


BUILDERS = {
    "session": _session_folds,
    "speaker": _speaker_folds,
    "speaker_groups": _group_folds,
    "emobox": _split_file_folds,
    "split_file": _split_file_folds,
}


def _valid_count(spec: dict) -> float | int | None:
    """The `valid` option as a fraction (float), a count (int) or None."""
    if "valid" in spec and "valid_speakers" in spec:
        raise ValueError("give either `valid` or `valid_speakers`, not both")
    value = spec.get("valid_speakers", spec.get("valid"))
    if value is None or value is False or value == "none" or value == 0:
        return None
    if value == "session":
        raise ValueError("valid: session works with kind 'session' only")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"valid: {value!r}; use 'none', 'session', a fraction in (0, 1) or a speaker count"
        )
    if isinstance(value, float) and not value.is_integer():
        if not 0 < value < 1:
            raise ValueError(
                f"valid: {value} must be a fraction in (0, 1) or a whole number of speakers"
            )
        return value
    if value < 0:
        raise ValueError(f"valid: {value} must not be negative")
    return int(value)


def _hold_out(m: pd.DataFrame, train: np.ndarray, test: np.ndarray, amount, seed: int, fold: str):
    """Training speakers moved to validation, chosen among those that are not test speakers.

    An int is a number of speakers; a fraction is a share of the training *utterances*, reached with
    whole speakers drawn in a seeded order (so a few speakers with one or two utterances each cannot
    leave a validation set too small to choose checkpoints with), the genders taking turns
    (`_gender_balanced`).
    """
    speaker = _require(m, "speaker", "a validation set of held-out speakers")
    candidates = sorted(set(speaker[train]) - set(speaker[test]))
    order = _gender_balanced([str(s) for s in np.random.default_rng(seed).permutation(candidates)], m)
    if isinstance(amount, float):
        counts = pd.Series(speaker[train]).value_counts()
        chosen, total = [], 0
        for spk in order:
            if total >= amount * len(train):
                break
            chosen.append(spk)
            total += int(counts[spk])
    else:
        chosen = order[:amount]
    if not chosen or len(chosen) < (amount if isinstance(amount, int) else 1) or len(chosen) >= len(set(speaker[train])):
        wanted = f"{amount:.0%} of the training utterances as" if isinstance(amount, float) else amount
        raise ValueError(
            f"fold {fold}: cannot hold out {wanted} validation speakers among the {len(candidates)} "
            "training speakers that are not test speakers; some must stay for training"
        )
    in_valid = np.isin(speaker[train], chosen)
    return train[~in_valid], train[in_valid]


def _gender_balanced(order: list[str], m: pd.DataFrame) -> list[str]:
    """Speakers in `order`, re-interleaved so that the genders take turns (each in its own order,
    the gender of the first speaker first); unchanged without a gender column or with one gender.

    Validation speakers drawn from the front then cover both genders where two or more are drawn:
    a validation set of one gender lets gender recognition score 100 % by always naming it, which
    stopped such runs as "perfect" after one validation while their test accuracy was near chance.
    """
    if "gender" not in m.columns:
        return order
    genders = m.assign(speaker=m["speaker"].astype(str)).groupby("speaker")["gender"].agg(
        lambda g: g.iloc[0] if g.nunique() == 1 else "")
    groups: dict[str, list[str]] = {}
    for spk in order:
        groups.setdefault(str(genders.get(spk, "")), []).append(spk)
    if len(groups) < 2:
        return order
    queues = list(groups.values())
    return [queue[i] for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]


def _hold_out_utterances(m: pd.DataFrame, train: np.ndarray, fraction: float, seed: int):
    """A seeded, class-stratified share of training utterances, for protocols that already share speakers."""
    emotion = m["emotion"].astype(str).to_numpy()[train]
    rng = np.random.default_rng(seed)
    valid = []
    for label in sorted(set(emotion)):
        members = train[emotion == label]
        n = min(int(round(fraction * len(members))), len(members) - 1)
        valid.extend(rng.choice(members, size=n, replace=False).tolist())
    in_valid = np.isin(train, valid)
    return train[~in_valid], train[in_valid]


def make_folds(
    manifest: pd.DataFrame, spec: dict, splits_root: str | os.PathLike | None = None
) -> list[Fold]:
    """The folds `spec` describes (see the module docstring), each checked for speaker leaks."""
    m = manifest.reset_index(drop=True)
    kind = spec.get("kind")
    if kind not in BUILDERS:
        raise ValueError(f"unknown fold kind {kind!r}; known: {list(BUILDERS)}")
    built = BUILDERS[kind](m, spec, splits_root)
    amount = None if kind == "session" and spec.get("valid") == "session" else _valid_count(spec)
    seed = int(spec.get("seed", 0))
    allow = bool(spec.get("allow_speaker_overlap", False))
    share = spec.get("valid_utterances")
    if share is not None:
        if not allow:
            raise ValueError("valid_utterances puts training speakers into validation: it needs "
                             "allow_speaker_overlap: true (use valid or valid_speakers otherwise)")
        if amount is not None or isinstance(share, bool) or not 0 < float(share) < 1:
            raise ValueError("valid_utterances must be a fraction in (0, 1), given instead of valid/valid_speakers")

    folds = []
    for i, (name, train, test, valid, note) in enumerate(built):
        if len(test) == 0:
            raise ValueError(f"fold {name} ({kind}) has an empty test set")
        notes = [note] if note else []
        if valid is None:
            valid = np.zeros(0, dtype=np.int64)
            if share is not None:
                train, valid = _hold_out_utterances(m, train, float(share), seed + i)
                notes.append("validation utterances drawn from the training speakers")
            elif amount is not None:
                train, valid = _hold_out(m, train, test, amount, seed + i, name)
        if len(train) == 0:
            raise ValueError(f"fold {name} ({kind}) has an empty training set")
        fold = Fold(name, train, valid, test, True, "")
        try:
            assert_speaker_independent(m, fold)
        except SpeakerLeakError as err:
            if not allow:
                raise
            fold.speaker_independent = False
            test_speakers = set(m["speaker"].to_numpy()[test])
            for (a, b), shared in err.overlaps.items():
                if (a, b) == ("train", "test"):
                    notes.insert(
                        0,
                        f"{len(shared)} of {len(test_speakers)} test speakers also occur in training",
                    )
                else:
                    notes.append(f"{a} and {b} share {len(shared)} speaker(s)")
        fold.note = "; ".join(notes)
        folds.append(fold)
    return folds


def fold_table(manifest: pd.DataFrame, folds: list[Fold]) -> pd.DataFrame:
    """One row per fold: sizes, speakers and class counts per part, independence and note."""
    m = manifest.reset_index(drop=True)
    speaker = m["speaker"].fillna("").astype(str).to_numpy()
    emotion = m["emotion"].astype(str).to_numpy()
    present = set(emotion)
    classes = [e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS))
    rows = []
    for fold in folds:
        row: dict = {"fold": fold.name}
        for part in PARTS:
            row[f"n_{part}"] = len(getattr(fold, part))
        for part in PARTS:
            row[f"speakers_{part}"] = len(set(speaker[getattr(fold, part)]) - {""})
        row["speaker_independent"] = fold.speaker_independent
        row["note"] = fold.note
        for part in PARTS:
            counts = pd.Series(emotion[getattr(fold, part)]).value_counts()
            for c in classes:
                row[f"{part}_{c}"] = int(counts.get(c, 0))
        rows.append(row)
    return pd.DataFrame(rows)
