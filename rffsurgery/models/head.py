"""The classifier head: one definition that the rewrites, the trainer and weights loading share.

The head is the ``nn.Linear`` that computes the model's output, found on the traced graph
by walking back from the output through elementwise ops and reshapes only (timm's
``head.fc`` behind a Flatten/Identity, torchvision's ``fc``, the base CNN's
``classifier.3``).  Walking the graph rather than taking the last ``nn.Linear`` in
registration order matters: a model may register an auxiliary or projection Linear
after its classifier, and the trainer resizing one layer while a rewrite replaces
another would make two tools disagree about the same model.
"""

from __future__ import annotations

from torch import fx, nn

from ..errors import InvalidArgument
from ..geometry.rules import lookup
from ..trace.tracer import Traced, trace

__all__ = ["NoHeadError", "find_head", "head_in_features", "head_node", "is_linear", "make_head", "through"]


class NoHeadError(InvalidArgument):
    """The model's output is not computed by an ``nn.Linear``; the message names what computes it."""


def through(node: fx.Node, modules: dict[str, nn.Module], kinds: tuple[str, ...]) -> fx.Node | None:
    """The single input of a node whose geometry rule is one of ``kinds`` (``"pointwise"``, ``"reshape"``),
    else ``None``."""
    if node.op not in ("call_module", "call_function", "call_method"):
        return None
    rule = lookup(node.op, node.target, modules.get(node.target) if node.op == "call_module" else None)
    inputs = node.all_input_nodes
    return inputs[0] if rule is not None and rule.name in kinds and len(inputs) == 1 else None


def is_linear(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    return node.op == "call_module" and isinstance(modules[node.target], nn.Linear)


def head_node(traced: Traced) -> fx.Node:
    """The graph node of the classifier; :class:`NoHeadError` when the output is not computed by a Linear."""
    modules = dict(traced.graph_module.named_modules())
    node = next(n for n in traced.graph.nodes if n.op == "output").args[0]
    if isinstance(node, (tuple, list)) and node:
        node = node[0]  # (logits, aux…): the first output
    while isinstance(node, fx.Node) and not is_linear(node, modules):
        step = through(node, modules, ("pointwise", "reshape"))
        if step is None:
            what = traced.names.get(node, str(node))
            raise NoHeadError(f"no Linear classifier: the output is computed by '{what}', not by an nn.Linear "
                              "(through elementwise ops and reshapes only)")
        node = step
    if not isinstance(node, fx.Node):
        raise NoHeadError(f"no Linear classifier: the model returns {type(node).__name__}, not one tensor")
    return node


def find_head(model: nn.Module | Traced) -> str:
    """Module path of the classifier (see the module docstring)."""
    return head_node(model if isinstance(model, Traced) else trace(model)).target


def make_head(in_features: int, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """A fresh output layer (PyTorch's default initialisation from the global generator); with ``dropout > 0``
    it is ``Sequential(Dropout(p), Linear)``, as the trainer builds it."""
    linear = nn.Linear(in_features, num_classes)
    return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else linear


def head_in_features(model: nn.Module, path: str) -> int:
    """Input width of the head at ``path`` (a Linear, or the trainer's ``Dropout → Linear``)."""
    head = model.get_submodule(path)
    linear = head if isinstance(head, nn.Linear) else head[-1]
    return linear.in_features
