"""pipelines/losses.py against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.errors import ConfigError
from pipelines.losses import DistillLoss, kl_soft, mse_logits
from pipelines.settings import LOSSES

S = torch.tensor([[1.0, 2.0], [0.0, -1.0]])  # student logits [B=2, C=2]
T = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # teacher logits


def _softmax(z: list[float]) -> list[float]:
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def _kl_by_hand(t: list[float], s: list[float], temp: float) -> float:
    p = _softmax([v / temp for v in t])
    q = _softmax([v / temp for v in s])
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) * temp * temp


def test_losses_mse_is_squared_l2_distance_of_logits():
    # row 0: (1-3)^2 + (2-0)^2 = 8; row 1: 0 + (-1-1)^2 = 4; the batch: their mean
    assert mse_logits(S, T).tolist() == [8.0, 4.0]
    assert DistillLoss("mse")(S, T, torch.tensor([-1, -1])).item() == pytest.approx(6.0)


def test_losses_mse_does_not_shrink_with_the_class_count():
    # Four more classes on which student and teacher agree add nothing to the distance (a mean over classes
    # would divide it by 3), so alpha weighs CE against the same distillation term for 2 and 6 classes.
    pad = torch.full((2, 4), 0.5)
    wide = mse_logits(torch.cat([S, pad], 1), torch.cat([T, pad], 1))
    assert wide.tolist() == mse_logits(S, T).tolist()


@pytest.mark.parametrize("temp", [1.0, 2.0, 5.0])
def test_losses_kl_matches_hand_computation_with_t_squared(temp):
    want = [_kl_by_hand(T[i].tolist(), S[i].tolist(), temp) for i in range(2)]
    assert kl_soft(S, T, temp).tolist() == pytest.approx(want, rel=1e-6)
    got = DistillLoss("kl", temperature=temp)(S, T, torch.tensor([-1, -1])).item()
    assert got == pytest.approx(sum(want) / 2, rel=1e-6)  # batchmean


def test_losses_kl_t_squared_factor_is_applied():
    # Without the T^2 factor the value at T=4 would be 16 times smaller.
    plain = _kl_by_hand(T[0].tolist(), S[0].tolist(), 4.0) / 16
    assert kl_soft(S[:1], T[:1], 4.0).item() == pytest.approx(plain * 16, rel=1e-6)


def test_losses_kl_is_zero_for_equal_logits():
    assert kl_soft(T, T, 3.0).abs().max().item() < 1e-7


def _ce(logits: list[float], label: int) -> float:
    return -math.log(_softmax(logits)[label])


def test_losses_ce_uses_labelled_rows_only_and_ignores_teacher():
    labels = torch.tensor([1, -1])  # the second row is synthetic (no hard label)
    want = _ce([1.0, 2.0], 1)  # the mean over the one row with a target
    assert DistillLoss("ce")(S, T, labels).item() == pytest.approx(want, rel=1e-6)
    assert DistillLoss("ce")(S, None, labels).item() == pytest.approx(want, rel=1e-6)
    assert DistillLoss("ce").targets(labels) == 1 and DistillLoss("mse").targets(labels) == 2


@pytest.mark.parametrize("alpha", [0.25, 0.5])
def test_losses_alpha_mixes_per_row(alpha):
    # Row 0 has a hard label: alpha * CE + (1 - alpha) * MSE; row 1 has none: MSE alone. The batch: the mean.
    labels = torch.tensor([1, -1])
    row0 = alpha * _ce([1.0, 2.0], 1) + (1 - alpha) * 8.0
    row1 = 4.0
    loss = DistillLoss("mse", alpha=alpha)
    assert loss.row_losses(S, T, labels).tolist() == pytest.approx([row0, row1], rel=1e-6)
    assert loss(S, T, labels).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_losses_alpha_mixes_kl_per_row():
    labels = torch.tensor([-1, 1])  # this time the second row has the label
    kl = [_kl_by_hand(T[i].tolist(), S[i].tolist(), 2.0) for i in range(2)]
    rows = [kl[0], 0.3 * _ce([0.0, -1.0], 1) + 0.7 * kl[1]]
    got = DistillLoss("kl", alpha=0.3, temperature=2.0)(S, T, labels).item()
    assert got == pytest.approx(sum(rows) / 2, rel=1e-6)


def test_losses_a_rows_loss_does_not_depend_on_its_batch():
    # The mean over a batch of two equals the mean of the two rows' losses taken alone: a batch of synthetic
    # rows weighs them as a batch with originals does (per-batch mixing gave the CE term a weight that swung
    # with the share of labelled rows).
    loss = DistillLoss("mse", alpha=0.5)
    labels = torch.tensor([1, -1])
    alone = [loss(S[i:i + 1], T[i:i + 1], labels[i:i + 1]).item() for i in range(2)]
    assert loss(S, T, labels).item() == pytest.approx(sum(alone) / 2, rel=1e-6)


@pytest.mark.parametrize("name", ["mse", "kl"])
def test_losses_alpha_one_learns_from_the_teacher_where_no_row_has_a_label(name):
    s = S.clone().requires_grad_(True)
    loss = DistillLoss(name, alpha=1.0)
    value = loss(s, T, torch.tensor([-1, -1]))
    assert value.item() == pytest.approx(DistillLoss(name)(S, T, torch.tensor([-1, -1])).item(), rel=1e-6)
    value.backward()
    assert s.grad.abs().sum() > 0


def test_losses_ce_without_any_label_is_a_zero_with_a_gradient_of_zero():
    s = S.clone().requires_grad_(True)
    loss = DistillLoss("ce")
    value = loss(s, T, torch.tensor([-1, -1]))
    assert value.item() == 0.0 and loss.targets(torch.tensor([-1, -1])) == 0
    value.backward()  # raised "element 0 of tensors does not require grad" before
    assert torch.equal(s.grad, torch.zeros_like(S))


def test_losses_unlabelled_rows_get_no_ce_gradient():
    # Row 1's placeholder class must not leak: its gradient is the distillation term's alone.
    s = S.clone().requires_grad_(True)
    DistillLoss("mse", alpha=0.5)(s, T, torch.tensor([1, -1])).backward()
    want = 2 * (S[1] - T[1]) / 2  # d/ds of ||s - t||^2, over a batch of 2
    torch.testing.assert_close(s.grad[1], want)


def test_losses_gradient_flows_to_student_only():
    s = S.clone().requires_grad_(True)
    t = T.clone().requires_grad_(True)
    DistillLoss("kl", temperature=2.0)(s, t.detach(), torch.tensor([-1, -1])).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_losses_unknown_name_lists_choices():
    with pytest.raises(ConfigError) as e:
        DistillLoss("hinge")
    for name in LOSSES:
        assert name in str(e.value)


@pytest.mark.parametrize("kwargs", [{"alpha": 1.5}, {"alpha": -0.1}, {"temperature": 0.0}])
def test_losses_rejects_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        DistillLoss("kl", **kwargs)
