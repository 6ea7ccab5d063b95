"""The epoch loop: batches on the device, one training epoch, evaluation, feature extraction.

Small datasets (CIFAR subsets, the generated set, cached features) live on the
device as one normalised float tensor and are indexed per batch, which avoids the
DataLoader's per-sample collation and host→device copies; folder datasets stream
through a DataLoader with workers and pinned memory.  Either way the loop sees
``batches.epoch(generator)`` yielding device tensors.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from .augment import Augment
from .data import DatasetNotFound, ImageFiles, Images, ImageTensors
from .device import Runtime
from .folder import FileDataset
from .seeding import seed_everything

__all__ = ["Batches", "EpochStats", "LoaderBatches", "TensorBatches", "evaluate", "extract_features",
           "make_batches", "train_epoch"]

MEAN, STD = 0.5, 0.25
"""Fixed normalisation ``(x/255 - 0.5) / 0.25``: data-independent, so both branches and every split agree."""


def _normalize(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - MEAN) / STD


class Batches(Protocol):
    size: int

    def __len__(self) -> int: ...

    def epoch(self, g: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class TensorBatches:
    """Inputs ``x`` and labels ``y`` already on the device; shuffled per epoch by index."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size, self.size = x, y, batch_size, len(y)

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def epoch(self, g: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if g is None:
            for i in range(0, self.size, self.batch_size):
                yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]
            return
        order = torch.randperm(self.size, generator=g).to(self.x.device)
        for i in range(0, self.size, self.batch_size):
            index = order[i:i + self.batch_size]
            yield self.x[index], self.y[index]


class _OrderSampler(Sampler[int]):
    """Yields whatever order the current epoch set (the DataLoader keeps one sampler for its life)."""

    def __init__(self, size: int) -> None:
        self.order: Sequence[int] = range(size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class LoaderBatches:
    """Image files decoded by DataLoader workers into pinned memory, normalised on the device."""

    def __init__(self, files: ImageFiles, runtime: Runtime, batch_size: int, workers: int) -> None:
        self.size, self.runtime = len(files), runtime
        self.sampler = _OrderSampler(self.size)
        self.loader = DataLoader(FileDataset(files), batch_size=batch_size, sampler=self.sampler,
                                 num_workers=workers, pin_memory=runtime.pin_memory, persistent_workers=workers > 0)

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, g: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.order = range(self.size) if g is None else torch.randperm(self.size, generator=g).tolist()
        try:
            for images, labels in self.loader:
                x = _normalize(images.to(self.runtime.device, non_blocking=True))
                yield x, labels.to(self.runtime.device, non_blocking=True)
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
                epoch_seed: int, augment: Augment | None = None, l1: float = 0.0, desc: str = "train") -> EpochStats:
    """One pass over ``batches`` in an order (and augmentation, dropout) fixed by ``epoch_seed``.

    ``l1`` adds ``l1 · Σ|w|`` over trainable weight tensors (not biases or norms); L2 is
    the optimizer's weight decay.  Loss scaling (float16 only) restarts each epoch so
    that an epoch's result depends on nothing but the checkpointed state.
    """
    model.train()
    g = torch.Generator().manual_seed(epoch_seed)
    seed_everything(epoch_seed, "global")
    scaler = torch.amp.GradScaler(runtime.device.type, init_scale=2.0**12,
                                  enabled=runtime.amp_dtype == torch.float16)
    weights = [p for p in model.parameters() if p.requires_grad and p.dim() > 1] if l1 else []
    total = torch.zeros((), device=runtime.device)
    correct = torch.zeros((), device=runtime.device, dtype=torch.int64)
    start = time.perf_counter()
    for x, y in _progress(batches, batches.epoch(g), desc):
        if augment is not None and augment.active:
            x = augment(x, g)
        with runtime.autocast():
            out = model(_prepare(x, runtime))
            loss = ce = F.cross_entropy(out, y)
        if weights:
            loss = ce + l1 * sum(w.abs().sum() for w in weights)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += ce.detach() * len(y)
        correct += (out.argmax(1) == y).sum()
    loss_sum, hits = total.item(), correct.item()  # one device sync per epoch
    return EpochStats(loss_sum / batches.size, hits / batches.size, time.perf_counter() - start, batches.size)


def evaluate(model: nn.Module, batches: Batches, runtime: Runtime) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode."""
    model.eval()
    total = torch.zeros((), device=runtime.device)
    correct = torch.zeros((), device=runtime.device, dtype=torch.int64)
    with torch.inference_mode():
        for x, y in batches.epoch(None):
            with runtime.autocast():
                out = model(_prepare(x, runtime))
            total += F.cross_entropy(out.float(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
    return total.item() / batches.size, correct.item() / batches.size


def extract_features(body: nn.Module, batches: Batches, runtime: Runtime, batch_size: int) -> TensorBatches:
    """Run the frozen feature extractor once (eval mode) and keep its outputs on the device."""
    body.eval()
    xs, ys = [], []
    with torch.no_grad():  # not inference_mode: the features feed a trained head's backward pass
        for x, y in batches.epoch(None):
            with runtime.autocast():
                xs.append(body(_prepare(x, runtime)).float().flatten(1))
            ys.append(y)
    return TensorBatches(torch.cat(xs), torch.cat(ys), batch_size)
