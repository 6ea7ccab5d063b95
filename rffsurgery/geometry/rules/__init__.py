"""The one table of geometry rules: op → how it transforms receptive fields.

The rules themselves live in one module per op family (``conv``, ``pool``,
``resample``, ``elementwise``, ``shape``, ``reduction``, ``contraction``,
``attention``); this module assembles them into :data:`TABLE`.

Supporting a new op is one entry in :data:`TABLE`.  A key is

* an ``nn.Module`` class, or its qualified name as a string
  (``"timm.layers.conv2d_same.Conv2dSame"``) so third-party packages are never
  imported just to analyse a torchvision model;
* a function (``torch.flatten``, ``operator.add``, ``F.interpolate``) or its
  qualified name;
* a tensor method name prefixed with a dot (``".view"``);
* an aten operator (``torch.ops.aten.conv2d``), for graphs captured by ``torch.export``:
  the entry covers all its overloads (``conv2d.default``, ``conv2d.padding``); an
  in-place variant (``relu_``) is its own operator and its own key.

A module subclass inherits its base's rule only if it does not override
``forward``: a subclass with its own forward is a different computation and
must have its own entry (otherwise it is reported as unknown, never guessed).

Each rule takes a :class:`~rffsurgery.geometry.call.Call` and returns the output
geometry.  Entries whose output shape is known from their inputs
say so (``Rule.shape``), so shape propagation can skip executing them.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention, multihead_attention, relative_position_bias, scaled_dot_product, transformer_layer
from .base import Rule, RuleFn
from .contraction import einsum, linear, matmul
from .conv import cond_conv, conv, conv_transpose, pad, same_dynamic, sequential_conv_mlp
from .elementwise import constant, converted, pointwise
from .pool import pool
from .recurrence import recurrence, recurrence_macs, recurrence_shape
from .replay import replay
from .reduction import norm_shape_len, normalise_over, normalize, over_dim, reduce, spatial_norm
from .resample import (
    adaptive_pool,
    interpolate,
    multi_scale_fusion,
    onnx_resize,
    patch_merging_pad,
    pixel_shuffle,
    pixel_unshuffle,
    scale_image,
    upsample,
)
from .shape import (
    aten_select,
    aten_slice,
    cat,
    expand,
    getitem,
    movedim,
    permute,
    repeat,
    reshape,
    reshape_with_size,
    roll,
    split,
    stack,
    transpose,
)
from .unfold import fold, tensor_unfold, unfold
from .window import halo_attention, local_window_attention, swin_block, tiny_vit_block, torchvision_window_attention

__all__ = ["Rule", "RuleFn", "TABLE", "has_module_rule", "keeps_whole", "lookup", "lookup_module"]

def _aten(*names: str) -> tuple:
    """aten operators by name (``torch.ops.aten.<name>``): each key covers every overload of one operator."""
    return tuple(getattr(torch.ops.aten, name) for name in names)


_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Hardshrink, nn.Softshrink, nn.GLU,
)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_CHANNEL_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LocalResponseNorm, nn.Identity)
_POINTWISE_FUNCTIONS = (
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_, F.softplus, F.sigmoid, F.tanh, F.logsigmoid, F.prelu,
    F.rrelu, F.glu, F.threshold, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.feature_alpha_dropout, F.batch_norm, F.local_response_norm,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.abs, torch.neg, torch.sqrt,
    torch.rsqrt, torch.clamp, torch.clip, torch.add, torch.sub, torch.mul, torch.div, torch.true_divide,
    torch.maximum, torch.minimum, torch.where, torch.pow, torch.square, torch.erf, torch.sign, torch.floor,
    torch.ceil, torch.round, torch.reciprocal, torch.lerp, torch.addcmul, torch.masked_fill, torch.sin, torch.cos,
    torch.nan_to_num, torch.sigmoid_, torch.exp_, torch.clamp_min, torch.clamp_max,
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul, operator.truediv,
    operator.itruediv, operator.floordiv, operator.neg, operator.pow, operator.abs, operator.and_, operator.or_,
    operator.invert,
    torch.Tensor.add, torch.Tensor.mul, F.softsign, "torchvision.ops.stochastic_depth.stochastic_depth",
    *_aten("relu", "relu_", "relu6", "gelu", "gelu_", "silu", "silu_", "mish", "mish_", "hardswish", "hardswish_",
           "hardsigmoid", "hardsigmoid_", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu",
           "celu", "prelu", "glu", "threshold", "softplus", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "log",
           "sqrt", "rsqrt", "abs", "neg", "erf", "sign", "floor", "ceil", "round", "reciprocal", "square", "sin", "cos",
           "pow", "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "add", "add_", "sub", "sub_",
           "rsub", "mul", "mul_", "div", "div_", "maximum", "minimum", "where", "lerp", "addcmul", "masked_fill",
           "masked_fill_", "batch_norm", "dropout", "dropout_", "clone", "contiguous", "detach", "alias"),
)
_POINTWISE_METHODS = (
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "exp_", "log", "abs", "neg", "sqrt", "rsqrt",
    "clamp", "clamp_", "clip", "clamp_min", "clamp_min_", "clamp_max", "add", "add_", "sub", "sub_", "mul",
    "mul_", "div", "div_", "pow", "square", "contiguous", "detach", "clone", "masked_fill", "masked_fill_", "addcmul", "lerp", "sign", "reciprocal",
    "erf", "sin", "cos", "floor", "ceil", "round", "softplus", "hardswish", "gelu", "silu", "zero_", "fill_",
    "requires_grad_", "nan_to_num", "maximum", "minimum", "where",
    "sigmoid", "__add__", "__mul__",
)
# pointwise, but the output's dtype is not the input's: run them for their output
_COMPARISONS = (operator.lt, operator.gt, operator.le, operator.ge, operator.eq, operator.ne,
                *_aten("lt", "gt", "le", "ge", "eq", "ne"))
# the tensor itself in another dtype or place; another tensor argument (``type_as(q)``) only names them
_CONVERSIONS = (*(f".{m}" for m in ("to", "type", "type_as", "float", "half", "double", "bfloat16", "bool", "int",
                                    "long", "cpu", "cuda")),
                *_aten("_to_copy", "to", "type_as"))
_RESHAPES = (".view", ".reshape", ".flatten", ".unflatten", ".squeeze", ".unsqueeze", ".view_as", ".reshape_as",
             torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze, torch.unflatten, nn.Flatten, nn.Unflatten,
             *_aten("view", "reshape", "_unsafe_view", "view_as", "flatten", "unflatten", "squeeze", "unsqueeze"))
_REDUCTIONS = (".mean", ".sum", ".amax", ".amin", ".max", ".min", ".std", ".var", ".logsumexp", ".norm", ".prod",
               ".argmax", ".argmin",
               torch.mean, torch.sum, torch.amax, torch.amin, torch.max, torch.min, torch.std, torch.var,
               torch.logsumexp, torch.norm, torch.prod, torch.argmax, torch.argmin,
               *_aten("mean", "sum", "amax", "amin", "max", "min", "logsumexp", "prod", "argmax", "argmin"))

TIMM = "timm.layers."
TABLE: list[tuple[tuple, Rule]] = [
    ((*_ACTIVATIONS, *_DROPOUTS, *_CHANNEL_NORMS, *_POINTWISE_FUNCTIONS,
      *(f".{m}" for m in _POINTWISE_METHODS),
      f"{TIMM}norm_act.BatchNormAct2d", f"{TIMM}norm_act.SyncBatchNormAct", f"{TIMM}norm_act.FrozenBatchNormAct2d",
      f"{TIMM}inplace_abn.InplaceAbn"), Rule(pointwise, shape="broadcast", name="pointwise")),
    (_COMPARISONS, Rule(pointwise, name="pointwise")),
    (_CONVERSIONS, Rule(converted, name="pointwise")),
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d, F.conv1d, F.conv2d, F.conv3d, *_aten("conv1d", "conv2d", "conv3d")),
     Rule(conv, name="conv")),
    ((f"{TIMM}conv2d_same.Conv2dSame", f"{TIMM}std_conv.StdConv2dSame", f"{TIMM}std_conv.ScaledStdConv2dSame"),
     Rule(same_dynamic, name="conv")),
    ((f"{TIMM}cond_conv2d.CondConv2d",), Rule(cond_conv, name="conv")),
    # one conv node (its banded weight is a Conv2d's), so tags and plans see a weight layer
    (("rffsurgery.surgery.layers.ChannelConv3d",), Rule(conv, name="conv", whole=True, factors=False)),
    ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, F.conv_transpose1d, F.conv_transpose2d,
      F.conv_transpose3d, *_aten("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")),
     Rule(conv_transpose, name="conv_transpose")),
    ((nn.MaxPool1d, F.max_pool1d, *_aten("max_pool1d")), Rule(pool(1, has_dilation=True), name="pool")),
    ((nn.MaxPool2d, F.max_pool2d, *_aten("max_pool2d")), Rule(pool(2, has_dilation=True), name="pool")),
    ((nn.MaxPool3d, F.max_pool3d, *_aten("max_pool3d")), Rule(pool(3, has_dilation=True), name="pool")),
    ((nn.AvgPool1d, F.avg_pool1d, nn.LPPool1d, *_aten("avg_pool1d")), Rule(pool(1), name="pool")),
    ((nn.AvgPool2d, F.avg_pool2d, nn.LPPool2d, *_aten("avg_pool2d")), Rule(pool(2), name="pool")),
    ((nn.AvgPool3d, F.avg_pool3d, nn.LPPool3d, *_aten("avg_pool3d")), Rule(pool(3), name="pool")),
    ((f"{TIMM}pool2d_same.MaxPool2dSame", f"{TIMM}pool2d_same.AvgPool2dSame"), Rule(same_dynamic, name="pool")),
    ((nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, F.adaptive_avg_pool1d, F.adaptive_max_pool1d,
      *_aten("adaptive_avg_pool1d", "adaptive_max_pool1d")), Rule(adaptive_pool(1), name="adaptive_pool")),
    ((nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
      *_aten("adaptive_avg_pool2d", "adaptive_max_pool2d")), Rule(adaptive_pool(2), name="adaptive_pool")),
    ((nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d, F.adaptive_avg_pool3d, F.adaptive_max_pool3d,
      *_aten("adaptive_avg_pool3d", "adaptive_max_pool3d")), Rule(adaptive_pool(3), name="adaptive_pool")),
    ((nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, F.interpolate, F.upsample),
     Rule(interpolate, name="interpolate")),
    (_aten("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d"), Rule(upsample("nearest"), name="interpolate")),
    (_aten("_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d"),
     Rule(upsample("nearest-exact"), name="interpolate")),
    (_aten("upsample_linear1d", "upsample_bilinear2d", "upsample_trilinear3d"), Rule(upsample("linear"), name="interpolate")),
    (_aten("upsample_bicubic2d"), Rule(upsample("bicubic"), name="interpolate")),
    (("rffsurgery.trace.onnx_ops.interpolate",), Rule(onnx_resize, name="interpolate")),
    ((F.pad, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
      nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d,
      nn.ReplicationPad3d, nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d, *_aten("pad")),
     Rule(pad, name="pad")),
    ((nn.PixelShuffle, F.pixel_shuffle, torch.pixel_shuffle, *_aten("pixel_shuffle")),
     Rule(pixel_shuffle, name="pixel_shuffle")),
    ((nn.PixelUnshuffle, F.pixel_unshuffle, torch.pixel_unshuffle, *_aten("pixel_unshuffle")),
     Rule(pixel_unshuffle, name="pixel_unshuffle")),
    (_RESHAPES, Rule(reshape, name="reshape")),
    ((".permute", torch.permute, *_aten("permute")), Rule(permute, name="permute")),
    ((".transpose", torch.transpose, ".swapaxes", torch.swapaxes, *_aten("transpose")), Rule(transpose, name="transpose")),
    ((".movedim", torch.movedim, *_aten("movedim")), Rule(movedim, name="movedim")),
    (_REDUCTIONS, Rule(reduce, name="reduce")),
    ((nn.LayerNorm, F.layer_norm, nn.RMSNorm, F.rms_norm, *_aten("layer_norm", "rms_norm")),
     Rule(normalise_over(norm_shape_len), shape="same", name="norm")),
    ((nn.GroupNorm, F.group_norm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, F.instance_norm,
      *_aten("group_norm", "instance_norm")), Rule(spatial_norm, shape="same", name="spatial_norm")),
    ((nn.Softmax, nn.LogSoftmax, nn.Softmin, F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax,
      ".softmax", ".log_softmax", torch.cumsum, ".cumsum", *_aten("softmax", "log_softmax", "_softmax", "_log_softmax",
                                                                   "cumsum")),
     Rule(over_dim, shape="same", name="softmax")),
    ((nn.Softmax2d,), Rule(normalise_over(lambda c: 0), shape="same", name="softmax")),
    ((F.normalize,), Rule(normalize, shape="same", name="norm")),
    ((nn.Linear, F.linear, nn.Bilinear, nn.LazyLinear, *_aten("linear")), Rule(linear, name="linear")),
    ((operator.matmul, torch.matmul, torch.bmm, torch.mm, ".matmul", ".bmm", ".mm", *_aten("matmul", "bmm", "mm")),
     Rule(matmul, name="matmul")),
    ((torch.einsum, *_aten("einsum")), Rule(einsum, name="einsum")),
    ((F.scaled_dot_product_attention, *_aten("scaled_dot_product_attention")),
     Rule(scaled_dot_product, name="attention")),
    ((nn.MultiheadAttention,), Rule(multihead_attention, name="attention")),
    ((nn.TransformerEncoderLayer, nn.TransformerEncoder), Rule(transformer_layer, name="attention")),
    ((nn.TransformerDecoderLayer, nn.Transformer,
      "timm.models.mobilevit.MobileVitBlock", "timm.models.mobilevit.MobileVitV2Block",
      "timm.models.convit.GPSA",
      f"{TIMM}non_local_attn.BilinearAttnTransform", "timm.models.cpubone.ConvAttention"),
     Rule(attention, name="attention")),
    (("timm.models.xcit.PositionalEncodingFourier", "timm.models.edgenext.PositionalEncodingFourier",
      torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like, torch.rand_like, torch.randn_like,
      ".new_zeros", ".new_ones", ".new_full", ".new_empty", *_aten("zeros_like", "ones_like", "full_like",
                                                                   "empty_like")), Rule(constant, name="constant")),
    ((".expand", ".expand_as", ".broadcast_to", torch.broadcast_to, *_aten("expand", "expand_as")),
     Rule(expand, name="expand")),
    ((".repeat", ".tile", torch.tile, ".repeat_interleave", torch.repeat_interleave, *_aten("repeat")),
     Rule(repeat, name="repeat")),
    ((torch.cat, torch.concat, torch.concatenate, *_aten("cat", "concat")), Rule(cat, name="cat")),
    ((torch.stack, *_aten("stack")), Rule(stack, name="stack")),
    ((operator.getitem,), Rule(getitem, name="getitem")),
    (_aten("slice"), Rule(aten_slice, name="getitem")),
    (_aten("select"), Rule(aten_select, name="getitem")),
    ((torch.chunk, ".chunk", torch.split, ".split", torch.unbind, ".unbind", torch.tensor_split, ".tensor_split",
      *_aten("chunk", "split", "split_with_sizes", "unbind")), Rule(split, name="split")),
    (("timm.models.vgg.ConvMlp",), Rule(sequential_conv_mlp, name="conv")),
    ((".unfold",), Rule(tensor_unfold, name="unfold")),
    ((nn.Unfold, F.unfold), Rule(unfold, name="unfold")),
    ((nn.Fold, F.fold), Rule(fold, name="fold")),
    ((torch.roll, ".roll", *_aten("roll")), Rule(roll, name="roll")),
    ((nn.LSTM, nn.GRU, nn.RNN), Rule(recurrence, shape=recurrence_shape, macs=recurrence_macs, name="recurrence",
                                        factors=False)),
    (("torchvision.models.swin_transformer.shifted_window_attention",
      "torchvision.models.video.swin_transformer.shifted_window_attention_3d"),
     Rule(torchvision_window_attention, shape="same", name="window_attention", factors=False)),
    (("torchvision.models.video.mvit._squeeze",), Rule(reshape, name="reshape")),
    (("torchvision.models.video.mvit._unsqueeze",), Rule(reshape_with_size, name="reshape", mixed=True)),
    (("timm.models.mobilenetv5.MobileNetV5MultiScaleFusionAdapter",),
     Rule(multi_scale_fusion, name="interpolate", factors=False)),
    (("timm.models.crossvit.scale_image",), Rule(scale_image, name="interpolate", factors=False)),
    (("torchvision.models.swin_transformer._patch_merging_pad",),
     Rule(patch_merging_pad, name="pixel_unshuffle", factors=False)),
    (("timm.models.swin_transformer.PatchMerging", "timm.models.swin_transformer_v2.PatchMerging",
      "timm.models.swin_transformer_v2_cr.PatchMerging"),
     Rule(patch_merging_pad, name="pixel_unshuffle", whole=True, factors=False)),
    (("timm.models.swin_transformer.SwinTransformerBlock", "timm.models.swin_transformer_v2.SwinTransformerV2Block",
      "timm.models.swin_transformer_v2_cr.SwinTransformerV2CrBlock"),
     Rule(swin_block, shape="same", name="window_attention", whole=True, factors=False)),
    (("timm.models.tiny_vit.TinyVitBlock",),
     Rule(tiny_vit_block, shape="same", name="window_attention", factors=False)),
    (("timm.models.efficientvit_msra.LocalWindowAttention",),
     Rule(local_window_attention, shape="same", name="window_attention", factors=False)),
    ((f"{TIMM}halo_attn.HaloAttn",), Rule(halo_attention, name="window_attention", whole=True, factors=False)),
    # reshapes (and blocks) timm keeps out of fx graphs: replayed op by op through this table
    (tuple(f"timm.models.{f}" for f in (
        "davit.window_reverse", "gcvit.window_reverse", "maxxvit.window_reverse", "maxxvit.window_reverse_nchw",
        "maxxvit.grid_reverse", "maxxvit.grid_reverse_nchw", "nest.deblockify", "mvitv2.reshape_pre_pool",
        "mvitv2.reshape_post_pool", "swin_transformer.window_reverse", "swin_transformer_v2.window_reverse",
        "swin_transformer_v2_cr.window_reverse", "twins.LocallyGroupedAttn",
        "efficientvit_mit.LiteMLA")),
     Rule(replay(lambda op, target: lookup(op, target, None)), name="reshape")),
    ((f"{TIMM}attention.maybe_add_mask",), Rule(pointwise, name="pointwise")),
    (("torchvision.models.video.mvit._add_rel_pos",), Rule(relative_position_bias, name="attention")),
    # x + shortcut, in place, the class token left out or not: the union of the two
    (("torchvision.models.video.mvit._add_shortcut",), Rule(pointwise, name="pointwise")),
]


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}"


def _build() -> tuple[dict, dict, dict]:
    modules: dict[Any, Rule] = {}
    functions: dict[Any, Rule] = {}
    methods: dict[str, Rule] = {}
    for keys, rule in TABLE:
        for key in keys:
            if isinstance(key, str) and key.startswith("."):
                methods.setdefault(key[1:], rule)
            elif isinstance(key, type) and issubclass(key, nn.Module):
                modules.setdefault(key, rule)
            elif isinstance(key, str):
                modules.setdefault(key, rule)
                functions.setdefault(key, rule)
            else:
                functions.setdefault(key, rule)
    return modules, functions, methods


_MODULES, _FUNCTIONS, _METHODS = _build()


def has_module_rule(cls: type) -> bool:
    """Whether modules of class ``cls`` have a geometry rule (so tracing may keep them whole)."""
    return _module_rule(cls) is not None


@functools.lru_cache(maxsize=None)
def keeps_whole(cls: type) -> bool:
    """Whether tracing must keep modules of class ``cls`` as one node (their rule says ``whole``)."""
    rule = _module_rule(cls)
    return rule is not None and rule.whole


def lookup_module(module: nn.Module) -> Rule | None:
    """Rule for a module type, inherited only through classes sharing the same ``forward``."""
    return _module_rule(type(module))


def _module_rule(cls: type) -> Rule | None:
    forward = cls.forward
    for base in cls.__mro__:
        if base is nn.Module or "forward" in vars(base) and vars(base)["forward"] is not forward:
            break
        rule = _MODULES.get(base) or _MODULES.get(_qualname(base))
        if rule is not None:
            return rule
    return None


def lookup(op: str, target: Any, module: nn.Module | None) -> Rule | None:
    """The rule for an fx node's op and target, or ``None`` if the op has none."""
    if op == "call_module":
        return lookup_module(module)
    if op == "call_method":
        return _METHODS.get(target)
    if op == "call_function":
        try:
            rule = _FUNCTIONS.get(target) or _FUNCTIONS.get(getattr(target, "overloadpacket", None))
        except TypeError:  # unhashable target
            rule = None
        return rule or _FUNCTIONS.get(_qualname(target))
    return None
