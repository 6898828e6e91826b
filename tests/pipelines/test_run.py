"""`distill run` end to end on the demo task: real spaCy, real MiniLM fine-tuned briefly, real students.

One small run is shared by the tests (module-scoped): the demo config with fewer draws and epochs, so the
whole file takes a minute or two on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import datasets
import pytest

from pipelines.cli import main

from .conftest import REPO_ROOT

QUICK = ["--set", "augment.n_iter=4", "--set", "finetune.epochs=2", "--set", "student.epochs=2",
         "--set", "student.patience=2"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "demo"
    assert main(["run", "demo", "--out", str(out), *QUICK]) == 0
    return out


def stages(out) -> dict[str, dict]:
    return {s["stage"]: s for s in json.loads((out / "run.json").read_text())["stages"]}


@pytest.mark.slow
def test_demo_config_runs_every_stage_and_writes_the_report(demo_run):
    st = stages(demo_run)
    assert list(st) == ["augment", "finetune-teacher", "score", "train", "train-baseline", "report"]
    assert all(s["status"] == "done" for s in st.values())
    report = json.loads((demo_run / "report.json").read_text())
    names = [m["name"] for m in report["models"]]
    assert names[0].startswith("Teacher") and "distilled" in names[1] and "no distillation" in names[2]
    for m in report["models"]:
        assert m["params"] > 0 and m["sentences_per_s"] > 0
    teacher, student, baseline = report["models"]
    assert teacher["dev"]["dev"]["accuracy"] >= 0.7  # half the demo's dev sentences are positive
    assert report["majority"]["dev"]["accuracy"] == 0.5  # the demo's dev split: 50 of each label
    for m, directory in ((student, "student"), (baseline, "baseline")):  # the report shows what training measured
        assert m["dev"] == json.loads((demo_run / directory / "metrics.json").read_text())["dev"]
    assert student["params_without_embedding"] < 0.01 * 85_054_464
    assert student["sentences_per_s"] > teacher["sentences_per_s"]
    assert report["transfer"]["originals"] == 320 and report["transfer"]["synthetic"] > 0
    assert report["teacher_agreement"]["gold_agreement_on_originals"] >= 0.6  # the teacher learnt something
    md = (demo_run / "report.md").read_text()
    assert "| Model |" in md and "Transfer set" in md and "Teacher agreement" in md
    for png in report["plots"].values():
        assert (demo_run / png).stat().st_size > 1000 and f"]({png})" in md
    scored = datasets.load_from_disk(str(demo_run / "scored"))
    assert len(scored) == report["transfer"]["rows"] and len(scored[0]["teacher_logits"]) == 2


@pytest.mark.slow
def test_changed_student_setting_reruns_only_training(demo_run, capsys):
    assert main(["run", "demo", "--out", str(demo_run), *QUICK, "--set", "student.lr=0.002"]) == 0
    st = stages(demo_run)
    assert [st[s]["status"] for s in ("augment", "finetune-teacher", "score")] == ["cached"] * 3
    assert st["train"]["status"] == "done" and st["train-baseline"]["status"] == "done"
    manifest = json.loads((demo_run / "student" / "manifest.json").read_text())
    assert manifest["config"]["lr"] == 0.002


@pytest.mark.slow
def test_interrupted_run_resumes(tmp_path):
    out = tmp_path / "demo"
    argv = [sys.executable, "-m", "pipelines.cli", "run", "demo", "--out", str(out), *QUICK]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill -9 once the teacher is being fine-tuned
        if (out / "run.json").exists() and "finetune-teacher" in stages(out):
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert stages(out)["finetune-teacher"]["status"] == "running"  # killed mid-stage: no chance to record it
    assert not (out / "teacher").exists()
    assert main(["run", "demo", "--out", str(out), *QUICK]) == 0
    st = stages(out)
    assert st["augment"]["status"] == "cached" and st["finetune-teacher"]["status"] == "done"
    assert (out / "report.md").exists()


def dry_run_states(text: str) -> dict[str, tuple[str, str]]:
    """A dry run's table: stage -> (state, estimate)."""
    states = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[1] in ("cached", "resume", "run"):
            states[parts[0]] = (parts[1], " ".join(parts[2:4]) if parts[2].startswith("~") else parts[2])
    return states


def tree(root) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


@pytest.mark.slow
def test_a_dry_run_says_what_is_cached_and_what_would_run_and_writes_nothing(demo_run, capsys):
    lr = json.loads((demo_run / "student" / "manifest.json").read_text())["config"]["lr"]
    before = tree(demo_run.parent)
    argv = ["run", "demo", "--out", str(demo_run), *QUICK, "--dry-run"]
    assert main([*argv, "--set", f"student.lr={lr}"]) == 0
    text = capsys.readouterr().out
    states = dry_run_states(text)
    assert list(states) == ["augment", "finetune-teacher", "score", "train", "train-baseline", "report"]
    assert all(states[s] == ("cached", "-") for s in list(states)[:-1]), text
    assert f"out: {demo_run}" in text and "n_iter: 4" in text  # the resolved config, overrides applied
    assert main([*argv, "--set", "student.lr=0.0031"]) == 0  # a new setting: only the students would train
    states = dry_run_states(capsys.readouterr().out)
    assert [states[s][0] for s in states] == ["cached"] * 3 + ["run"] * 3
    assert states["train"][1].startswith("~") and states["train-baseline"][1].startswith("~")
    assert tree(demo_run.parent) == before  # nothing written, nothing touched


@pytest.mark.usefixtures("one_torch_thread")
def test_a_dry_run_of_a_new_run_estimates_every_stage_from_a_sample(tiny_teacher, tmp_path, capsys):
    out = tmp_path / "run"
    argv = tiny_run(out, tiny_teacher, "augment.n_iter=2", "students=[bilstm, transformer]") + ["--dry-run"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    states = dry_run_states(text)
    assert list(states) == ["augment", "score", "train", "train-baseline", "train-transformer",
                            "train-transformer-baseline", "report"]
    for stage, (state, estimate) in states.items():
        assert state == "run" and (stage == "report" or re.fullmatch(r"~\d+ (s|min|h)", estimate)), (stage, text)
    assert re.search(r"augment .* 60 originals -> ~\d", text) and re.search(r"score .* ~[\d,]+ tokens", text)
    assert not out.exists() and not list(tmp_path.glob(".run*"))


@pytest.mark.usefixtures("one_torch_thread")
def test_a_dry_run_names_a_stopped_runs_work_as_resumable(tiny_teacher, tmp_path, capsys, monkeypatch):
    from pipelines import store

    out = tmp_path / "run"
    argv = tiny_run(out, tiny_teacher, "augment.n_iter=2", "student.epochs=1")

    assemble = store.assemble_shards

    def killed(work_dir, *args):
        if work_dir.name.startswith(".scored.partial-"):
            raise KeyboardInterrupt("killed")
        return assemble(work_dir, *args)

    with monkeypatch.context() as m:  # scoring stopped after its last shard, before the output was put together
        m.setattr(store, "assemble_shards", killed)
        assert main(argv) == 130
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    states = dry_run_states(capsys.readouterr().out)
    assert states["augment"] == ("cached", "-") and states["score"][0] == "resume" and states["train"][0] == "run"
    assert main(argv) == 0
    assert "resumed" in capsys.readouterr().err  # the score stage went on from the shards the dry run named


def report_structure(md: str) -> dict[str, list[str]]:
    """A report's headings, the header row of each table, and its plot links: what stays from run to run."""
    lines = md.splitlines()
    tables = [line for line, nxt in zip(lines, lines[1:]) if line.startswith("| ") and nxt.startswith("|---")]
    return {"headings": [line for line in lines if line.startswith("#")], "tables": tables,
            "plots": re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)}


@pytest.mark.slow
def test_the_committed_example_report_has_what_a_demo_run_writes_today(demo_run):
    example = REPO_ROOT / "docs" / "example-report"
    committed = report_structure((example / "report.md").read_text(encoding="utf-8"))
    fresh = report_structure((demo_run / "report.md").read_text(encoding="utf-8"))
    assert committed == fresh, "docs/example-report/ is stale: run `make example-report` and commit it"
    assert sorted(p.name for p in example.iterdir()) == sorted(["report.md", *committed["plots"]])
    for png in committed["plots"]:
        assert (example / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_errors_exit_2_with_paths(tmp_path, capsys):
    assert main(["run", "demo", "--out", str(tmp_path / "x"), "--set", "student.epochz=1"]) == 2
    err = capsys.readouterr().err
    assert "[student.epochz] unknown key" in err and not (tmp_path / "x").exists()


def test_missing_teacher_is_explained(tmp_path, capsys, sst2_dir):
    assert main(["run", "sst2", "--out", str(tmp_path / "x"), "--set", f"data={sst2_dir}"]) == 2
    assert "[teacher.model] is required" in capsys.readouterr().err


def test_data_and_teacher_shortcuts_are_overrides():
    from pipelines.cli import build_parser
    from pipelines.stages.run import load_config as load
    from pipelines.stages.run import overrides_from_args

    args = build_parser().parse_args(["run", "sst2", "--data", "glue/SST 2", "--teacher", "null",
                                      "--set", "student.epochs=3"])
    cfg = load(args.config, overrides_from_args(args))
    assert cfg.top["data"] == "glue/SST 2" and cfg.teacher["model"] == "null"
    assert cfg.sections["student"]["epochs"] == 3
    # --set comes after the shortcuts, so it wins.
    args = build_parser().parse_args(["run", "sst2", "--data", "a", "--set", "data=b"])
    assert load(args.config, overrides_from_args(args)).top["data"] == "b"


def test_missing_teacher_fails_before_any_stage(tmp_path, capsys, sst2_dir):
    out = tmp_path / "x"
    assert main(["run", "sst2", "--out", str(out), "--data", str(sst2_dir), "--teacher", str(tmp_path / "nope")]) == 2
    assert "no such model directory" in capsys.readouterr().err and not out.exists()


def test_engine_keys_of_a_run_config_set_augmentation_and_scoring(tiny_teacher, tmp_path):
    from pipelines.errors import ConfigError
    from pipelines.stages.run import load_config, plan_run

    cfg = load_config("demo", ["engine=ray", "workers=2", "ray_address=127.0.0.1:6379",
                               f"teacher.model={tiny_teacher}", "teacher.finetune=false"])
    plan = plan_run(cfg, tmp_path / "run")
    for stage in (plan.augment, plan.score):
        assert (stage.engine, stage.workers, stage.ray_address) == ("ray", 2, "127.0.0.1:6379")
    with pytest.raises(ConfigError, match="engine"):
        plan_run(load_config("demo", ["engine=spark", f"teacher.model={tiny_teacher}",
                                      "teacher.finetune=false"]), tmp_path / "run2")


def test_a_run_configs_refit_key_reaches_the_teacher_stage(tmp_path):
    from pipelines.errors import ConfigError
    from pipelines.stages.run import load_config, plan_run

    assert plan_run(load_config("demo", []), tmp_path / "a").finetune.refit == "auto"
    for value in ("on", "off", "auto"):
        assert plan_run(load_config("demo", [f"finetune.refit='{value}'"]), tmp_path / "b").finetune.refit == value
    with pytest.raises(ConfigError, match="got True .YAML reads unquoted yes/no/on/off as true/false: quote"):
        load_config("demo", ["finetune.refit=on"])
    with pytest.raises(ConfigError, match=r"refit\] on trains on the holdout"):
        plan_run(load_config("demo", ["finetune.refit='on'", "select_on=dev"]), tmp_path / "c")


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_run_trains_both_student_families_from_one_scored_set(tiny_teacher, tmp_path):
    out = tmp_path / "run"
    tiny = ["--set", "augment.n_iter=2", "--set", "augment.limit=40", "--set", "student.epochs=1",
            "--set", "student.vectors=none", "--set", "student.expand_vocab=0", "--set", "student.export=none",
            "--set", "student.embed_dim=16", "--set", "student.hidden=8", "--set", "student.fc=8",
            "--set", "transformer.epochs=1", "--set", "transformer.export=none"]
    argv = ["run", "demo", "--out", str(out), "--teacher", str(tiny_teacher), "--set", "teacher.finetune=false",
            "--set", "students=[bilstm, transformer]", *tiny]
    assert main(argv) == 0
    stages = [s["stage"] for s in json.loads((out / "run.json").read_text())["stages"]]
    assert stages == ["augment", "score", "train", "train-baseline", "train-transformer",
                      "train-transformer-baseline", "report"]
    for d in ("student", "baseline", "student-transformer", "baseline-transformer"):
        assert (out / d / "metrics.json").is_file(), d
    assert json.loads((out / "student-transformer" / "stats.json").read_text())["student"] == "transformer"
    models = json.loads((out / "report.json").read_text())["models"]
    assert models[0]["name"].startswith("Teacher") and [m["name"] for m in models[1:]] == [
        "BiLSTM student (distilled)", "BiLSTM student (no distillation)", "Transformer student (distilled)",
        "Transformer student (no distillation)"]
    assert [m["family"] for m in models[1:]] == ["bilstm", "bilstm", "transformer", "transformer"]
    assert "Transformer student (distilled)" in (out / "report.md").read_text()
    # the settings say where this run wrote, not the config's default out (runs/demo)
    assert json.loads((out / "report.json").read_text())["settings"]["out"] == str(out)
    assert json.loads((out / "run.json").read_text())["settings"]["out"] == str(out)
    assert main(["run", "demo", "--out", str(tmp_path / "bad"), "--teacher", str(tiny_teacher),
                 "--set", "teacher.finetune=false", "--set", "students=[cnn]"]) == 2


def tiny_run(out, teacher, *overrides: str) -> list[str]:
    """`distill run demo` with a given teacher, 60 sentences and a tiny BiLSTM without vectors, plus overrides."""
    settings = ["augment.limit=60", "student.vectors=none", "student.expand_vocab=0", "student.export=none",
                "student.embed_dim=16", "student.hidden=8", "student.fc=8", "teacher.finetune=false", *overrides]
    return ["run", "demo", "--out", str(out), "--teacher", str(teacher)] + [a for s in settings for a in ("--set", s)]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_run_with_several_seeds_reports_their_mean_and_spread(tiny_teacher, tmp_path):
    out = tmp_path / "run"
    assert main(tiny_run(out, tiny_teacher, "augment.n_iter=2", "student.epochs=2", "seeds=[3, 4]")) == 0
    st = stages(out)
    names = ["train-seed3", "train-seed4", "train-baseline-seed3", "train-baseline-seed4"]
    assert list(st) == ["augment", "score", *names, "report"]
    assert all(st[n]["side_by_side"] == 4 and st[n]["status"] == "done" for n in names)  # one group, in processes
    for n, d in zip(names, ("student-seed3", "student-seed4", "baseline-seed3", "baseline-seed4")):
        assert json.loads((out / d / "manifest.json").read_text())["seed"] == int(n[-1])
    distilled = json.loads((out / "report.json").read_text())["models"][1]
    runs = [json.loads((out / f"student-seed{s}" / "metrics.json").read_text()) for s in (3, 4)]
    assert [r["seed"] for r in distilled["runs"]] == [3, 4]
    accs = [r["dev"]["dev"]["accuracy"] for r in runs]
    assert distilled["dev"]["dev"]["accuracy"] == pytest.approx(sum(accs) / 2)
    # the sample standard deviation: for two runs |a - b| / sqrt(2), not the population one's |a - b| / 2
    assert distilled["dev_std"]["dev"]["accuracy"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
    md = (out / "report.md").read_text()
    assert "## Every seed" in md and " ± " in md and "trained side by side" in md
    assert "sample standard deviation" in md


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_run_with_ablations_trains_each_subset_and_reports_them(tiny_teacher, tmp_path):
    out = tmp_path / "run"
    assert main(tiny_run(out, tiny_teacher, "augment.n_iter=3", "student.epochs=1", "ablate=[rules, size]",
                         "baseline=false")) == 0
    variants = ["no-mask", "no-pos", "no-ngram", "originals", "draws-1"]  # size: only the draws below n_iter 3
    assert list(stages(out)) == ["augment", "score", "train", *[f"train-ablate-{v}" for v in variants], "report"]
    rows = {v: json.loads((out / f"ablate-{v}" / "stats.json").read_text())["rows"] for v in variants}
    full = json.loads((out / "student" / "stats.json").read_text())["rows"]
    assert rows["originals"] < rows["draws-1"] < full and all(rows[v] <= full for v in variants)
    assert rows["originals"] == json.loads((out / "student" / "stats.json").read_text())["original_rows"]
    doc = json.loads((out / "report.json").read_text())
    assert [a["name"] for a in doc["ablations"]] == [
        "the whole transfer set (3 draws per example)", "without masking", "without POS replacement",
        "without n-gram sampling", "the originals alone", "the first draw per example"]
    assert doc["ablations"][0]["rows"] == full and "metric_vs_transfer_size" in doc["plots"]
    md = (out / "report.md").read_text()
    assert "## Ablations" in md and "approximates a transfer set made without the rule" in md
    assert main(["run", "demo", "--out", str(tmp_path / "bad"), "--teacher", str(tiny_teacher),
                 "--set", "teacher.finetune=false", "--set", "ablate=[layers]"]) == 2


def test_unlabelled_text_in_a_run_config_is_augmented_beside_the_training_split(tiny_teacher, tmp_path):
    from pipelines.errors import ConfigError
    from pipelines.stages.run import load_config, plan_run

    corpus = tmp_path / "reviews.jsonl"
    corpus.write_text('{"body": "a fine film"}\n', encoding="utf-8")
    cfg = load_config("demo", [f"unlabelled={corpus}", "input_col=body", f"teacher.model={tiny_teacher}",
                               "teacher.finetune=false"])
    plan = plan_run(cfg, tmp_path / "run")
    assert plan.augment.input == corpus and plan.augment.input_col == "body" and plan.augment.task.name == "demo"
    with pytest.raises(ConfigError, match=r"\[augment\] input: .*missing.txt does not exist"):
        plan_run(load_config("demo", [f"unlabelled={tmp_path / 'missing.txt'}", f"teacher.model={tiny_teacher}",
                                      "teacher.finetune=false"]), tmp_path / "run2")


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_labelled_test_split_is_evaluated_and_reported_beside_dev(tiny_teacher, tmp_path):
    import shutil

    from pipelines.tasks import DEMO_DIR

    data = tmp_path / "data"
    shutil.copytree(DEMO_DIR, data)
    shutil.copy(data / "dev.tsv", data / "test.tsv")  # a labelled test split: the same rows as dev
    out = tmp_path / "run"
    assert main(tiny_run(out, tiny_teacher, "augment.n_iter=2", "student.epochs=1", f"data={data}")) == 0
    doc = json.loads((out / "report.json").read_text())
    for model in doc["models"]:
        assert list(model["dev"]) == ["dev", "test"], model["name"]  # dev first: selection never sees test
        assert model["dev"]["test"] == model["dev"]["dev"]
    metrics = json.loads((out / "student" / "metrics.json").read_text())
    assert metrics["selection"]["split"] == "holdout" and list(metrics["dev"]) == ["dev", "test"]
    assert "test" in (out / "report.md").read_text()

