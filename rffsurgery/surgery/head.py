"""FC head → grouped FC + Meta (docs/rewrites.md).

Which Linear layers are replaced (found on the fx trace, so module paths are the
ones users know):

* the **classifier** is the Linear that produces the model's output, reached from
  the output through elementwise ops and reshapes only (timm's ``head.fc`` behind
  a Flatten/Identity, torchvision's ``fc``);
* its **hidden FCs** are the Linears before it, reached through elementwise ops
  only (ReLU, Dropout, BatchNorm1d): VGG's ``classifier.0``/``.3``, the base CNN's
  ``classifier.1``.

By default the hidden FCs are replaced, as in the paper (``FC → Dropout → FC``
became ``G×(FC → Dropout) → Meta → FC``); a head without one (resnet50's single
``fc``) gets the grouped FC + Meta as a bottleneck in front of a new classifier.
A hidden FC is replaced *width-preserving*: Linear(K → H) becomes
``GroupedLinear(K, G, H/M) → Meta(G, M) → Flatten``, which still gives H features,
so the model's own activation and dropout stay where they were.  The classifier is
never grouped itself (class counts rarely divide by G, and a class should see every
feature): Linear(K → C) becomes ``GroupedLinear(K, G, hidden/M) → Meta(G, M) →
Flatten → Linear(hidden → C)``.

Semantics (decided against the authors' notebooks, see docs/rewrites.md): the replacement
is linear, exactly like the Linear it replaces — no PReLU/Dropout is inserted
between the groups and the Meta — so nonlinearities stay where the model had them,
and the new head can start as the best approximation of the old one (``init="copy"``):
a hidden FC keeps its diagonal blocks (exact when the off-diagonal blocks are zero);
a classifier's bottleneck takes each group's best rank-``hidden/G`` factorisation
(truncated SVD, exact when ``hidden/G ≥ min(C, K/G)``).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import fx, nn

from ..models.head import NoHeadError, head_node, is_linear, through
from ..trace.tracer import Traced, trace
from .layers import GroupedLinear, Meta
from .select import Change, Rewrite, RewriteError, call_nodes, globs, select

__all__ = ["HeadLayer", "apply_step", "head_layers", "rewrite_head"]

STEP = "meta_head"


@dataclass(frozen=True)
class HeadLayer:
    """One Linear to replace: width-preserving (``hidden=None``) or as a classifier behind a bottleneck."""

    path: str
    hidden: int | None = None


def head_layers(model: nn.Module | Traced) -> tuple[str, list[str]]:
    """The classifier's module path (:func:`rffsurgery.models.head.find_head`) and its hidden FCs' paths.

    Raises :class:`RewriteError` when the model's output is not computed by a Linear.
    """
    traced = model if isinstance(model, Traced) else trace(model)
    modules = dict(traced.graph_module.named_modules())
    try:
        node = head_node(traced)
    except NoHeadError as exc:
        raise RewriteError(f"{exc}; choose Linear layers by name instead") from None
    hidden: list[str] = []
    below = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    while below is not None:
        if is_linear(below, modules):
            hidden.insert(0, below.target)
            below = below.args[0] if isinstance(below.args[0], fx.Node) else None
        else:
            below = through(below, modules, ("pointwise",))
    return node.target, hidden


def default_hidden(in_features: int, meta_out: int) -> int:
    """A bottleneck of K/4 (a multiple of the Meta's output groups, at least one per group).

    K/4 cuts resnet50's 2048 → 1000 classifier to about 28 % of its parameters while
    each of 16 groups still has 32 outputs; ``--hidden`` overrides it.
    """
    return max(meta_out, in_features // 4 // meta_out * meta_out)


def _fitting(n: int, limit: int = 128) -> str:
    return ", ".join(str(d) for d in range(1, min(n, limit) + 1) if n % d == 0)


def _check(path: str, linear: nn.Linear, groups: int, meta_out: int, width: int) -> None:
    k = linear.in_features
    problems = []
    if groups < 1 or k % groups:
        problems.append(f"{groups} groups do not divide its {k} input features (divisors: {_fitting(k)})")
    if meta_out < 1 or width % meta_out:
        problems.append(f"{meta_out} Meta output groups do not divide the width {width} (divisors: {_fitting(width)})")
    if problems:
        raise RewriteError(f"'{path}' (Linear {k} → {linear.out_features}): {'; '.join(problems)}")


def build(linear: nn.Linear, groups: int, meta_out: int, hidden: int | None, meta_init: str = "identity") -> nn.Sequential:
    """The replacement of ``linear`` (fresh weights); ``hidden`` set → classifier behind a bottleneck."""
    width = linear.out_features if hidden is None else hidden
    bias = linear.bias is not None
    parts: OrderedDict[str, nn.Module] = OrderedDict(
        grouped=GroupedLinear(linear.in_features, groups, width // meta_out, bias=bias),
        meta=Meta(groups, meta_out, init=meta_init),
        flatten=nn.Flatten(-2),
    )
    if hidden is not None:
        parts["out"] = nn.Linear(hidden, linear.out_features, bias=bias)
    new = nn.Sequential(parts)
    return new.to(device=linear.weight.device, dtype=linear.weight.dtype)


@torch.no_grad()
def copy_weights(linear: nn.Linear, new: nn.Sequential) -> None:
    """Start ``new`` as the best approximation of ``linear`` that its structure allows (Meta = identity)."""
    grouped: GroupedLinear = new.grouped
    g, k, l = grouped.weight.shape
    if "out" not in new._modules:  # width-preserving: keep W's diagonal blocks
        blocks = linear.weight.view(g, l, g, k).diagonal(dim1=0, dim2=2)  # (l, k, g)
        grouped.weight.copy_(blocks.permute(2, 1, 0))
        if grouped.bias is not None:
            grouped.bias.copy_(linear.bias.view(g, l))
        return
    out: nn.Linear = new.out
    c = linear.out_features
    u, s, vh = torch.linalg.svd(linear.weight.view(c, g, k).transpose(0, 1), full_matrices=False)
    r = min(l, s.shape[1])
    root = s[:, :r].sqrt()
    grouped.weight[:, :, :r] = (vh[:, :r, :] * root[..., None]).transpose(1, 2)
    if grouped.bias is not None:
        grouped.bias.zero_()
    out_w = out.weight.view(c, g, l)
    out_w.zero_()  # unused ranks: zero outputs, but random group weights so they still learn
    out_w[:, :, :r] = (u[:, :, :r] * root[:, None, :]).transpose(0, 1)
    if out.bias is not None:
        out.bias.copy_(linear.bias)


@torch.no_grad()
def relative_error(old: nn.Module, new: nn.Module, in_features: int, rows: int = 256) -> float:
    """‖new(z) − old(z)‖ / ‖old(z)‖ on standard-normal features z (a fixed generator)."""
    z = torch.randn(rows, in_features, generator=torch.Generator().manual_seed(0))
    z = z.to(device=next(old.parameters()).device, dtype=next(old.parameters()).dtype)
    ref = old(z)
    return float((new(z) - ref).norm() / ref.norm())


def describe(linear: nn.Linear, new: nn.Sequential) -> tuple[str, str]:
    grouped, meta = new.grouped, new.meta
    k = grouped.in_features // grouped.groups
    after = f"{grouped.groups}×Linear({k} → {grouped.out_per_group}) → Meta({meta.n_in} → {meta.n_out})"
    if "out" in new._modules:
        after += f" → Linear({new.out.in_features} → {new.out.out_features})"
    return f"Linear({linear.in_features} → {linear.out_features})", after


def plan(model: nn.Module, traced: Traced, groups: int, meta_out: int | None, hidden: int | None,
         layers: Iterable[str] | None) -> list[HeadLayer]:
    """Which Linears to replace and how (see the module docstring)."""
    layers = globs(layers)
    try:
        classifier, hidden_fcs = head_layers(traced)
    except RewriteError:
        if not layers:
            raise
        classifier, hidden_fcs = None, []
    if layers:
        chosen = select([n.target for n in call_nodes(traced, nn.Linear)], layers, "Linear layer")
    else:
        chosen = hidden_fcs or [classifier]
    if hidden is not None and classifier not in chosen:
        raise RewriteError(f"hidden={hidden} sets the bottleneck in front of the classifier, but the replaced "
                           f"layer(s) {', '.join(chosen)} are hidden FCs, replaced at their own width")
    m = meta_out or groups
    specs = []
    for path in chosen:
        width = None
        if path == classifier:
            width = hidden if hidden is not None else default_hidden(model.get_submodule(path).in_features, m)
        specs.append(HeadLayer(path, width))
    return specs


def apply_step(model: nn.Module, step: dict[str, Any], init: str = "random",
               meta_init: str = "identity") -> list[Change]:
    """Replace the layers a recipe step names, in place (every layer is validated before any is replaced)."""
    groups, meta_out = step["groups"], step["meta_out"]
    if init not in ("random", "copy"):
        raise RewriteError(f"init must be 'random' or 'copy', got {init!r}")
    if init == "copy" and (meta_out != groups or meta_init != "identity"):
        raise RewriteError("init='copy' needs an identity Meta: meta_out equal to groups and meta_init='identity'")
    built = []
    for layer in step["layers"]:
        linear = model.get_submodule(layer["path"])
        if not isinstance(linear, nn.Linear):
            raise RewriteError(f"'{layer['path']}' is a {type(linear).__name__}, not an nn.Linear")
        width = linear.out_features if layer["hidden"] is None else layer["hidden"]
        _check(layer["path"], linear, groups, meta_out, width)
        built.append((layer["path"], linear, build(linear, groups, meta_out, layer["hidden"], meta_init)))
    changes = []
    for path, linear, new in built:
        note = ""
        if init == "copy":
            copy_weights(linear, new)
            note = (f"initialised from the old weights: relative output error "
                    f"{relative_error(linear, new, linear.in_features):.3g} on random N(0, 1) features")
        model.set_submodule(path, new)
        changes.append(Change(path, *describe(linear, new), note=note))
    return changes


def rewrite_head(model: nn.Module, groups: int, *, meta_out: int | None = None, hidden: int | None = None,
                 layers: Iterable[str] | None = None, init: str = "random", meta_init: str = "identity",
                 inplace: bool = False, input_size: tuple[int, ...] | None = None) -> Rewrite:
    """Replace the head's large FC layer(s) with ``groups``-way grouped FC + Meta(groups, meta_out).

    ``layers``: globs on module paths of Linear layers (default: the head's hidden
    FCs, else the classifier).  ``hidden``: bottleneck width when the classifier is
    replaced (default :func:`default_hidden`).  ``init="copy"`` starts from the old
    weights (see the module docstring); each change's ``note`` then gives the
    relative output error on random features.  Returns a :class:`Rewrite` whose
    ``model`` is a copy unless ``inplace``.  ``input_size`` (no batch) lets a model
    whose code branches on shapes be traced (see :func:`~rffsurgery.trace.trace`).
    """
    traced = trace(model, input_shape=None if input_size is None else (1, *input_size))
    specs = plan(model, traced, groups, meta_out, hidden, layers)
    if not inplace:
        model = copy.deepcopy(model)
    step = {"rewrite": STEP, "groups": groups, "meta_out": meta_out or groups,
            "layers": [{"path": s.path, "hidden": s.hidden} for s in specs]}
    changes = apply_step(model, step, init, meta_init)
    return Rewrite(model, step, changes)
