"""Parameter profiles: one YAML per profile in params/, one section per notebook.

A profile looks like::

    profile: default
    notebooks: [00_data, 01_baselines]     # which notebooks the runner executes, in order
    common: {seed: 0, device: auto, ...}   # given to every notebook
    01_baselines: {epochs: 30, ...}        # this notebook's own values, merged over `common`

Profiles are read with `yaml.safe_load` only, so a profile can never run code.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .paths import PROJECT_ROOT

PARAMS_DIR = PROJECT_ROOT / "params"


def resolve_profile(name_or_path: str | Path) -> Path:
    """A profile name (`default`) or a YAML path; names are looked up in params/."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PARAMS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no profile {name_or_path!r} ({path}); known profiles: {known}")
    return path.resolve()


def load_profile(name_or_path: str | Path) -> dict[str, Any]:
    """The whole profile as plain dicts and lists."""
    path = resolve_profile(name_or_path)
    with open(path, encoding="utf-8") as fh:
        profile = yaml.safe_load(fh) or {}
    if not isinstance(profile, dict):
        raise ValueError(f"{path}: a profile must be a mapping, got {type(profile).__name__}")
    profile.setdefault("profile", path.stem)
    profile.setdefault("notebooks", [])
    profile.setdefault("common", {})
    return profile


def deep_merge(base: dict, override: dict) -> dict:
    """`override` over `base`, recursing into nested mappings; inputs are not modified."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def notebook_params(name_or_path: str | Path, notebook: str) -> dict[str, Any]:
    """`common` merged with the notebook's own section, plus the profile's name."""
    profile = load_profile(name_or_path)
    section = profile.get(notebook) or {}
    if not isinstance(section, dict):
        raise ValueError(f"section {notebook!r} of profile {profile['profile']!r} must be a mapping")
    params = deep_merge(profile["common"], section)
    params["profile"] = profile["profile"]
    return params
