"""pipelines/progress.py: progress output in logs."""

from __future__ import annotations

from pipelines import progress


def test_progress_in_a_log_is_plain_lines(capsys, monkeypatch):
    # Under pytest stderr is captured, i.e. not a terminal: the log form, one line per display.
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    bar = progress.progress(3, "scoring", "row")
    for _ in range(3):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 3
    assert lines[0].startswith("scoring:  33%") and lines[-1].startswith("scoring: 100%")


def test_a_resumed_bar_starts_where_the_killed_run_stopped(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    bar = progress.progress(1000, "train epoch 2", "batch", initial=900)
    assert bar.format_dict["initial"] == 900  # tqdm's rate and time left count from here
    bar.update(10)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert "900/1.00k" in lines[0] and lines[-1].startswith("train epoch 2:  91%")
