"""pipelines/checkpoints.py: atomic checkpoint files, their fingerprint, and the RNGs they carry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines import checkpoints
from pipelines.errors import DataError


def test_a_save_clears_what_a_killed_save_left_and_writes_no_temp_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    stale = tmp_path / ".checkpoint.pt.tmp-99999"  # a save killed before its rename
    stale.write_bytes(b"half a checkpoint")
    checkpoints.save(path, "fp", {"x": torch.arange(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_read_leaves_the_rngs_alone_and_load_restores_them(tmp_path):
    path, rng = tmp_path / "c.pt", np.random.default_rng(7)
    torch.manual_seed(1)
    checkpoints.save(path, "fp", {"x": torch.arange(3)}, rng)
    expected_torch, expected_numpy = torch.rand(2), rng.random(2)
    torch.manual_seed(2)
    rng.random(5)
    ckpt = checkpoints.read(path, "fp")
    assert torch.equal(ckpt["x"], torch.arange(3))
    assert not torch.equal(torch.rand(2), expected_torch)
    checkpoints.load(path, "fp", rng)
    assert torch.equal(torch.rand(2), expected_torch) and np.array_equal(rng.random(2), expected_numpy)


def test_another_configurations_checkpoint_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    checkpoints.save(path, "fp", {})
    with pytest.raises(DataError, match="another configuration"):
        checkpoints.read(path, "other")
