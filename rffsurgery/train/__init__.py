"""The bundled trainer: the RFF experiment protocol end to end (docs/rff-method.md; the paper's Fig. 8).

>>> from rffsurgery.train import GeneratedSource, ProtocolConfig, resolve_splits, run_experiment
>>> source = GeneratedSource(per_class=250, cue=1.0)
>>> report = run_experiment(ProtocolConfig(epochs=4), source, resolve_splits("g.1", source.splits),
...                         seeds=range(5), out="runs/cue")
>>> report["overall"]["mean"], report["overall"]["ci_low"], report["overall"]["ci_high"]

Data sources live in :mod:`rffsurgery.data` (one registry for the trainer and the ERF) and are
re-exported here: :func:`cifar100` and :func:`cifar10` (torchvision's on-disk layout),
:func:`image_folder`, :class:`GeneratedSource` (offline shapes with an optional class cue),
:func:`mnist_source` (Fashion-MNIST / MNIST IDX files).
Paper 002's rewrite experiment: :class:`RewriteConfig` and :func:`run_rewrite_experiment`.

The rooms: the epoch loop and what it runs on (:mod:`.loop`, :mod:`.device`,
:mod:`.distributed`, :mod:`.augment`, :mod:`.probe`), the state of a run
(:mod:`.checkpoint`, :mod:`.logs`, :mod:`.progress`, :mod:`.model`), and the experiments
(:mod:`.protocols`: the RFF protocol, the rewrite protocol, their statistics).
"""

from ..data.base import DatasetNotFound, ImageFiles, ImageTensors, ProtocolData, UnknownClassError
from ..data.cifar import cifar100
from ..data.cifar10 import cifar10
from ..data.folder import image_folder
from ..data.generated import GENERATED_SPLITS, SHAPES, GeneratedSource
from ..data.mnist import FASHION_SPLITS, mnist_source
from ..data.splits import CIFAR100_SPLITS, Split, random_splits, resolve_splits
from .augment import Augment
from .checkpoint import CheckpointError
from .device import Runtime, select_device
from .protocols.experiment import run_experiment
from .protocols.rewrite import RewriteConfig, run_rewrite_experiment
from .protocols.rff import ProtocolConfig, base_finished, run_protocol
from .protocols.stats import Summary, summarize

__all__ = ["Augment", "CIFAR100_SPLITS", "CheckpointError", "DatasetNotFound", "FASHION_SPLITS", "GENERATED_SPLITS",
           "GeneratedSource", "ImageFiles", "ImageTensors", "ProtocolConfig", "ProtocolData", "RewriteConfig",
           "Runtime", "SHAPES", "Split", "Summary", "UnknownClassError", "base_finished", "cifar10", "cifar100",
           "image_folder", "mnist_source", "random_splits", "resolve_splits", "run_experiment", "run_protocol",
           "run_rewrite_experiment", "select_device", "summarize"]
