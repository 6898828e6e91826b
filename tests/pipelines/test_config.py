"""Run configs: built-ins validate, overrides reach any key, bad keys and types are all reported with paths."""

from __future__ import annotations

import pytest

from pipelines import config as run_config
from pipelines.errors import ConfigError
from pipelines.stages.run import load_config


def test_every_builtin_config_validates():
    assert set(run_config.builtin_configs()) == {"demo", "sst2", "mrpc", "custom-template"}
    for name in run_config.builtin_configs():
        cfg = load_config(name)
        assert cfg.top["task"]


def test_overrides_reach_any_key_and_parse_yaml_scalars():
    cfg = load_config("demo", ["student.epochs=3", "augment.p_mask=0.2", "teacher.model=some/model", "baseline=false",
                          "data=/tmp/x", "finetune.lr=3e-5"])
    assert cfg.sections["student"]["epochs"] == 3
    assert cfg.sections["augment"]["p_mask"] == 0.2
    assert cfg.teacher["model"] == "some/model" and cfg.top["baseline"] is False
    assert cfg.top["data"] == "/tmp/x" and cfg.sections["finetune"]["lr"] == 3e-5


def test_all_problems_reported_at_once_with_key_paths():
    with pytest.raises(ConfigError) as err:
        load_config("demo", ["student.epochz=3", "augment.p_mask=high", "seed=x", "bogus=1", "teacher.model=5",
                        "student.baseline=true"])
    msg = str(err.value)
    for expected in ("[student.epochz] unknown key; did you mean epochs?", "[augment.p_mask] expected a number",
                     "[seed] expected an integer, got 'x'", "[bogus] unknown key",
                     "[teacher.model] expected a string, got 5", "[student.baseline] unknown key"):
        assert expected in msg
    assert len(err.value.problems) == 6


def test_unknown_config_name_lists_builtins(tmp_path):
    with pytest.raises(ConfigError, match="built-in configs: custom-template, demo, mrpc, sst2"):
        load_config("nope")


def test_bad_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: sst2\nstudent:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: not valid YAML"):
        load_config(str(path))


def test_yaml_cannot_run_code(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("task: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path))


def test_malformed_set_is_refused():
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config("demo", ["student.epochs"])


def test_yaml_booleans_where_a_string_is_expected_are_explained():
    from pipelines.stages.run import load_config as load
    from pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[labels\[0\]\] expected a string, got False .*quote the value"):
        load("custom-template", ["labels=[no, yes]"])


def test_the_template_for_a_task_of_ones_own_leaves_data_sized_defaults_alone():
    """Epochs of the teacher (by data size) and draws per example (20 single, 10 pairs) are the stages' own
    choices: a template that set them would override exactly what keeps a small task's teacher learning."""
    cfg = load_config("custom-template")
    assert cfg.sections["finetune"].get("epochs") is None and cfg.sections["augment"].get("n_iter") is None


def test_a_former_key_is_read_as_the_new_one_with_a_warning(capsys):
    from pipelines import flags

    flags._WARNED.clear()
    cfg = load_config("demo", ["student.max_len=64", "student.clip=2.0", "transformer.warmup=0.2",
                               "unlabelled_col=body"])
    assert cfg.sections["student"]["max_length"] == 64 and cfg.sections["student"]["grad_clip"] == 2.0
    assert cfg.sections["transformer"]["warmup_ratio"] == 0.2 and cfg.top["input_col"] == "body"
    err = capsys.readouterr().err
    assert "[student.max_len] is now [student.max_length]" in err and "[unlabelled_col] is now [input_col]" in err
    with pytest.raises(ConfigError) as e:
        load_config("demo", ["student.max_lenn=3"])
    assert "max_len," not in str(e.value)  # former names are not offered as known keys
