"""Data-parallel protocol runs: ``torchrun --nproc_per_node N -m rffsurgery train …``.

Every process runs the whole protocol on the same data with the same seeds; only the
training and evaluation batches are split.  Step ``i`` of an epoch covers the same
global batch of ``batch_size`` images as in a one-process run (one seeded permutation,
identical on every rank); rank ``r`` takes part ``r`` of it (``torch.tensor_split``: sizes
differ by at most one, so ``batch_size`` need not divide by the world size), and its loss
is scaled by ``local / global`` × world so that DistributedDataParallel's gradient
average equals the gradient of the global batch's mean loss.  A last partial batch
with fewer images than processes is dropped (a process may not sit out a step).
Loss/accuracy sums are all-reduced, so every rank sees the same numbers; BatchNorm
buffers are broadcast from rank 0 after every training epoch, so evaluation and
checkpoints agree.  Differences from one process: BatchNorm normalises each
process's share of the batch (plain DDP semantics), and augmentation and dropout
draw from per-rank streams.

Freezing: the model is wrapped in a fresh ``DistributedDataParallel`` at the start
of every training epoch, after the freeze plan has set ``requires_grad``, so DDP
registers only the trainable parameters and never needs ``find_unused_parameters``.
Rank 0 writes checkpoints, logs, plots and the report; the others wait at barriers.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import torch
from torch import nn

from ..errors import InvalidArgument
from .device import Runtime

__all__ = ["World", "current", "place", "session"]


@dataclass(frozen=True)
class World:
    """This process's place among the ones training together (``size == 1``: a plain run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints progress."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.parallel:
            torch.distributed.barrier()

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch's indices."""
        return torch.tensor_split(index, self.size)[self.rank] if self.parallel else index

    def sum(self, values: Sequence[torch.Tensor]) -> list[float]:
        """Sums over all ranks of scalar tensors (one collective for all of them)."""
        stacked = torch.stack([v.detach().double().reshape(()) for v in values])
        if self.parallel:
            if torch.distributed.get_backend() == "nccl":
                stacked = stacked.to(torch.device("cuda", torch.cuda.current_device()))
            else:
                stacked = stacked.cpu()
            torch.distributed.all_reduce(stacked)
        return stacked.tolist()

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP over the parameters that are trainable now (call again when the frozen set changes)."""
        if not self.parallel:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def sync_buffers(self, model: nn.Module) -> None:
        """Make every rank's buffers (BatchNorm running statistics) rank 0's."""
        if self.parallel:
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, src=0)


def current() -> World:
    """The process group this process belongs to, or a one-process world."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def _launched() -> int:
    """The world size torchrun announced (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise InvalidArgument(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[World]:
    """Join torchrun's process group for the block (NCCL for CUDA, gloo otherwise); a no-op without torchrun.

    A group that the caller initialised already is used as it is and left open.
    """
    dist = torch.distributed
    if _launched() <= 1 or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    if not dist.is_available():
        raise InvalidArgument("this PyTorch build has no torch.distributed: run with one process")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def place(runtime: Runtime, world: World) -> Runtime:
    """Each process on its own GPU (``cuda:LOCAL_RANK``); CPU processes share the CPU."""
    if not world.parallel or runtime.device.type != "cuda":
        return runtime
    if runtime.device.index not in (None, world.local_rank):
        raise InvalidArgument(f"--device {runtime.device} with {world.size} processes: give --device cuda (each "
                              "process takes the GPU of its LOCAL_RANK) or restrict GPUs with CUDA_VISIBLE_DEVICES")
    return replace(runtime, device=torch.device("cuda", world.local_rank))
