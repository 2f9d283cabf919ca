"""Parameter profiles: one YAML per profile in params/, one section per notebook, checked before use.

A profile looks like::

    extends: default                      # inherit every value of params/default.yaml (deep merge)
    profile: smoke
    notebooks: [00_data, 01_baselines]    # which notebooks the runner executes, in order
    common: {per_speaker: 3, ...}         # given to every notebook
    01_baselines: {train: {max_steps: 40}}   # this notebook's own values, merged over `common`

`extends` names a profile in params/ or a YAML path (relative to the profile's folder); chains are
followed and cycles refused. Merging is key by key, except for the choices that name what runs
(`ATOMIC`: a profile's `protocols` or `models` replace the inherited ones rather than adding to
them). `catalogue: corpora` (set in default.yaml) reads the corpora catalogue params/corpora.yaml,
which `common.corpora` may extend or override. The merged profile is checked against the schema
(`schema.check_profile`): an unknown or misspelt key, a wrong type or a missing section is a
`ProfileError` naming the file, the key path and the nearest valid key.

Profiles are read with `yaml.safe_load` only, so a profile can never run code.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ..paths import PROJECT_ROOT

PARAMS_DIR = PROJECT_ROOT / "params"
CATALOGUES = frozenset({"corpora"})  # files in params/ that are catalogues, not profiles
# Keys whose mapping is one choice (what runs), replaced as a whole when a profile sets it.
ATOMIC = frozenset({"protocols", "max_folds", "models", "lr_multipliers", "ablation_folds"})
TOP_LEVEL = ("extends", "profile", "description", "catalogue", "notebooks", "common")


class ProfileError(ValueError):
    """A profile that cannot be used: unreadable YAML, a bad `extends`, or a schema violation."""


def resolve_profile(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A profile name (`default`: params/default.yaml) or a YAML path (relative to `relative_to`)."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PARAMS_DIR / f"{name_or_path}.yaml"
    elif relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if not path.is_file():
        raise FileNotFoundError(f"no profile {str(name_or_path)!r} ({path}); known profiles: {available_profiles()}")
    return path.resolve()


def available_profiles() -> list[str]:
    """The names of the profiles in params/ (catalogues left out)."""
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml") if p.stem not in CATALOGUES)


def read_yaml(path: Path) -> Any:
    """`yaml.safe_load` of a file, a ProfileError naming file, line and column when it is not YAML."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProfileError(f"{where}: not valid YAML ({problem})") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None


def deep_merge(base: dict, override: dict, path: tuple[str, ...] = ()) -> dict:
    """`override` over `base`, recursing into nested mappings (not into ATOMIC choices outside the
    corpora catalogue); inputs are not modified."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        here = (*path, str(key))
        atomic = key in ATOMIC and "corpora" not in path
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not atomic:
            out[key] = deep_merge(out[key], value, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _raw(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A profile with its `extends` chain merged in, before the catalogue and the schema."""
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise ProfileError(f"{path}: `extends` goes round in a circle ({chain})")
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile must be a mapping, got {type(data).__name__}")
    parent = data.get("extends")
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ProfileError(f"{path}: `extends` must name one profile, got {parent!r}")
    try:
        base_path = resolve_profile(parent, relative_to=path.parent)
    except FileNotFoundError as exc:
        raise ProfileError(f"{path}: `extends: {parent}`: {exc}") from None
    base = _raw(base_path, (*seen, path))
    own = {k: v for k, v in data.items() if k != "extends"}
    merged = deep_merge({k: v for k, v in base.items() if k not in ("profile", "description")}, own)
    merged.setdefault("description", f"{base.get('description', '')} (extended by {path.stem})".strip())
    merged["extends"] = parent
    return merged


def load_profile(name_or_path: str | Path, check: bool = True) -> dict[str, Any]:
    """The whole profile, inheritance and catalogue resolved, as plain dicts and lists.

    With `check` (the default) it is validated against the schema first (ProfileError otherwise).
    """
    path = resolve_profile(name_or_path)
    profile = _raw(path)
    profile.setdefault("profile", path.stem)
    profile.setdefault("notebooks", [])
    profile["common"] = dict(profile.get("common") or {})
    catalogue = profile.get("catalogue")
    if catalogue is not None:
        catalogue_path = PARAMS_DIR / f"{catalogue}.yaml" if Path(str(catalogue)).suffix == "" else \
            path.parent / str(catalogue)
        entries = read_yaml(catalogue_path) if catalogue_path.is_file() else None
        if not isinstance(entries, dict):
            raise ProfileError(f"{path}: `catalogue: {catalogue}` is not a corpora catalogue ({catalogue_path})")
        profile["common"]["corpora"] = deep_merge(entries, profile["common"].get("corpora") or {}, ("corpora",))
    if check:
        from .schema import check_profile

        check_profile(profile, path)
    return profile


def notebook_params(name_or_path: str | Path, notebook: str) -> dict[str, Any]:
    """`common` merged with the notebook's own section, plus the profile's name."""
    profile = load_profile(name_or_path)
    section = profile.get(notebook)
    if not isinstance(section, dict):
        raise ProfileError(f"{resolve_profile(name_or_path)}: no section `{notebook}` (the notebook's parameters)")
    params = deep_merge(profile["common"], section)
    params["profile"] = profile["profile"]
    return params
