"""The L-BFGS linear probe against an independent Newton solution of the same objective."""

from __future__ import annotations

import pytest
import torch

from rffsurgery.train.probe import fit_probe


def _newton(z: torch.Tensor, y: torch.Tensor, k: int, l2: float) -> torch.Tensor:
    """Written from the definition, independently of the probe: Newton's method on
    mean softmax cross-entropy + l2/2·‖W‖² over θ = (W, b), with the exact Hessian by autograd."""
    d = z.shape[1]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        w, b = theta[:k * d].view(k, d), theta[k * d:]
        logits = z @ w.T + b
        nll = (torch.logsumexp(logits, 1) - logits.gather(1, y[:, None]).squeeze(1)).mean()
        return nll + 0.5 * l2 * (w * w).sum()

    theta = torch.zeros(k * d + k, dtype=torch.float64)
    for _ in range(100):
        g = torch.autograd.functional.jacobian(loss, theta)
        h = torch.autograd.functional.hessian(loss, theta)
        # the bias direction sum(b) is flat (softmax is shift invariant): lstsq picks the minimum-norm step
        step = torch.linalg.lstsq(h, g[:, None]).solution.squeeze(1)
        theta = theta - step
        if g.abs().max() < 1e-13:
            break
    return theta


def _blobs(n: int, separation: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]) * separation
    y = torch.arange(3).repeat_interleave(n)
    x = centres[y] + torch.randn(3 * n, 3, generator=g) + torch.tensor([5.0, -2.0, 0.0])  # off-centre on purpose
    return x * torch.tensor([3.0, 0.5, 1.0]), y


@pytest.mark.parametrize("l2", [1e-3, 1e-1])
def test_probe_matches_newton_on_overlapping_classes(l2):
    x, y = _blobs(40, 2.0)
    probe = fit_probe(x, y, 3, l2=l2, tol=1e-9)
    assert probe.converged
    z = (x.double() - x.double().mean(0)) / x.double().std(0, unbiased=False)
    theta = _newton(z, y, 3, l2)
    w, b = theta[:9].view(3, 3), theta[9:]
    assert probe.weight.numpy() == pytest.approx(w.numpy(), abs=1e-6)
    # the bias is unique only up to a common shift: compare logit differences
    shift = lambda v: v - v.mean()  # noqa: E731
    assert shift(probe.bias).numpy() == pytest.approx(shift(b).numpy(), abs=1e-6)


def test_probe_separates_separable_data_and_is_deterministic():
    x, y = _blobs(30, 12.0)
    probe = fit_probe(x, y, 3)
    assert probe.converged and probe.grad_norm <= 1e-6
    assert probe.accuracy(x, y) == 1.0
    again = fit_probe(x, y, 3)
    assert torch.equal(again.weight, probe.weight) and torch.equal(again.bias, probe.bias)


def test_constant_features_and_bad_l2():
    x, y = _blobs(10, 3.0)
    x = torch.cat([x, torch.ones(len(x), 1)], 1)  # a dead ReLU unit
    probe = fit_probe(x, y, 3)
    assert probe.converged and torch.isfinite(probe.weight).all()
    with pytest.raises(ValueError, match="must be > 0"):
        fit_probe(x, y, 3, l2=0.0)
