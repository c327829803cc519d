"""The loss numerics: StableMax, softmax collapse in fp32 and not in fp64, ignored positions and
logit margins (CPU, tiny tensors)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from arbiter.core.data import IGNORE_INDEX
from arbiter.core.loss import LOSS_DTYPES, cross_entropy, log_stablemax, margins


def confident(margin: float = 120.0, vocab: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """One modular-style example, logits (1, 1, V), right by `margin` over every other class."""
    logits = torch.zeros(1, 1, vocab)
    logits[0, 0, 2] = margin
    return logits, torch.tensor([[2]])


def test_stablemax_is_the_formula_by_hand():
    x = torch.tensor([2.0, 0.0, -1.0, -3.0])
    s = [3.0, 1.0, 1 / 2, 1 / 4]  # x + 1 at and above zero, 1 / (1 - x) below
    expected = torch.tensor([math.log(v / sum(s)) for v in s])
    torch.testing.assert_close(log_stablemax(x), expected)


def test_stablemax_probabilities_sum_to_one_along_dim():
    x = torch.randn(3, 4, 7, generator=torch.Generator().manual_seed(0)) * 50
    for dim in (-1, 1):
        total = log_stablemax(x, dim=dim).exp().sum(dim)
        torch.testing.assert_close(total, torch.ones_like(total))


def test_stablemax_gradient_is_the_formulas_own():
    """The written-out backward against autograd through s(x) itself, at 0 and far from it."""
    x = torch.randn(4, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 20
    x[0, :3] = torch.tensor([0.0, 1.0, -1.0])
    weights = torch.randn(4, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def by_hand(z: torch.Tensor) -> torch.Tensor:
        s = torch.where(z >= 0, z + 1, 1 / (1 - z.clamp(max=0)))
        return torch.log(s / s.sum(-1, keepdim=True))

    ours, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    (log_stablemax(ours) * weights).sum().backward()
    (by_hand(reference) * weights).sum().backward()
    torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-12, atol=1e-15)
    assert torch.autograd.gradcheck(log_stablemax, (x[1:].clone().requires_grad_(),))


def test_stablemax_gradients_are_finite_for_large_logits():
    x = torch.tensor([1e30, -1e30, 0.0, 5.0, -5.0], requires_grad=True)
    log_stablemax(x)[3].backward()
    assert torch.isfinite(x.grad).all()
    y = torch.tensor([[1e6, -1e6, 0.0]], requires_grad=True)
    cross_entropy(y.unsqueeze(0), torch.tensor([[1]]), kind="stablemax").backward()
    assert torch.isfinite(y.grad).all()


def test_fp32_softmax_collapses_where_fp64_does_not():
    # The softmax of the right class rounds to exactly 1 once the margin passes ~17 in fp32
    # (~37 in fp64): the loss is exactly zero.
    logits, y = confident(30.0)
    assert cross_entropy(logits, y, dtype=torch.float32).item() == 0.0
    in_fp64 = cross_entropy(logits, y, dtype=LOSS_DTYPES["fp64"])
    assert in_fp64.dtype == torch.float64
    assert in_fp64.item() == pytest.approx(4 * math.exp(-30.0), rel=1e-3)


def test_fp32_softmax_loses_the_right_class_gradient_where_fp64_keeps_it():
    # At margin 30 the right class's gradient, p - 1, is exactly zero in fp32; in fp64 it is
    # about -4e-13, which survives the cast back to the fp32 logits.
    logits, y = confident(30.0)
    grads = {}
    for name, dtype in LOSS_DTYPES.items():
        leaf = logits.clone().requires_grad_(True)
        cross_entropy(leaf, y, dtype=dtype).backward()
        grads[name] = leaf.grad[0, 0]
    assert grads["fp32"][2].item() == 0.0
    assert grads["fp64"][2].item() == pytest.approx(-4 * math.exp(-30.0), rel=1e-3)


def test_stablemax_keeps_a_loss_in_fp32():
    logits, y = confident(120.0)
    loss = cross_entropy(logits, y, kind="stablemax", dtype=torch.float32)
    assert loss.dtype == torch.float32
    assert loss.item() > 0.0
    assert loss.item() == pytest.approx(math.log(125 / 121), rel=1e-5)  # s = 121 and 4 ones


def test_16_bit_logits_are_up_cast_first():
    logits = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(1)).bfloat16()
    y = torch.randint(0, 6, (2, 3), generator=torch.Generator().manual_seed(2))
    loss = cross_entropy(logits, y)
    assert loss.dtype == torch.float32
    expected = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("kind", ["softmax", "stablemax"])
def test_ignored_positions_are_not_scored(kind):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 9, generator=generator)
    y = torch.randint(0, 9, (2, 4), generator=generator)
    y[0, :3] = IGNORE_INDEX
    y[1, 1] = IGNORE_INDEX
    scored = y != IGNORE_INDEX
    each = cross_entropy(logits, y, kind=kind, reduction="none")
    assert each.shape == (y.numel(),)  # every position, flattened
    assert (each[~scored.flatten()] == 0).all() and (each[scored.flatten()] > 0).all()
    # the same as scoring only the kept positions
    kept = cross_entropy(
        logits[scored].unsqueeze(1), y[scored].unsqueeze(1), kind, reduction="none"
    )
    torch.testing.assert_close(each[scored.flatten()], kept)
    torch.testing.assert_close(cross_entropy(logits, y, kind, reduction="sum"), each.sum())
    torch.testing.assert_close(cross_entropy(logits, y, kind), each.sum() / scored.sum())
    if kind == "softmax":
        torch.testing.assert_close(
            cross_entropy(logits, y), F.cross_entropy(logits.flatten(0, 1), y.flatten())
        )


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="sparsemax"):
        cross_entropy(*confident(), kind="sparsemax")


def test_margins_by_hand():
    logits = torch.tensor(
        [
            [[1.0, 5.0, 2.0], [0.0, 0.0, 0.0]],
            [[3.0, -1.0, 4.0], [7.0, 7.5, -2.0]],
        ]
    ).bfloat16()
    y = torch.tensor([[1, IGNORE_INDEX], [0, 0]])
    got = margins(logits, y)
    assert got.dtype == torch.float32
    # 5 - 2 (right by 3), 3 - 4 (wrong by 1), 7 - 7.5 (wrong by 0.5); the ignored row -inf
    torch.testing.assert_close(got, torch.tensor([3.0, -torch.inf, -1.0, -0.5]))
    assert margins(*confident(120.0)).tolist() == [120.0]
    assert margins(torch.zeros(1, 1, 3, dtype=torch.float64), torch.tensor([[0]])).dtype == (
        torch.float64
    )
