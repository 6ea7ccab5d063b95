"""Linear evaluation: an L2-regularised multinomial logistic regression on frozen features, fit to convergence.

The RFF paper measures transfer by training a new output layer with the network's
optimizer for some epochs; the final epoch's accuracy then carries the optimizer's
noise (±0.03 between consecutive epochs on Fashion-MNIST pairs).  Representation-
learning papers instead fit the linear classifier to its optimum, which makes the
number a deterministic function of the features (docs/rff-method.md).  This is that probe.

Objective (strictly convex, so the optimum is unique), on standardised features
``z = (x − mean) / std`` (train statistics; constant features keep std 1)::

    L(W, b) = mean_i CE(W z_i + b, y_i) + (λ / 2) · ‖W‖²     (bias not penalised)

minimised in float64 by full-batch L-BFGS with a strong-Wolfe line search until the
gradient's max-norm is below ``tol``.  ``λ`` is fixed (default 1e-3, option
``--probe-l2``), not tuned per run: tuning on a split of the transfer set would add
its own noise and could pick different λ for the two models being compared; a fixed
small λ only makes the optimum finite on separable features and unique.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LinearProbe", "fit_probe", "probe_objective"]


def probe_objective(w: torch.Tensor, b: torch.Tensor, z: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """Mean cross-entropy of ``z @ w.T + b`` plus ``l2/2 · ‖w‖²``."""
    return F.cross_entropy(z @ w.T + b, y) + 0.5 * l2 * (w * w).sum()


@dataclass(frozen=True)
class LinearProbe:
    """A fitted probe: standardisation, weights, and how the optimisation ended."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    iterations: int
    grad_norm: float
    converged: bool

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.to(torch.float64) - self.mean) / self.std
        return z @ self.weight.T + self.bias

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return (self.logits(x).argmax(1) == y.to(self.weight.device)).double().mean().item()


def fit_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float = 1e-3, tol: float = 1e-6,
              max_rounds: int = 50) -> LinearProbe:
    """Fit the probe on features ``x`` ``(N, D)`` and labels ``y`` (see the module docstring)."""
    if l2 <= 0:
        raise ValueError(f"the probe's L2 strength must be > 0 (it makes the optimum unique), got {l2}")
    x = x.detach().to(torch.float64)
    y = y.detach().to(x.device)
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    z = (x - mean) / std
    w = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, device=x.device, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=200, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=tol, tolerance_change=0.0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = probe_objective(w, b, z, y, l2)
        loss.backward()
        return loss

    grad = float("inf")
    rounds = 0
    while rounds < max_rounds and grad > tol:
        opt.step(closure)
        rounds += 1
        closure()
        grad = max(w.grad.abs().max().item(), b.grad.abs().max().item())
    iterations = opt.state[w].get("n_iter", 0)
    return LinearProbe(mean, std, w.detach(), b.detach(), iterations, grad, grad <= tol)
