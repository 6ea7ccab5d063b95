"""Where training runs and with which speed-ups: CUDA, then Apple MPS, then CPU.

On CUDA the trainer uses mixed precision (bfloat16 where the GPU supports it, else
float16 with loss scaling).  channels_last memory format is used on CUDA and on CPU,
where it is oneDNN's preferred layout (measured here: the paper's base CNN trains
~25% faster, ResNet18 the same); MPS gets plain float32 in the default layout.
Autocast stays off on CPU/MPS: it is slower than float32 for these small convnets.

channels_last is a 4-D layout: :func:`with_memory_format` turns it off for a model
holding any tensor of another rank ≥ 5 (a rewritten ``ChannelConv3d``'s 5-D weight),
which then trains in the default contiguous layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import chain

import torch
from torch import nn

from ..errors import InvalidArgument

__all__ = ["MEMORY_FORMATS", "Runtime", "select_device", "with_memory_format"]

MEMORY_FORMATS = ("auto", "channels-last", "contiguous")


@dataclass(frozen=True)
class Runtime:
    """The chosen device and the precision/memory-format settings that go with it."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> torch.autocast:
        kind = self.device.type if self.device.type in ("cuda", "cpu") else "cpu"
        return torch.autocast(kind, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def describe(self) -> str:
        extras = [f"amp {str(self.amp_dtype).removeprefix('torch.')}"] if self.amp_dtype else []
        extras += ["channels_last"] if self.channels_last else []
        return f"{self.device}" + (f" ({', '.join(extras)})" if extras else "")


def select_device(name: str = "auto", amp: bool = True, channels_last: bool = True,
                  deterministic: bool = False) -> Runtime:
    """``"auto"`` picks CUDA, then MPS, then CPU; ``"cpu"``, ``"cuda:1"`` … force one.

    ``deterministic`` makes GPU kernels reproducible (exact ``--resume`` on GPU) at
    some speed cost; on CPU the kernels are deterministic already.
    """
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidArgument(f"unknown device {name!r}: {exc}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise InvalidArgument(f"device {name!r}: training runs on cpu, cuda[:N] or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InvalidArgument(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise InvalidArgument(f"device {name!r} requested but Apple MPS is not available on this machine")
    if device.type == "cpu":
        return Runtime(device, None, channels_last)
    if device.type != "cuda":
        return Runtime(device)
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if amp else None
    return Runtime(device, dtype, channels_last)


def with_memory_format(runtime: Runtime, model: nn.Module, choice: str = "auto") -> Runtime:
    """``runtime`` with the memory format for ``model``: ``auto`` keeps the device's choice unless the model
    has a parameter or buffer of rank 5 or more (channels_last applies to 4-D tensors only)."""
    if choice not in MEMORY_FORMATS:
        raise InvalidArgument(f"memory format must be one of {', '.join(MEMORY_FORMATS)}, got {choice!r}")
    high = [(name, t.dim()) for name, t in chain(model.named_parameters(), model.named_buffers()) if t.dim() > 4]
    if choice == "channels-last" and high:
        raise InvalidArgument(f"--memory-format channels-last needs 4-D weights, but {high[0][0]} is {high[0][1]}-D; "
                              "use --memory-format auto or contiguous")
    wanted = {"auto": runtime.channels_last and not high, "channels-last": True, "contiguous": False}[choice]
    return replace(runtime, channels_last=wanted)
