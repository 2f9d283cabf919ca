"""Profiles: inheritance, the corpora catalogue, and the schema that refuses a misspelt key before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from serlib.study.params import ProfileError, available_profiles, deep_merge, load_profile, notebook_params
from serlib.study.runner import main as run_study


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_every_shipped_profile_passes_the_schema_and_all_but_default_inherit():
    assert {"default", "smoke", "full", "gpu", "iemocap", "shemo", "whisper_er"} <= set(available_profiles())
    for name in available_profiles():
        profile = load_profile(name)  # raises ProfileError on any schema violation
        if name != "default":
            assert profile.get("extends"), f"{name} repeats what it could inherit"
        for notebook in profile["notebooks"]:
            assert notebook_params(name, notebook)["profile"] == profile["profile"]


def test_extends_merges_key_by_key_but_replaces_the_choice_of_what_runs(tmp_path):
    child = write(tmp_path / "child.yaml", "extends: smoke\nprofile: child\n"
                  "02_whisper_er: {protocols: {ravdess: emobox}, train: {max_steps: 3}}\n")
    p = notebook_params(child, "02_whisper_er")
    assert p["protocols"] == {"ravdess": "emobox"}  # replaced, not merged with smoke's urdu entry
    assert p["train"]["max_steps"] == 3 and p["train"]["eval_every"] == 3  # smoke's value kept
    assert p["train"]["lr_multipliers"] == {"embed_tokens.extra": 10}  # default's, two levels up
    assert p["per_speaker"] == 3 and p["profile"] == "child"
    # the catalogue: entries come from params/corpora.yaml, overrides merge into them
    assert p["corpora"]["urdu"]["protocols"]["speaker_groups"] == {"kind": "speaker_groups", "k": 3, "valid": 0.15}
    assert deep_merge({"a": {"x": 1, "y": 2}}, {"a": {"x": 3}}) == {"a": {"x": 3, "y": 2}}


def test_a_circle_of_extends_and_an_unknown_parent_are_refused(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\nprofile: a\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\nprofile: b\n")
    with pytest.raises(ProfileError, match="circle"):
        load_profile(tmp_path / "a.yaml")
    write(tmp_path / "c.yaml", "extends: no_such_profile\n")
    with pytest.raises(ProfileError, match="no_such_profile"):
        load_profile(tmp_path / "c.yaml")


@pytest.mark.parametrize("text, message", [
    ("extends: smoke\ncommon: {per_speakr: 2}\n", "`common.per_speakr`: unknown key; did you mean `per_speaker`?"),
    ("extends: smoke\ncommon: {whisper_model: tiny.en}\n", "`common.whisper_model`: unknown key; did you mean `whisper`?"),
    ("extends: smoke\n01_baselines: {pooling: {max_fold: 1}}\n",
     "`01_baselines.pooling.max_fold`: unknown key; did you mean `max_folds`?"),
    ("extends: smoke\ncommon: {corpora: {ravdess: {protocols: {emobox: {max_fold: 1}}}}}\n",
     "`common.corpora.ravdess.protocols.emobox.max_fold`: unknown key; `max_folds` is set per notebook"),
    ("extends: smoke\n01_baseline: {mode: frozen}\n", "`01_baseline`: unknown section; did you mean `01_baselines`?"),
    ("extends: smoke\n02_whisper_er: {beam: four}\n", "`02_whisper_er.beam`: expected int, got str 'four'"),
    ("extends: smoke\n02_whisper_er: {mode: cpu}\n", "`02_whisper_er.mode`: 'cpu' is not one of frozen, partial, finetune"),
    ("extends: smoke\n06_layer_analysis: {protocols: {ravdes: emobox}}\n",
     "`06_layer_analysis.protocols.ravdes`: unknown corpus `ravdes`; did you mean `ravdess`?"),
    ("extends: smoke\n03_serial_mtl: {protocols: {urdu: emobox}}\n", "`urdu` has no protocol `emobox`"),
    ("profile: bare\nnotebooks: [00_data]\ncommon: {seed: 0}\n00_data: {audio_examples: 1}\n",
     "`common.device`: missing key"),
])
def test_a_bad_profile_exits_2_before_any_notebook_naming_file_key_and_fix(tmp_path, capsys, text, message):
    profile = write(tmp_path / "mine.yaml", text)
    reports = tmp_path / "reports"
    assert run_study(["--params", str(profile), "--reports", str(reports)]) == 2
    err = capsys.readouterr().err
    assert str(profile) in err and message in err
    assert not reports.exists()  # nothing ran, nothing was written


def test_yaml_errors_name_file_line_and_column(tmp_path, capsys):
    profile = write(tmp_path / "broken.yaml", "extends: smoke\ncommon: {seed: 0\n  device: cpu}\n")
    assert run_study(["--params", str(profile)]) == 2
    assert f"{profile}:3:9: not valid YAML" in capsys.readouterr().err
    tagged = write(tmp_path / "tagged.yaml", "common: !!python/object/apply:os.system [echo hi]\n")
    with pytest.raises(ProfileError, match="tagged.yaml.*not valid YAML"):
        load_profile(tagged)  # safe_load: a profile can never run code
