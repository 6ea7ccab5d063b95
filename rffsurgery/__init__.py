"""rffsurgery: exact receptive fields, receptive-field-freeze plans and layer rewrites for PyTorch models.

Public API::

    from rffsurgery import analyze, build_freeze_plan, tag
    analysis = analyze("resnet50")      # or analyze(model, input_size=(3, 224, 224)), analyze("model.onnx")
    analysis["layer4"].rf               # (427, 427): a module path names its output node
    tag(analysis)                       # the RF-expanding layers (rffsurgery.tags)
    build_freeze_plan(analysis).export("plan.json")  # freeze plan for them (rffsurgery.plan)
    html_report(analysis, "report.html")  # the interactive report (rffsurgery.reports.html)
"""

from ._version import __version__
from .analysis import LayerRF, Plan, UnknownOpError, analyze
from .geometry.algebra import AxisMap, AxisRF
from .models import ModelNotFound
from .plan import FreezePlan, FreezeSchedule, PlanError, Schedule, build_freeze_plan, ddp_frozen, freeze
from .reports.html import html_report
from .surgery import ChannelConv3d, GroupedLinear, Meta, RewriteError, rewrite, rewrite_conv3d, rewrite_head
from .tags import Tag, TagError, tag
from .trace import TraceError

__all__ = ["AxisMap", "AxisRF", "ChannelConv3d", "FreezePlan", "FreezeSchedule", "GroupedLinear", "LayerRF", "Meta",
           "ModelNotFound", "Plan", "PlanError", "RewriteError", "Schedule", "Tag", "TagError", "TraceError",
           "UnknownOpError", "analyze", "build_freeze_plan", "ddp_frozen", "freeze", "html_report", "rewrite",
           "rewrite_conv3d", "rewrite_head", "tag", "__version__"]
