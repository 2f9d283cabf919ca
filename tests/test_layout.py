"""The package layout states the architecture: one package per method, shared parts below, no import upwards."""

from __future__ import annotations

import ast
from pathlib import Path

SERLIB = Path(__file__).resolve().parents[1] / "serlib"
# Lower parts never import higher ones; parts on one level may import each other without a cycle.
LEVEL = {"paths": 0, "heads": 0, "data": 1, "evaluation": 1, "encoders": 2, "training": 2, "methods": 3,
         "study": 4, "bench": 4}
METHOD_MODULES = {"er", "uda", "phoneme_mtl", "emo_dna", "whisper_er", "conventional", "attentive_pooling"}


def modules():
    for path in sorted(SERLIB.rglob("*.py")):
        rel = path.relative_to(SERLIB.parent).with_suffix("")
        yield path, list(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def imports(path: Path, name: list[str]):
    """serlib modules imported by a file, as part lists."""
    package = name if path.name == "__init__.py" else name[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            if target and target[0] == "serlib":
                yield target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("serlib"):
                    yield alias.name.split(".")


def test_no_import_runs_back_up_the_layers():
    wrong = []
    for path, name in modules():
        if len(name) < 2 or name[1] not in LEVEL:
            continue
        for target in imports(path, name):
            if len(target) > 1 and target[1] in LEVEL and LEVEL[target[1]] > LEVEL[name[1]]:
                wrong.append(f"{'.'.join(name)} imports {'.'.join(target)}")
    assert not wrong, wrong


def test_each_method_lives_in_its_own_package_and_uses_no_other_but_the_baseline():
    outside = [".".join(n) for _, n in modules() if n[-1] in METHOD_MODULES and n[1:2] != ["methods"]]
    assert not outside, f"method code outside serlib/methods: {outside}"
    crossing = []
    for path, name in modules():
        if name[1:2] == ["methods"] and len(name) > 2:
            for target in imports(path, name):
                if target[1:2] == ["methods"] and len(target) > 2 and target[2] not in (name[2], "conventional"):
                    crossing.append(f"{'.'.join(name)} imports {'.'.join(target)}")
    assert not crossing, crossing


def test_no_two_modules_share_a_name():
    names = {}
    for _, name in modules():
        if name[-1] not in ("__init__", "__main__", "run", "model", "loss", "data"):  # a method package's parts
            names.setdefault(name[-1], []).append(".".join(name))
    assert {k: v for k, v in names.items() if len(v) > 1} == {}
