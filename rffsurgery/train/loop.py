"""The epoch loop: batches on the device, one training epoch, evaluation, feature extraction.

Small datasets (CIFAR subsets, the generated set, cached features) live on the
device as one normalised float tensor and are indexed per batch, which avoids the
DataLoader's per-sample collation and host→device copies; folder datasets stream
through a DataLoader with workers and pinned memory.  Either way the loop sees
``batches.steps(generator, world)`` yielding device tensors: this process's part of
each global batch (all of it in a one-process run, see :mod:`.distributed`).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ..data.base import DatasetNotFound, ImageFiles, Images, ImageTensors
from ..data.folder import FileDataset
from ..errors import RffError
from ..seeding import generator, seed_everything
from .augment import Augment
from .device import Runtime
from .distributed import World

__all__ = ["Batches", "Diverged", "EpochStats", "LoaderBatches", "TensorBatches", "evaluate", "extract_features",
           "make_batches", "train_epoch"]


class Diverged(RffError, ArithmeticError):
    """The loss became NaN or infinite: every number computed after it would be meaningless."""


def _finite(loss: float, where: str) -> float:
    """``loss``, or :class:`Diverged`: a run never reports accuracies computed from NaN weights."""
    if not math.isfinite(loss):
        raise Diverged(f"{where}: the mean loss is {loss}, so training diverged and nothing after it would mean "
                       "anything; lower the learning rate (--lr), or check the weights the model starts from")
    return loss

MEAN, STD = 0.5, 0.25
"""Fixed normalisation ``(x/255 - 0.5) / 0.25``: data-independent, so both branches and every split agree."""


def _normalize(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - MEAN) / STD


Step = tuple[torch.Tensor, torch.Tensor, int]
"""This process's inputs and labels of one step, and the size of the step's global batch."""


def _global_batches(size: int, batch_size: int, g: torch.Generator | None, world: World,
                    device: torch.device | None = None) -> Iterator[tuple[torch.Tensor, int]]:
    """Per step: this rank's indices (on ``device``) and the global batch size (shuffled by ``g``, else in order).

    In training (``g`` given) a last global batch smaller than the world is dropped, as every
    process must take part in every step; evaluation (no ``g``) skips empty parts instead.
    The order is drawn on the CPU (the same numbers on every device) and copied once.
    """
    order = (torch.arange(size) if g is None else torch.randperm(size, generator=g)).to(device)
    for i in range(0, size, batch_size):
        chunk = order[i:i + batch_size]
        if g is not None and len(chunk) < world.size:
            return
        mine = world.shard(chunk)
        if len(mine):
            yield mine, len(chunk)


class Batches(Protocol):
    size: int
    batch_size: int

    def __len__(self) -> int: ...

    def steps(self, g: torch.Generator | None, world: World = World()) -> Iterator[Step]: ...

    def epoch(self, g: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class _Epochs:
    """``epoch(g)``: the whole of every batch, for one process."""

    def epoch(self, g: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, _ in self.steps(g):  # type: ignore[attr-defined]
            yield x, y


class TensorBatches(_Epochs):
    """Inputs ``x`` and labels ``y`` already on the device; shuffled per epoch by index."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size, self.size = x, y, batch_size, len(y)

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def steps(self, g: torch.Generator | None, world: World = World()) -> Iterator[Step]:
        if g is None and not world.parallel:  # plain slices: no gather
            for i in range(0, self.size, self.batch_size):
                yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size], min(self.batch_size, self.size - i)
            return
        for index, total in _global_batches(self.size, self.batch_size, g, world, self.x.device):
            yield self.x[index], self.y[index], total


class _StepSampler(Sampler[list[int]]):
    """Yields the index lists the current epoch set (the DataLoader keeps one batch sampler for its life)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class LoaderBatches(_Epochs):
    """Image files decoded by DataLoader workers into pinned memory, normalised on the device."""

    def __init__(self, files: ImageFiles, runtime: Runtime, batch_size: int, workers: int) -> None:
        self.size, self.batch_size, self.runtime = len(files), batch_size, runtime
        self.sampler = _StepSampler()
        self.loader = DataLoader(FileDataset(files), batch_sampler=self.sampler, num_workers=workers,
                                 pin_memory=runtime.pin_memory, persistent_workers=workers > 0)

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def steps(self, g: torch.Generator | None, world: World = World()) -> Iterator[Step]:
        plan = list(_global_batches(self.size, self.batch_size, g, world))
        self.sampler.batches = [index.tolist() for index, _ in plan]
        try:
            for (images, labels), (_, total) in zip(self.loader, plan):
                x = _normalize(images.to(self.runtime.device, non_blocking=True))
                yield x, labels.to(self.runtime.device, non_blocking=True), total
        except DatasetNotFound as exc:  # from a worker: DataLoader put the worker's traceback in the message
            raise DatasetNotFound(str(exc).strip().splitlines()[-1].split(": ", 1)[-1]) from None


def make_batches(data: Images, runtime: Runtime, batch_size: int, workers: int = 0) -> Batches:
    """Device tensors for in-memory sets, a DataLoader for files."""
    if isinstance(data, ImageTensors):
        x = _normalize(data.images.to(runtime.device))
        return TensorBatches(x, data.labels.to(runtime.device), batch_size)
    return LoaderBatches(data, runtime, batch_size, workers)


@dataclass(frozen=True)
class EpochStats:
    loss: float
    accuracy: float
    seconds: float
    images: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def _progress(batches: Batches, it: Iterator, desc: str) -> Iterator:
    from tqdm.auto import tqdm

    return tqdm(it, total=len(batches), desc=desc, unit="batch", leave=False, disable=not sys.stderr.isatty())


def _prepare(x: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if runtime.channels_last and x.dim() == 4 else x


def train_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer, runtime: Runtime,
                epoch_seed: int, augment: Augment | None = None, l1: float = 0.0, desc: str = "train",
                world: World = World()) -> EpochStats:
    """One pass over ``batches`` in an order (and augmentation, dropout) fixed by ``epoch_seed``.

    ``l1`` adds ``l1 · Σ|w|`` over trainable weight tensors (not biases or norms); L2 is
    the optimizer's weight decay.  Loss scaling (float16 only) restarts each epoch so
    that an epoch's result depends on nothing but the checkpointed state.  With several
    processes (``world``) the model is wrapped in DDP over its trainable parameters for
    this epoch and each process trains on its part of every global batch.
    """
    net = world.wrap(model)
    model.train()
    g = torch.Generator().manual_seed(epoch_seed)
    rank = (world.rank,) if world.parallel else ()
    seed_everything(epoch_seed, "global", *rank)
    augment_g = generator(epoch_seed, "augment", *rank) if world.parallel else g
    scaler = torch.amp.GradScaler(runtime.device.type, init_scale=2.0**12,
                                  enabled=runtime.amp_dtype == torch.float16)
    weights = [p for p in model.parameters() if p.requires_grad and p.dim() > 1] if l1 else []
    total = torch.zeros((), device=runtime.device)
    correct = torch.zeros((), device=runtime.device, dtype=torch.int64)
    seen = 0
    start = time.perf_counter()
    steps = batches.steps(g, world)
    for x, y, batch in _progress(batches, steps, desc) if world.main else steps:
        if augment is not None and augment.active:
            x = augment(x, augment_g)
        with runtime.autocast():
            out = net(_prepare(x, runtime))
            loss = ce = F.cross_entropy(out, y)
        if world.parallel:  # DDP averages over processes: make that the global batch's mean
            loss = ce * (len(y) * world.size / batch)
        if weights:
            loss = loss + l1 * sum(w.abs().sum() for w in weights)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += ce.detach() * len(y)
        correct += (out.argmax(1) == y).sum()
        seen += len(y)
    world.sync_buffers(model)
    loss_sum, hits, seen = world.sum([total, correct, torch.tensor(seen)])  # one device sync per epoch
    return EpochStats(_finite(loss_sum / seen, desc), hits / seen, time.perf_counter() - start, int(seen))


def evaluate(model: nn.Module, batches: Batches, runtime: Runtime, world: World = World()) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode (each process takes its part; the sums are shared)."""
    model.eval()
    total = torch.zeros((), device=runtime.device)
    correct = torch.zeros((), device=runtime.device, dtype=torch.int64)
    with torch.inference_mode():
        for x, y, _ in batches.steps(None, world):
            with runtime.autocast():
                out = model(_prepare(x, runtime))
            total += F.cross_entropy(out.float(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
    loss_sum, hits = world.sum([total, correct])
    return _finite(loss_sum / batches.size, "evaluation"), hits / batches.size


def extract_features(body: nn.Module, batches: Batches, runtime: Runtime,
                     batch_size: int) -> tuple[TensorBatches, torch.Tensor | None]:
    """Run the frozen feature extractor once (eval mode); keep its outputs on the device.

    Returns the body's output (the head's input, flattened) as batches, and, from the same
    pass, the **pooled conv features**: the global average over the spatial axes of the last
    4-D ``(N, C, H, W)`` tensor any leaf module produced — the output of the last conv stage
    (the base CNN's last ReLU; in a ResNet its average pool, i.e. the head's input itself);
    ``None`` for a model without such a tensor (a 1-D net).
    """
    body.eval()
    last: list[torch.Tensor] = []

    def keep_maps(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            last[:] = [output]

    hooks = [m.register_forward_hook(keep_maps) for m in body.modules() if not any(True for _ in m.children())]
    xs, pooled, ys = [], [], []
    try:
        with torch.no_grad():  # not inference_mode: the features feed a trained head's backward pass
            for x, y in batches.epoch(None):
                last.clear()
                with runtime.autocast():
                    xs.append(body(_prepare(x, runtime)).float().flatten(1))
                if last:
                    pooled.append(last[0].float().mean((2, 3)))
                ys.append(y)
    finally:
        for hook in hooks:
            hook.remove()
    return TensorBatches(torch.cat(xs), torch.cat(ys), batch_size), torch.cat(pooled) if pooled else None
