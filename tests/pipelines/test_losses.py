"""pipelines/losses.py against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.errors import ConfigError
from pipelines.losses import LOSSES, DistillLoss, kl_soft, mse_logits

S = torch.tensor([[1.0, 2.0], [0.0, -1.0]])  # student logits [B=2, C=2]
T = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # teacher logits


def _softmax(z: list[float]) -> list[float]:
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def _kl_by_hand(t: list[float], s: list[float], temp: float) -> float:
    p = _softmax([v / temp for v in t])
    q = _softmax([v / temp for v in s])
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) * temp * temp


def test_losses_mse_is_mean_squared_logit_difference():
    # row 0: ((1-3)^2 + (2-0)^2) / 2 = 4; row 1: (0 + 4) / 2 = 2
    assert mse_logits(S, T).tolist() == [4.0, 2.0]
    assert DistillLoss("mse")(S, T, torch.tensor([-1, -1])).item() == pytest.approx(3.0)


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


def test_losses_ce_uses_gold_rows_only_and_ignores_teacher():
    labels = torch.tensor([1, -1])  # the second row is synthetic (no gold label)
    want = -math.log(_softmax([1.0, 2.0])[1])
    assert DistillLoss("ce")(S, T, labels).item() == pytest.approx(want, rel=1e-6)
    assert DistillLoss("ce")(S, None, labels).item() == pytest.approx(want, rel=1e-6)


def test_losses_alpha_mixes_ce_and_distillation():
    labels = torch.tensor([1, -1])
    ce = -math.log(_softmax([1.0, 2.0])[1])
    got = DistillLoss("mse", alpha=0.25)(S, T, labels).item()
    assert got == pytest.approx(0.25 * ce + 0.75 * 3.0, rel=1e-6)


def test_losses_ce_term_is_zero_when_batch_has_no_gold_rows():
    got = DistillLoss("mse", alpha=0.5)(S, T, torch.tensor([-1, -1])).item()
    assert got == pytest.approx(0.5 * 3.0)
    assert DistillLoss("ce")(S, T, torch.tensor([-1, -1])).item() == 0.0


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
