"""Finding the planned network inside wrappers (DDP, DataParallel, torch.compile, LightningModule).

A plan names parameters of the network it was made from (``layer1.0.conv1.weight``).
Training code often holds that network inside something else: ``DistributedDataParallel``
and ``DataParallel`` keep it as ``.module``, ``torch.compile`` as ``._orig_mod``, a
LightningModule as an attribute of its own (``self.net``).  All of these are ordinary
submodules, so one breadth-first search over submodules finds the network whatever the
wrapper, the shallowest first.  The search here is the cheap part (parameter names);
the caller confirms a candidate by its graph fingerprint.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["candidates", "describe", "strict_ddp"]


def candidates(model: nn.Module, names: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """Submodules of ``model`` (itself first, then breadth-first) that hold every parameter in ``names``."""
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    modules = sorted(model.named_modules(), key=lambda item: item[0].count(".") + bool(item[0]))
    return [(path, module) for path, module in modules
            if all((f"{path}.{n}" if path else n) in params for n in names)]


def describe(model: nn.Module, path: str) -> str:
    """``'net' (RFFBaseCNN) of LitModel`` or ``the model itself``, for messages."""
    if not path:
        return f"the model itself ({type(model).__name__})"
    return f"'{path}' ({type(model.get_submodule(path)).__name__}) of {type(model).__name__}"


def strict_ddp(model: nn.Module, path: str) -> DistributedDataParallel | None:
    """The DistributedDataParallel on the way from ``model`` to ``path`` that expects a gradient for every parameter.

    Such a wrapper fails at the second step once parameters stop receiving gradients
    ("Expected to have finished reduction in the prior iteration…"); one built with
    ``find_unused_parameters=True`` copes, at the cost of a graph walk every step.
    """
    module, parts = model, path.split(".") if path else []
    for i in range(len(parts) + 1):
        if isinstance(module, DistributedDataParallel) and not module.find_unused_parameters:
            return module
        if i < len(parts):
            module = getattr(module, parts[i])
    return None

