"""pipelines/training: the plan of every epoch's batches, the schedule sized from it, and the one loop, as the
BiLSTM runs it (the transformer's and the teacher's are in their own test files)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines import batching
from pipelines.devices import torch_threads
from pipelines.stages import train as train_stage
from pipelines.training import fitter as fitter_module
from pipelines.training.plan import plan_epochs

from .student_fixtures import demo_scored_set, tiny_train_config


def _lengths(n: int = 3000, seed: int = 0) -> np.ndarray:
    """Phrase lengths shaped like an SST-2 transfer set's: many short n-grams, a tail of long sentences."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(2.0, 0.8, n).astype(np.int64), 1, 66)


def test_the_plan_is_the_batches_the_epochs_draw():
    lengths = _lengths()
    draw = lambda rng: batching.by_tokens(lengths, 1024, rng)  # noqa: E731
    rng = np.random.default_rng(7)
    plan = plan_epochs(draw, 3, rng, accum=4)
    drawn = [draw(rng) for rng in [np.random.default_rng(7)] for _ in range(3)]  # the same Generator, in turn
    assert [len(b) for b in drawn] == list(plan.counts)
    for epoch in (1, 2, 3):  # each epoch's batches, drawn again, are the planned ones, any number of times
        for again in (plan.batches(epoch), plan.batches(epoch)):
            assert [b.tolist() for b in again] == [b.tolist() for b in drawn[epoch - 1]]
        assert np.array_equal(np.sort(np.concatenate(plan.batches(epoch))), np.arange(len(lengths)))
    assert plan.total_steps == sum(-(-c // 4) for c in plan.counts)
    assert [len(b) for b in plan] == list(plan.counts)


def test_one_global_sort_counts_other_batches_than_the_epochs_run():
    """Why the plan draws what the epochs draw: a token budget cut from one global length sort makes fewer
    batches than the same budget cut within shuffled groups (the old schedule's count: 1.3x short on SST-2)."""
    lengths = _lengths(20_000)
    global_sort = len(batching.by_tokens(lengths, 4096))
    grouped = len(batching.by_tokens(lengths, 4096, np.random.default_rng(0)))
    assert grouped > 1.05 * global_sort


@pytest.fixture(scope="module")
def demo_scored(tmp_path_factory):
    return demo_scored_set(tmp_path_factory.mktemp("scored") / "scored")


def _lrs_of_every_step(monkeypatch) -> list[float]:
    """The learning rate each optimiser step ran at."""
    seen, real = [], fitter_module.Fitter.step

    def step(self, group, objective):
        seen.append(self.lr)
        return real(self, group, objective)

    monkeypatch.setattr(fitter_module.Fitter, "step", step)
    return seen


@pytest.mark.parametrize("accum", [1, 3])
def test_the_bilstm_rate_reaches_zero_exactly_at_its_last_step(demo_scored, tmp_path, monkeypatch, accum):
    lrs = _lrs_of_every_step(monkeypatch)
    with torch_threads(1):
        train_stage.run(tiny_train_config(demo_scored, tmp_path / "s", epochs=3, grad_accum=accum))
    stats = json.loads((tmp_path / "s" / "stats.json").read_text())
    history = json.loads((tmp_path / "s" / "metrics.json").read_text())["history"]
    batches = -(-stats["rows"] // 32)  # a BiLSTM epoch: the rows in batches of 32 (the last one short)
    assert stats["planned_steps"] == stats["steps"] == len(lrs) == 3 * -(-batches // accum)
    assert min(lrs) > 0 and lrs == sorted(lrs, reverse=True)  # no warm-up: a linear decay from the first step
    assert all(h["lr"] > 0 for h in history[:-1]) and history[-1]["lr"] == 0.0  # zero after the last step


def test_grad_accum_one_keeps_the_bilstm_fingerprint_and_two_moves_it(demo_scored, tmp_path):
    from pipelines.tasks import get_task

    manifest = {"fingerprint": "x", "task": {}}

    def fp(**kw):
        cfg = tiny_train_config(demo_scored, tmp_path / "s", **kw).resolved()
        return train_stage.stage_fingerprint(cfg, get_task("demo"), manifest, "cpu")
    assert "grad_accum" not in tiny_train_config(demo_scored, tmp_path).fingerprint_dict("cpu")
    assert fp() == fp(grad_accum=1) != fp(grad_accum=2)


class _Kill(Exception):
    pass


def test_a_bilstm_killed_inside_an_epoch_resumes_from_there_to_the_same_weights(demo_scored, tmp_path, monkeypatch):
    """The BiLSTM runs the transformer's loop, in-epoch checkpoints included (`checkpoint_minutes`)."""
    import torch
    from safetensors.torch import load_file

    from pipelines import checkpoints

    with torch_threads(1):
        straight = train_stage.run(tiny_train_config(demo_scored, tmp_path / "straight", epochs=2, dropout=0.2)).out_dir
        saving, saved = checkpoints.save, []

        def save_or_die(path, fp, state, rng=None):
            if state["position"] is not None and state["position"]["epoch"] == 2:
                if len(saved) == 3:
                    raise _Kill()
                saved.append(state["position"]["done"])
            saving(path, fp, state, rng)

        monkeypatch.setattr(checkpoints, "save", save_or_die)
        cfg = tiny_train_config(demo_scored, tmp_path / "resumed", epochs=2, dropout=0.2, checkpoint_minutes=1e-9)
        with pytest.raises(_Kill):
            train_stage.run(cfg)
        monkeypatch.setattr(checkpoints, "save", saving)
        resumed = train_stage.run(cfg).out_dir
    assert saved == [1, 2, 3]
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((resumed / "stats.json").read_text())["resumed"] == {"epochs_done": 1, "batches_done": 3,
                                                                           "in_epoch": 2}
    ha, hb = (json.loads((d / "metrics.json").read_text())["history"] for d in (straight, resumed))
    assert [(h["train_loss"], h["dev"]) for h in ha] == [(h["train_loss"], h["dev"]) for h in hb]
