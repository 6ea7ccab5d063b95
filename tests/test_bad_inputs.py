"""Bad and edge inputs across the CLI and the Python API: a clear one-line answer, never a traceback,
and no user file touched.

Every CLI case runs in-process (click's CliRunner) against one shared work folder and asserts

* the exit code: 1 for an error the user can fix, 2 for a usage error (click's);
* exactly one ``error:``/``Error:`` line on stderr, holding the key fact of the case;
* no "Traceback" anywhere in the output;
* every file in the work folder is unchanged afterwards (bytes and mtime), and none appeared —
  so no half-written output, no temporary file and no replaced plan/recipe/source is left behind.

API cases assert the exception type (a subclass of ``RffError``) and the key fact of its message.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import sys
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from rffsurgery import analyze, freeze, rewrite, tag
from rffsurgery.cli import main
from rffsurgery.errors import InvalidArgument, MissingDependency, OutputExists, RffError
from rffsurgery.export import export_onnx
from rffsurgery.models import RFFBaseCNN
from rffsurgery.plan import FreezePlan, PlanError
from rffsurgery.surgery import RewriteError, load as load_rewritten
from rffsurgery.train import (Augment, GeneratedSource, ProtocolConfig, resolve_splits,
                              select_device)
from rffsurgery.analysis.erf import erf
from rffsurgery.cli.train import parse_seeds
from rffsurgery.data.images import read_image
from rffsurgery.models.weights import load_weights
from rffsurgery.plan import Schedule, build_freeze_plan
from rffsurgery.tags import TagError
from rffsurgery.train.protocols.rewrite import RewriteConfig
from rffsurgery.models.zoo import ModelNotFound
from rffsurgery.usercode import UserCodeError

USER_MODELS = '''
import sys

import torch
from torch import nn


def raises():
    raise RuntimeError("boom in factory")


def returns_none():
    return None


def returns_int():
    return 42


def needs_args(width):
    return nn.Conv2d(3, width, 3)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 2)

    def forward(self, x):
        return self.fc(x)


class DictIn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, batch):
        return self.conv(batch["image"])


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x, y):
        return self.conv(x) + y


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return x


class NeedsReal(nn.Module):
    """Its forward needs a real value (.item()), so shapes come from running real tensors."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x) + x.max().item()


class Fft(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.fft.fft2(self.conv(x)).real


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        features = self.conv(x).mean((2, 3))
        return self.out(torch.relu(self.fc(features))), features


class DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return {"maps": self.conv(x)}


# -- issue 23: user code that exits, models with NaN weights or no spatial axes -----------------------
def exits():
    sys.exit(0)


class Stop(BaseException):
    """Not an Exception: a KeyboardInterrupt-like exit of the user's own."""


def stops():
    raise Stop("the factory gave up")


def bad_size():
    return nn.Conv2d(3, 4, 3)


bad_size.default_input_size = "big"


class Small(nn.Module):
    """A conv net with a Linear head, small enough to train in a second."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class ExitsInForward(Small):
    def forward(self, x):
        sys.exit(0)


class ExitsWhileTraining(Small):
    """Traces (in eval mode) like Small; ends the process once the trainer runs it in train mode."""

    def forward(self, x):
        if self.training:
            sys.exit(0)
        return super().forward(x)


class NanInit(Small):
    def __init__(self):
        super().__init__()
        with torch.no_grad():
            self.conv.weight[0, 0, 0, 0] = float("nan")


class Mlp2(nn.Module):
    default_input_size = (3, 8, 8)

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 10)
        self.out = nn.Linear(10, 2)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x.flatten(1))))
'''


def _onnx_files(w: Path) -> None:
    """Small ONNX files, good and bad, built with onnx.helper (no export needed)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def save(name: str, nodes: list, inputs: list, consts: dict, opsets: tuple = (("", 17),)) -> Path:
        graph = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
        onnx.save(proto, str(w / name))
        return w / name

    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    conv = {"w": np.ones((4, 3, 3, 3), np.float32)}
    small = save("small.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [image], conv)
    (w / "empty.onnx").write_bytes(b"")
    (w / "truncated.onnx").write_bytes(small.read_bytes()[:150])
    save("custom.onnx", [helper.make_node("Conv", ["x", "w"], ["c"], name="c"),
                         helper.make_node("Frobnicate", ["c"], ["y"], name="f", domain="com.example")],
         [image], conv, (("", 17), ("com.example", 1)))
    save("two.onnx", [helper.make_node("Add", ["x", "z"], ["y"])], [image, helper.make_tensor_value_info(
        "z", TensorProto.FLOAT, [1, 3, 8, 8])], {})
    save("tokens.onnx", [helper.make_node("Cast", ["x"], ["y"], to=1)],
         [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 3, 8, 8])], {})
    save("dynamic.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
         [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])], conv)
    needs = save("needs_data.onnx", [helper.make_node("Conv", ["x", "w"], ["c"], name="c"),
                                     helper.make_node("Reshape", ["c", "shape"], ["y"], name="r")],
                 [image], {**conv, "shape": np.array([1, -1], np.int64)})
    onnx.save_model(onnx.load(str(needs)), str(needs), save_as_external_data=True, location="needs_data.bin",
                    size_threshold=0)
    (w / "needs_data.bin").unlink()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One folder with every input the cases need; its files must never change."""
    w = tmp_path_factory.mktemp("bad")
    (w / "models.py").write_text(USER_MODELS)
    (w / "syntax.py").write_text("def f(:\n")
    (w / "import_fails.py").write_text("raise ImportError('a dependency of this file is missing')\n")
    (w / "afile").write_text("just a file\n")
    (w / "adir").mkdir()
    (w / "empty").mkdir()
    (w / "existing.json").write_text('{"mine": true}\n')
    (w / "existing.png").write_bytes(b"not really a png")
    (w / "existing.onnx").write_bytes(b"not really onnx")
    _onnx_files(w)
    runner = CliRunner()
    made = runner.invoke(main, ["analyze", "rff-base-cnn", "--export-plan", str(w / "plan.json")])
    assert made.exit_code == 0, made.output
    plan = json.loads((w / "plan.json").read_text())
    (w / "notjson.json").write_text("{not json")
    (w / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    (w / "array.json").write_text("[]")
    (w / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (w / "future.json").write_text(json.dumps({**plan, "schema_version": 99}))
    (w / "wrongschema.json").write_text(json.dumps({**plan, "schema": "something.else"}))
    (w / "emptyparams.json").write_text(json.dumps({**plan, "freeze": {**plan["freeze"], "parameters": []}}))
    (w / "badtype.json").write_text(json.dumps({**plan, "freeze": {**plan["freeze"], "parameters": "x"}}))
    (w / "plan_conv.json").write_text(json.dumps({**plan, "freeze": {**plan["freeze"], "parameters": ["conv.weight"]}}))
    made = runner.invoke(main, ["rewrite", "rff-base-cnn", "--meta-groups", "2", "--out", str(w / "recipe")])
    assert made.exit_code == 0, made.output
    (w / "report_dir").mkdir()
    (w / "report_dir" / "report.json").write_text("{}\n")
    cifar = w / "cifar_nofine" / "cifar-100-python"
    cifar.mkdir(parents=True)
    for name, payload in (("meta", {"coarse_label_names": ["a"]}), ("train", {"data": [], "fine_labels": []})):
        (cifar / name).write_bytes(pickle.dumps(payload, protocol=2))
    evil = w / "cifar_evil" / "cifar-100-python"
    evil.mkdir(parents=True)
    (evil / "meta").write_bytes(pickle.dumps(os.system, protocol=2))  # would name posix.system if unpickled
    (evil / "train").write_bytes(pickle.dumps({}, protocol=2))
    for cls in ("a", "b", "c"):
        (w / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            (w / "imgs" / cls / f"{i}.jpg").write_text("this is text, not a JPEG")
    made = runner.invoke(main, ["train", "--per-class", "10", "--epochs", "1", "--transfer-epochs", "1", "--no-plots",
                                "--stop-after", "base", "--out", str(w / "resumable")])
    assert made.exit_code == 0, made.output
    _issue_23_inputs(w, plan, runner)
    return w


def _issue_23_inputs(w: Path, plan: dict[str, Any], runner: CliRunner) -> None:
    """Inputs of the issue-23 cases: NaN weights, text as weights, absurd plan numbers, exiting modules, runs to resume."""
    (w / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    (w / "text.pt").write_text("hello, these are not weights\n")
    state = RFFBaseCNN().state_dict()
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, w / "nan.pt")
    state["features.0.weight"][0, 0, 0, 0] = float("inf")
    torch.save({"state_dict": state}, w / "inf.pt")
    (w / "nan_recipe").mkdir()
    (w / "nan_recipe" / "recipe.json").write_text((w / "recipe" / "recipe.json").read_text())
    weights = torch.load(w / "recipe" / "state_dict.pt", weights_only=True)
    weights[next(iter(weights))].view(-1)[0] = float("nan")
    torch.save(weights, w / "nan_recipe" / "state_dict.pt")
    (w / "every_huge.json").write_text(json.dumps({**plan, "schedule": {"every": 10**300, "start": 2}}))
    (w / "digits.json").write_text(json.dumps(plan).replace('"schedule": {', '"schedule": {"stop": ' + "9" * 5000 + ", "))
    (w / "size_huge.json").write_text(json.dumps({**plan, "input_size": [3, 10**300, 32]}))
    (w / "version_huge.json").write_text(json.dumps({**plan, "schema_version": 10**300}))
    (w / "ünï.png").write_text("not an image, in a folder with a unicode name\n")
    Image.new("RGB", (40, 40), (30, 120, 200)).save(w / "real.png")
    made = runner.invoke(main, ["train", "--per-class", "10", "--epochs", "1", "--transfer-epochs", "1", "--no-plots",
                                "--split", "mine", "--base", "disk,ring,square", "--transfer", "hbars,vbars",
                                "--stop-after", "base", "--out", str(w / "custom_split")])
    assert made.exit_code == 0, made.output
    _mnist_files(w / "mnist")
    _mnist_files(w / "mnist_copy")
    made = runner.invoke(main, ["train", "--data", "mnist", "--data-root", str(w / "mnist"), "--split", "random:1",
                                "--per-class", "10", "--epochs", "1", "--transfer-epochs", "1", "--no-plots",
                                "--stop-after", "base", "--out", str(w / "mnist_run")])
    assert made.exit_code == 0, made.output
    made = runner.invoke(main, ["train", "--protocol", "rewrite", "--meta-groups", "2", "--epochs", "1",
                                "--per-class", "10", "--batch-size", "32", "--no-plots", "--out", str(w / "rw_run")])
    assert made.exit_code == 0, made.output


def _mnist_files(folder: Path, per_class: int = 12) -> None:
    """Four tiny MNIST-shaped IDX files (10 classes of random 28×28 images)."""
    folder.mkdir()
    labels = np.repeat(np.arange(10), per_class).astype(np.uint8)
    images = np.random.default_rng(0).integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    for stem, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels),
                        ("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
        (folder / stem).write_bytes(header + array.tobytes())


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@dataclass(frozen=True)
class Case:
    args: str
    code: int
    key: str
    patch: str | None = None

    def __str__(self) -> str:
        return self.args


def _no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def _no_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def offline(*args: Any, **kwargs: Any) -> None:
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)


PATCHES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "no_matplotlib": _no_matplotlib, "no_onnxruntime": _no_onnxruntime, "no_network": _no_network}

T = "train --per-class 10 --epochs 1 --transfer-epochs 1 --no-plots --out {w}/runs"
D = "train --no-plots --out {w}/runs"  # real data sets: no generated-data options
R = "rewrite rff-base-cnn --meta-groups 2"

CASES = [
    # -- analyze: model names and user code --------------------------------------------------
    Case("analyze no-such-model", 1, "unknown model 'no-such-model'"),
    Case("analyze resnet5O", 1, "Close matches: resnet50"),
    Case("analyze timm:no_such_net_xyz", 1, "unknown model 'no_such_net_xyz' in timm"),
    Case("analyze torchvision:no_such_net", 1, "in torchvision"),
    Case("analyze {w}/syntax.py:f", 1, "syntax error in"),
    Case("analyze {w}/import_fails.py:f", 1, "a dependency of this file is missing"),
    Case("analyze {w}/models.py:raises", 1, "raised RuntimeError: boom in factory"),
    Case("analyze {w}/models.py:returns_none", 1, "returned NoneType None, not an nn.Module"),
    Case("analyze {w}/models.py:returns_int", 1, "returned int 42, not an nn.Module"),
    Case("analyze os:getcwd", 1, "returned str"),
    Case("analyze {w}/models.py:needs_args", 1, "needs argument(s) width"),
    Case("analyze {w}/models.py:no_such_name", 1, "has no callable 'no_such_name'"),
    Case("analyze {w}/nofile.py:f", 1, "no such file"),
    Case("analyze no_such_pkg_xyz:f", 1, "cannot import 'no_such_pkg_xyz'"),
    Case("analyze :f", 1, "expected 'package.module:name'"),
    Case("analyze {w}/models.py:Untraceable --capture fx", 1, "cannot trace Untraceable"),
    Case("analyze {w}/models.py:Mlp", 1, "cannot run on an input of 3x224x224"),
    Case("analyze {w}/models.py:DictIn", 1, "the model's first input must be one image tensor"),
    Case("analyze {w}/models.py:TwoInputs", 1, "more than one required input"),
    Case("analyze {w}/models.py:Fft --strict", 1, "without an exact geometry: fft_fft2"),
    Case("analyze {w}/models.py:NeedsReal --input-size 3,40000,40000", 1, "limit 4 GiB"),
    # -- analyze: ONNX files -------------------------------------------------------------------
    Case("analyze {w}/nosuch.onnx", 1, "no such ONNX file"),
    Case("analyze {w}/empty.onnx", 1, "is empty (0 bytes)"),
    Case("analyze {w}/existing.onnx", 1, "is not a valid ONNX file"),
    Case("analyze {w}/truncated.onnx", 1, "corrupt or truncated"),
    Case("analyze {w}/custom.onnx --strict", 1, "f (Frobnicate): no geometry rule for ONNX com.example.Frobnicate"),
    Case("analyze {w}/needs_data.onnx", 1, "stored in the external-data file needs_data.bin, which is missing"),
    Case("analyze {w}/two.onnx", 1, "takes 2 inputs (x, z)"),
    Case("analyze {w}/tokens.onnx", 1, "holds int64 values"),
    Case("analyze {w}/dynamic.onnx", 1, "has dynamic dims (N, 3, ?, ?): give --input-size"),
    Case("analyze {w}/small.onnx --input-size 16", 1, "fixes its input at 3x8x8"),
    Case("analyze {w}/dynamic.onnx --input-size 2", 1, "input 3x2x2 is too small for"),
    Case("analyze {w}/small.onnx --num-classes 5", 1, "--num-classes applies to PyTorch models"),
    Case("analyze {w}/small.onnx --capture export", 2, "--capture only applies with PyTorch models"),
    Case("analyze {w}/small.onnx --leaf torch.nn:ReLU", 2, "--leaf only applies with PyTorch models"),
    Case("analyze {w}/small.onnx --export-plan {w}/small.onnx --force", 1, "also an input of this command"),
    Case("rewrite {w}/small.onnx --meta-groups 2", 1, "does not run, rewrite or train them"),
    Case("plan check {w}/plan.json {w}/small.onnx", 1, "made from a PyTorch model's graph and this is an ONNX file"),
    # -- analyze: input sizes ------------------------------------------------------------------
    Case("analyze rff-base-cnn --input-size 0", 1, "must be positive in every dimension"),
    Case("analyze rff-base-cnn --input-size -5", 1, "must be positive"),
    Case("analyze rff-base-cnn --input-size 0x224", 1, "must be positive"),
    Case("analyze rff-base-cnn --input-size 3,0,32", 1, "must be positive"),
    Case("analyze rff-base-cnn --input-size 99999999999999999999999", 1, "elements"),
    Case("analyze rff-base-cnn --input-size 3,4000000,4000000", 1, "elements"),
    Case("analyze rff-base-cnn --input-size 22.7", 1, "integers"),
    Case("analyze rff-base-cnn --input-size 3,22.7,22.7", 1, "integers"),
    Case("analyze rff-base-cnn --input-size big", 1, "integers"),
    Case("analyze rff-base-cnn --input-size ,", 1, "at least one spatial size"),
    Case("analyze rff-base-cnn --input-size 1,3,224,224", 1, "no batch"),
    Case("analyze rff-base-cnn --input-size 16", 1, "it declares 3x32x32"),
    Case("analyze rff-base-cnn --input-size 1,32,32", 1, "to have 3 channels"),
    Case("analyze vgg16 --input-size 16", 1, "input 3x16x16 is too small for vgg16"),
    Case("analyze vgg11 --input-size 3,8000000,1", 1, "--input-size 3,8000000,32"),
    # -- analyze: options ------------------------------------------------------------------------
    Case("analyze rff-base-cnn --every 0", 2, "'--every': 0 is not in the range"),
    Case("analyze rff-base-cnn --export-plan {w}/new.json --every -2", 2, "--every"),
    Case("analyze rff-base-cnn --start 3", 2, "--start only applies with --export-plan"),
    Case("analyze rff-base-cnn --export-plan {w}/new.json --start 3", 2, "--start only applies with --every"),
    Case("analyze rff-base-cnn --export-plan {w}/new.json --stop 3", 2, "--stop only applies with --every"),
    Case("analyze rff-base-cnn --every 2", 2, "--every only applies with --export-plan"),
    Case("analyze rff-base-cnn --bn freeze", 2, "--bn only applies with --export-plan"),
    Case("analyze rff-base-cnn --export-plan {w}/new.json --epochs 2 --every 2", 2, "either --epochs or --every"),
    Case("analyze rff-base-cnn --export-plan {w}/new.json --epochs 0", 2, "--epochs: 0 is not an integer from 1"),
    Case("analyze rff-base-cnn --export-plan {w}/new.json --epochs a,b", 2, "comma-separated list"),
    Case("analyze rff-base-cnn --export-plan {w}/new.json --every 2 --start 5 --stop 3", 1, "'stop' must be"),
    Case("analyze rff-base-cnn --select features.*", 2, "--select only applies with --policy names"),
    Case("analyze rff-base-cnn --top-k 3", 2, "--top-k only applies with --policy growth"),
    Case("analyze rff-base-cnn --policy growth --top-k 0", 2, "--top-k"),
    Case("analyze rff-base-cnn --metric ratio", 2, "--metric only applies with --policy growth"),
    Case("analyze rff-base-cnn --policy growth --include-stem", 2, "--include-stem only applies with --policy paper"),
    Case("analyze rff-base-cnn --policy names", 1, "needs at least one node name"),
    Case("analyze rff-base-cnn --policy names --select nomatch*", 1, "'nomatch*' matches no node"),
    Case("analyze rff-base-cnn --policy bogus", 2, "'--policy'"),
    Case("analyze rff-base-cnn --policy growth --threshold abc", 2, "'--threshold'"),
    Case("analyze rff-base-cnn --main", 2, "--main only applies with --json or --csv"),
    Case("analyze rff-base-cnn --json --csv", 2, "either --json or --csv"),
    Case("analyze rff-base-cnn --leaf os:getcwd", 1, "not an nn.Module class"),
    Case("analyze rff-base-cnn --leaf torch.nn:NoSuchLayer", 1, "has no callable 'NoSuchLayer'"),
    Case("analyze rff-base-cnn --leaf justaname", 1, "expected 'package.module:name'"),
    # -- analyze: output files -------------------------------------------------------------------
    Case("analyze rff-base-cnn --export-plan {w}/existing.json", 1, "already exists: pass --force"),
    Case("analyze rff-base-cnn --export-plan {w}/plan.json", 1, "already exists"),
    Case("analyze {w}/models.py:Fft --export-plan {w}/models.py --force", 1, "also an input of this command"),
    Case("analyze rff-base-cnn --export-plan {w}/nodir/p.json", 1, "does not exist"),
    Case("analyze rff-base-cnn --export-plan {w}/afile/p.json", 1, "is not a folder"),
    Case("analyze rff-base-cnn --export-plan {w}/adir", 2, "is a directory"),
    Case("analyze rff-base-cnn --export-plan /sys/rffsurgery-plan.json", 1, "not writable"),
    Case("analyze rff-base-cnn --plot {w}/existing.png", 1, "already exists: pass --force"),
    Case("analyze rff-base-cnn --plot {w}/rf.png", 1, "needs matplotlib", "no_matplotlib"),
    Case("analyze rff-base-cnn --plot {w}/rf.txt", 1, "cannot draw a plot as .txt"),
    Case("analyze rff-base-cnn --plot {w}/nodir/rf.png", 1, "does not exist"),
    Case("analyze rff-base-cnn --plot {w}/same.json --export-plan {w}/same.json", 2, "the same file"),
    # -- plan show / check -------------------------------------------------------------------------
    Case("plan show {w}/missing.json", 2, "does not exist"),
    Case("plan show {w}/adir", 2, "is a directory"),
    Case("plan show {w}/notjson.json", 1, "is not valid JSON"),
    Case("plan show {w}/nested.json", 1, "nested too deeply"),
    Case("plan show {w}/array.json", 1, "a freeze plan is a JSON object"),
    Case("plan show {w}/binary.json", 1, "not a UTF-8 text file"),
    Case("plan show {w}/future.json", 1, "upgrade rffsurgery"),
    Case("plan show {w}/wrongschema.json", 1, "not a freeze plan"),
    Case("plan show {w}/emptyparams.json", 1, "empty freeze set"),
    Case("plan show {w}/badtype.json", 1, "must be a list"),
    Case("plan check {w}/plan.json no-such-model", 1, "unknown model"),
    Case("plan check {w}/plan.json vgg11", 1, "no parameter(s) features.12.weight"),
    Case("plan check {w}/plan.json resnet18", 1, "no parameter"),
    Case("plan check {w}/plan_conv.json {w}/models.py:Untraceable", 1, "cannot trace Untraceable"),
    Case("plan check {w}/plan.json {w}/models.py:raises", 1, "raised RuntimeError"),
    Case("plan check {w}/nested.json rff-base-cnn", 1, "nested too deeply"),
    # -- rewrite ------------------------------------------------------------------------------------
    Case("rewrite rff-base-cnn", 1, "nothing to rewrite"),
    Case("rewrite rff-base-cnn --meta-groups 0", 2, "'--meta-groups': 0 is not in the range"),
    Case(R + " --meta-out 0", 2, "'--meta-out': 0 is not in the range"),
    Case(R + " --hidden -8", 2, "'--hidden': -8 is not in the range"),
    Case("rewrite rff-base-cnn --meta-groups two", 2, "'two' is not a valid integer"),
    Case("rewrite rff-base-cnn --meta-out 2", 2, "--meta-out only applies with --meta-groups"),
    Case("rewrite rff-base-cnn --conv3d-layers features.*", 2, "--conv3d-layers only applies with --conv3d-filters"),
    Case("rewrite rff-base-cnn --meta-groups 3", 1, "3 groups do not divide its 4096 input features"),
    Case(R + " --head-layers nomatch*", 1, "'nomatch*' matches no Linear layer"),
    Case("rewrite rff-base-cnn --conv3d-filters 7", 1, "no eligible Conv2d for 7 filters"),
    Case(R + " --hidden 64", 1, "are hidden FCs"),
    Case(R + " --input-size 0", 1, "must be positive"),
    Case("rewrite no-such-model --meta-groups 2", 1, "unknown model"),
    Case("rewrite {w}/models.py:Untraceable --meta-groups 2", 1, "cannot trace Untraceable"),
    Case("rewrite {w}/models.py:DictOut --meta-groups 2", 1, "no Linear classifier"),
    Case(R + " --out {w}/recipe", 1, "recipe.json already exists: pass --force"),
    Case(R + " --out {w}/afile", 2, "is a file"),
    Case(R + " --out {w}/afile/sub", 1, "afile is a file, not a folder"),
    Case(R + " --out /sys/rffsurgery-recipe", 1, "not writable"),
    Case(R + " --onnx {w}/existing.onnx", 1, "already exists: pass --force"),
    Case("rewrite {w}/models.py:TupleOut --meta-groups 2 --onnx {w}/models.py --force", 1, "also an input"),
    Case(R + " --onnx {w}/new.onnx", 1, "pip install 'rffsurgery[onnx]'", "no_onnxruntime"),
    Case(R + " --onnx {w}/adir", 2, "is a directory"),
    # -- train ----------------------------------------------------------------------------------------
    Case(T + " --threads -1", 2, "'--threads': -1 is not in the range"),
    Case(T + " --epochs 0", 2, "'--epochs': 0 is not in the range"),
    Case(T + " --batch-size 0", 2, "'--batch-size': 0 is not in the range"),
    Case(T + " --until-overfit --patience 0", 2, "'--patience': 0"),
    Case(T + " --lr -1", 2, "'--lr': -1.0 is not in the range x>0"),
    Case(T + " --dropout 1.5", 2, "'--dropout': 1.5 is not in the range 0<=x<1"),
    Case(T + " --rotation 500", 2, "'--rotation': 500.0 is not in the range 0<=x<=180"),
    Case(T + " --cue 2", 2, "'--cue': 2.0 is not in the range 0<=x<=1"),
    Case(T + " --seeds x", 1, "--seeds must look like"),
    Case(T + " --seeds 1,1", 1, "distinct seeds"),
    Case(T + " --split 9.9", 1, "unknown split"),
    Case(T + " --base disk,ring", 1, "needs both --base and --transfer"),
    Case(T + " --base disk,ring --transfer nosuch", 1, "no class 'nosuch'"),
    Case(T + " --base disk --transfer ring", 1, "at least 2 base classes"),
    Case(T + " --policy bogus", 1, "unknown policy 'bogus'"),
    Case(T + " --plan {w}/plan.json --policy growth", 1, "with --plan they come from the file"),
    Case(T + " --plan {w}/notjson.json", 1, "is not valid JSON"),
    Case(T + " --plan {w}/plan_conv.json", 1, "does not fit"),
    Case(T + " --model no-such-model", 1, "unknown model"),
    Case(T + " --model {w}/models.py:Fft", 1, "no Linear classifier"),
    Case(T + " --device tpu", 1, "unknown device 'tpu'"),
    Case(T + " --device meta", 1, "training runs on cpu, cuda[:N] or mps"),
    Case(T + " --device mps", 1, "MPS is not available"),
    Case(T + " --workers -1", 2, "'--workers': -1 is not in the range"),
    Case(T + " --image-size 64", 2, "--image-size only applies with --data folder"),
    Case(T + " --download", 2, "--download only applies with --data cifar100"),
    Case(T + " --data-root {w}/empty", 2, "--data-root only applies with --data cifar100"),
    Case(D + " --data cifar100 --data-root {w}/empty --cue 0.5", 2, "--cue only applies with --data generated"),
    Case(D + " --data folder --data-root {w}/afile", 1, "is a file; --data-root takes the folder"),
    Case(T + " --seeds 5-1", 1, "range '5-1' is empty"),
    Case(T + " --max-epochs 0 --until-overfit", 2, "'--max-epochs': 0"),
    Case(T + " --transfer-epochs 0", 2, "'--transfer-epochs': 0"),
    Case(T + " --weight-decay -1", 2, "'--weight-decay': -1.0"),
    Case(T + " --zoom 1", 2, "'--zoom': 1.0 is not in the range 0<=x<1"),
    Case(T + " --optimizer bogus", 2, "'--optimizer'"),
    Case(T + " --stop-after bogus", 2, "'--stop-after'"),
    Case(D + " --data cifar100", 1, "needs --data-root"),
    Case(D + " --data cifar100 --data-root {w}/empty", 1, "CIFAR-100 not found"),
    Case(D + " --data cifar100 --data-root {w}/cifar_nofine", 1, "no 'fine_label_names'"),
    Case(D + " --data cifar100 --data-root {w}/cifar_evil", 1, "refusing to load"),
    Case(D + " --data cifar100 --data-root {w}/empty --download", 1, "could not download CIFAR-100", "no_network"),
    Case(D + " --data folder --data-root {w}/nodir", 1, "does not exist"),
    Case(D + " --data folder --data-root {w}/imgs", 1, "has no built-in splits"),
    Case(D + " --data folder --data-root {w}/imgs --base a,b --transfer c", 1, "is not a readable image"),
    Case("train --out {w}/afile", 1, "is a file, not a folder"),
    Case("train --out {w}/afile/sub", 1, "afile is a file, not a folder"),
    Case("train --out /sys/rffsurgery-runs", 1, "not writable"),
    Case("train --per-class 10 --out {w}/report_dir", 1, "report.json already exists: pass --resume"),
    Case("train --per-class 12 --epochs 1 --transfer-epochs 1 --no-plots --resume --out {w}/resumable", 1,
         "per_class: 10 → 12"),
    Case("train --per-class 10 --cue 0.5 --epochs 1 --transfer-epochs 1 --no-plots --resume --out {w}/resumable", 1,
         "cue: 0.0 → 0.5"),
    Case("train --per-class 10 --epochs 2 --transfer-epochs 1 --no-plots --resume --out {w}/resumable", 1,
         "epochs: 1 → 2"),
    # == issue 23 ==================================================================================
    # -- 1. numbers at the edges: one range per setting (rffsurgery.limits), refused naming the option ---------
    Case(T + " --lr nan", 2, "'--lr': nan is not a finite number"),
    Case(T + " --lr inf", 2, "'--lr': inf is not a finite number"),
    Case(T + " --weight-decay 1e999", 2, "'--weight-decay': 1e999 is not a finite number"),
    Case(T + " --per-class 0", 2, "'--per-class': 0 is not in the range 1<=x<=1000000"),
    Case(T + " --probe-l2 nan", 2, "'--probe-l2': nan is not a finite number"),
    Case(T + " --meta-groups 99999999999999999999", 2, "'--meta-groups': 99999999999999999999 is not in the range"),
    Case(T + " --seeds 5-99999999999999999999999", 1, "--seeds must be an integer from 0 to"),
    Case(T + " --split random:²", 1, "--split random:K needs a whole number K"),
    Case("erf rff-base-cnn --batch 0", 2, "'--batch': 0 is not in the range 1<=x<=4096"),
    Case("erf rff-base-cnn --seed 99999999999999999999999", 2, "'--seed': 99999999999999999999999 is not in the range"),
    Case("erf rff-base-cnn --seed -1", 2, "'--seed': -1 is not in the range"),
    Case("rewrite rff-base-cnn --meta-groups 99999999999999999999", 2, "'--meta-groups': 99999999999999999999 is not"),
    Case("analyze rff-base-cnn --policy growth --threshold nan", 2, "'--threshold': nan is not a finite number"),
    Case("analyze rff-base-cnn --num-classes 99999999999999999999999", 2, "'--num-classes': 99999999999999999999999"),
    Case("analyze rff-base-cnn --export-plan {w}/new.json --every 999999999999", 2, "'--every': 999999999999 is not"),
    Case("plan check {w}/plan.json rff-base-cnn --num-classes 0", 2, "'--num-classes': 0 is not in the range"),
    Case("plan show {w}/every_huge.json", 1, "schedule 'every' must be an integer from 1 to 100,000, got a 301-digit"),
    Case("plan show {w}/digits.json", 1, "holds a number too long to be a plan field"),
    Case("plan show {w}/size_huge.json", 1, "'input_size': input size [3, 1"),
    Case("plan show {w}/version_huge.json", 1, "schema_version 10000000… (301 digits) is not a version"),
    # -- 2. non-finite weights, inputs, gradients, losses: refused naming the tensor, no result printed -------
    Case("erf rff-base-cnn --weights {w}/nan.pt", 1, "tensor 'features.0.weight' holds 1 NaN value(s) of 864"),
    Case("erf rff-base-cnn --weights {w}/inf.pt", 1, "tensor 'features.0.weight' holds 1 infinite value(s)"),
    Case("erf rff-base-cnn --weights {w}/nan_recipe", 1, "state_dict.pt: tensor 'features.0.weight' holds 1 NaN"),
    Case("analyze rff-base-cnn --overlay {w}/real.png --node features.0 --unit 1,1 --out-image {w}/o.png --with-erf "
         "--weights {w}/nan.pt", 1, "holds 1 NaN value(s)"),
    Case(T + " --model {w}/models.py:NanInit", 1, "the initial weights of {w}/models.py:NanInit: tensor 'conv.weight'"),
    Case(T + " --lr 1e30 --batch-size 8", 1, "training diverged"),
    # -- 3. user code that exits or misbehaves: "your … did …", exit status 1 -----------------------------------
    Case("analyze {w}/models.py:exits", 1, "your model factory '{w}/models.py:exits' called sys.exit(0)"),
    Case("erf {w}/models.py:exits", 1, "your model factory '{w}/models.py:exits' called sys.exit(0)"),
    Case("rewrite {w}/models.py:exits --meta-groups 2", 1, "'{w}/models.py:exits' called sys.exit(0)"),
    Case(T + " --model {w}/models.py:exits", 1, "'{w}/models.py:exits' called sys.exit(0)"),
    Case("plan check {w}/plan.json {w}/models.py:exits", 1, "'{w}/models.py:exits' called sys.exit(0)"),
    Case("analyze {w}/models.py:stops", 1, "your model factory '{w}/models.py:stops' raised Stop: the factory gave up"),
    Case("analyze {w}/exits_on_import.py:f", 1, "your module '{w}/exits_on_import.py' (imported for"),
    Case("analyze rff-base-cnn --leaf {w}/exits_on_import.py:Cls", 1, "exits_on_import.py' (imported for"),
    Case("analyze {w}/models.py:ExitsInForward", 1, "the forward of ExitsInForward called sys.exit(0)"),
    Case(T + " --model {w}/models.py:ExitsWhileTraining --policy names --select conv", 1, "the model {w}/models.py:ExitsWhileTraining called sys.exit(0)"),
    Case("analyze {w}/models.py:bad_size", 1, "declares default_input_size = 'big'"),
    # -- 4. resume refuses any change of the data, naming the setting, old and new --------------------------------
    Case("train --per-class 10 --epochs 1 --transfer-epochs 1 --no-plots --resume --split mine --base disk,ring,square "
         "--transfer hbars,frame --out {w}/custom_split", 1, "transfer: hbars,vbars → hbars,frame"),
    Case("train --data mnist --data-root {w}/mnist --split random:1 --per-class 10 --epochs 1 --transfer-epochs 1 "
         "--no-plots --resume --image-size 28 --out {w}/mnist_run", 1, "image_size: 32 → 28"),
    Case("train --data mnist --data-root {w}/mnist_copy --split random:1 --per-class 10 --epochs 1 --transfer-epochs 1 "
         "--no-plots --resume --out {w}/mnist_run", 1, "root: {w}/mnist → {w}/mnist_copy"),
    Case("train --protocol rewrite --meta-groups 2 --epochs 2 --per-class 10 --batch-size 32 --no-plots --resume "
         "--out {w}/rw_run", 1, "epochs: 1 → 2"),
    Case("train --protocol rewrite --meta-groups 2 --epochs 1 --per-class 12 --batch-size 32 --no-plots --resume "
         "--out {w}/rw_run", 1, "per_class: 10 → 12"),
    # -- 5. internal errors that leaked: what was expected and what to pass instead ------------------------------
    Case("erf rff-base-cnn --weights {w}/text.pt", 1, "text.pt is corrupt or unreadable"),
    Case("erf resnet18 --input-size 3,32,32 --weights {w}/recipe", 1,
         "the rewrite recipe was made from 'rff-base-cnn'; its step 1 (meta_head) does not apply to ResNet"),
    # -- 6. options that would do nothing are refused; a model without spatial axes says so ---------------------
    Case("analyze rff-base-cnn --node features.0", 2, "--node only applies with --unit or --overlay"),
    Case("analyze rff-base-cnn --json --all", 2, "--all only applies with the table"),
    Case("analyze rff-base-cnn --csv --tags", 2, "--tags only applies with the table"),
    Case("analyze rff-base-cnn --force", 2, "--force only applies with an output file"),
    Case("analyze rff-base-cnn --node features.0 --unit 1,1 --json", 2, "--unit prints one unit's interval"),
    Case("analyze rff-base-cnn --policy growth --top-k 2 --threshold 1", 2, "either --top-k or --threshold"),
    Case("analyze rff-base-cnn --overlay {w}/ünï.png --node features.0 --unit 1,1 --out-image {w}/o.png "
         "--weights {w}/nan.pt", 2, "--weights only applies with --with-erf"),
    Case("erf rff-base-cnn --data-root {w}/empty", 2, "--data-root only applies with --data cifar100"),
    Case("erf rff-base-cnn --force", 2, "--force only applies with --out"),
    Case(R + " --force", 2, "--force only applies with --out or --onnx"),
    Case(T + " --workers 4", 2, "--workers only applies with --data folder"),
    Case(T + " --patience 3", 2, "--patience only applies with --until-overfit"),
    Case(T + " --until-overfit", 2, "--epochs only applies with experiment 1"),
    Case(T + " --probe sgd --probe-l2 0.1", 2, "--probe-l2 only applies with --probe lbfgs"),
    Case("train --protocol rewrite --meta-groups 2 --control --out {w}/runs", 1, "--control: RFF-protocol option"),
    Case("erf {w}/models.py:Mlp2", 1, "has no spatial axes after its input: every layer mixes the whole input"),
    # -- 7. paths as the user typed them: once, unicode intact, not quoted by a library -------------------------
    Case("analyze rff-base-cnn --overlay {w}/ünï.png --node features.0 --unit 1,1 --out-image {w}/o.png", 1,
         "error: {w}/ünï.png cannot be decoded (not an image format PIL reads); give a PNG/JPEG file"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_cli_bad_input(case: Case, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if case.patch:
        PATCHES[case.patch](monkeypatch)
    before = _snapshot(work)
    args = [a.replace("{w}", str(work)) for a in case.args.split()]
    result = CliRunner().invoke(main, args)
    output = result.output  # stdout and stderr, interleaved
    assert result.exit_code == case.code, output
    assert "Traceback" not in output and "Warning:" not in output  # nothing but the message reaches the user
    marker = "error: " if case.code == 1 else "Error: "
    errors = [line for line in result.stderr.splitlines() if line.startswith(marker)]
    assert len(errors) == 1, result.stderr  # one line: what failed, why, what to do
    assert case.key.replace("{w}", str(work)) in errors[0], errors[0]
    assert _snapshot(work) == before  # nothing replaced, nothing half-written, no temporary left


# -- the Python API -----------------------------------------------------------------------------------
def _plan():
    return analyze(RFFBaseCNN())


API = [
    ("analyze(None)", lambda w: analyze(None), InvalidArgument, "nn.Module or a model name"),
    ("analyze(42)", lambda w: analyze(42), InvalidArgument, "got int 42"),
    ("analyze(class)", lambda w: analyze(nn.Conv2d), InvalidArgument, "the class Conv2d, not a model"),
    ("analyze(float size)", lambda w: analyze(RFFBaseCNN(), (3, 22.7, 22.7)), InvalidArgument, "integers"),
    ("analyze(bool size)", lambda w: analyze(RFFBaseCNN(), True), InvalidArgument, "integers"),
    ("analyze(zero size)", lambda w: analyze(RFFBaseCNN(), (3, 0, 32)), InvalidArgument, "positive"),
    ("analyze(rank 1)", lambda w: analyze(RFFBaseCNN(), (3,)), InvalidArgument, "spatial"),
    ("analyze(dict size)", lambda w: analyze(RFFBaseCNN(), {"h": 3}), InvalidArgument, "sequence of integers"),
    ("analyze(leaf function)", lambda w: analyze(RFFBaseCNN(), leaf_modules=[os.getcwd]), InvalidArgument,
     "nn.Module classes"),
    ("analyze(leaf instance)", lambda w: analyze(RFFBaseCNN(), leaf_modules=[nn.ReLU()]), InvalidArgument,
     "the instance ReLU()"),
    ("analyze(leaf not a list)", lambda w: analyze(RFFBaseCNN(), leaf_modules=os.getcwd), InvalidArgument,
     "nn.Module classes"),
    ("analyze(too small)", lambda w: analyze("vgg11", 16), RffError, "too small for vgg11"),
    ("interval(1 axis)", lambda w: _plan()["features.0"].interval((0,)), InvalidArgument, "one index per spatial axis"),
    ("interval(3 axes)", lambda w: _plan()["features.0"].interval((0, 0, 0)), InvalidArgument, "2 (e.g. (0, 1))"),
    ("plan[unknown]", lambda w: _plan()["nope"], KeyError, "no node or module 'nope'"),
    ("rewrite(meta_groups='2')", lambda w: rewrite(RFFBaseCNN(), meta_groups="2"), InvalidArgument,
     "meta_groups must be an integer from 1 to 1,048,576, got str '2'"),
    ("rewrite(meta_groups=2.0)", lambda w: rewrite(RFFBaseCNN(), meta_groups=2.0), InvalidArgument,
     "got float 2.0"),
    ("rewrite(meta_groups=True)", lambda w: rewrite(RFFBaseCNN(), meta_groups=True), InvalidArgument, "got bool"),
    ("rewrite(meta_groups=0)", lambda w: rewrite(RFFBaseCNN(), meta_groups=0), InvalidArgument, "got 0"),
    ("rewrite(meta_out=0)", lambda w: rewrite(RFFBaseCNN(), meta_groups=2, meta_out=0), InvalidArgument,
     "meta_out must be"),
    ("rewrite(hidden=-8)", lambda w: rewrite(RFFBaseCNN(), meta_groups=2, hidden=-8), InvalidArgument,
     "hidden must be an integer from 1 to 1,048,576, got -8"),
    ("rewrite(hidden alone)", lambda w: rewrite(RFFBaseCNN(), conv3d_filters=64, hidden=8), InvalidArgument,
     "give meta_groups too"),
    ("rewrite(None)", lambda w: rewrite(None, meta_groups=2), InvalidArgument, "got NoneType"),
    ("rewrite(class)", lambda w: rewrite(RFFBaseCNN, meta_groups=2), InvalidArgument, "the class RFFBaseCNN"),
    ("freeze(str)", lambda w: freeze(RFFBaseCNN(), "features.0.weight").__enter__(), InvalidArgument,
     "write ['features.0.weight']"),
    ("freeze(int)", lambda w: freeze(RFFBaseCNN(), 42).__enter__(), InvalidArgument, "got int"),
    ("freeze(ints)", lambda w: freeze(RFFBaseCNN(), [1, 2]).__enter__(), InvalidArgument, "strings"),
    ("freeze(unknown)", lambda w: freeze(RFFBaseCNN(), ["nope.weight"]).__enter__(), PlanError, "nope.weight"),
    ("plan load nested", lambda w: FreezePlan.load(w / "nested.json"), PlanError, "nested too deeply"),
    ("plan export exists", lambda w: FreezePlan.load(w / "plan.json").export(w / "existing.json"), OutputExists,
     "pass --force"),
    ("recipe corrupt", lambda w: load_rewritten(w / "corrupt_recipe"), RewriteError, "recipe.json is not a valid"),
    ("recipe weights object", lambda w: load_rewritten(w / "evil_recipe"), RewriteError, "never unpickled"),
    ("recipe weights truncated", lambda w: load_rewritten(w / "truncated_recipe"), RewriteError,
     "not a complete torch archive"),
    ("onnx dict output", lambda w: export_onnx(_DictModel(), (3, 8, 8), w / "d.onnx"), InvalidArgument,
     "the model returns dict"),
    ("onnx exists", lambda w: export_onnx(RFFBaseCNN(), (3, 32, 32), w / "existing.onnx"), OutputExists,
     "pass --force"),
    ("parse_seeds", lambda w: parse_seeds("1-x"), InvalidArgument, "--seeds must look like"),
    ("ProtocolConfig(epochs=0)", lambda w: ProtocolConfig(epochs=0), InvalidArgument,
     "epochs must be an integer from 1 to 100,000, got 0"),
    ("ProtocolConfig(bn)", lambda w: ProtocolConfig(bn="sometimes"), InvalidArgument, "unknown BatchNorm mode"),
    ("GeneratedSource(per_class=1)", lambda w: GeneratedSource(per_class=1).protocol_data(
        resolve_splits("g.1", GeneratedSource().splits)[0], 0), InvalidArgument, "too few"),
    ("resolve_splits", lambda w: resolve_splits("7.7"), InvalidArgument, "unknown split '7.7'"),
    ("select_device", lambda w: select_device("tpu"), InvalidArgument, "unknown device"),
    ("Augment", lambda w: Augment(zoom=1.5), InvalidArgument, "zoom must be a number with 0 ≤ x < 1, got 1.5"),
    ("zoo import", lambda w: analyze(f"{w}/syntax.py:f"), UserCodeError, "has a syntax error"),
    # == issue 23 ==================================================================================
    # -- 1. numbers: the configurations and the plan schema read the same ranges as the CLI ---------------------
    ("ProtocolConfig(lr=nan)", lambda w: ProtocolConfig(lr=float("nan")), InvalidArgument,
     "lr must be a finite number > 0, got nan"),
    ("ProtocolConfig(l1=inf)", lambda w: ProtocolConfig(l1=float("inf")), InvalidArgument,
     "l1 must be a finite number ≥ 0, got inf"),
    ("RewriteConfig(batch_size=10**300)", lambda w: RewriteConfig(meta_groups=2, batch_size=10**300), InvalidArgument,
     "batch_size must be an integer from 1 to 1,048,576, got a 301-digit number"),
    ("Augment(rotation=nan)", lambda w: Augment(rotation=float("nan")), InvalidArgument,
     "rotation must be a number with 0 ≤ x ≤ 180, got nan"),
    ("GeneratedSource(per_class=0)", lambda w: GeneratedSource(per_class=0), InvalidArgument,
     "per_class must be an integer from 1 to 1,000,000, got 0"),
    ("erf(batch=0)", lambda w: erf(RFFBaseCNN(), batch=0), InvalidArgument, "batch must be an integer from 1 to 4,096"),
    ("growth(threshold=nan)", lambda w: tag(_plan(), "growth", threshold=float("nan")), TagError,
     "threshold must be a finite number, got nan"),
    ("Schedule(every=10**300)", lambda w: Schedule(every=10**300), PlanError,
     "schedule 'every' must be an integer from 1 to 100,000, got a 301-digit number"),
    # -- 2. non-finite inputs and gradients ----------------------------------------------------------------
    ("erf(NaN inputs)", lambda w: erf(RFFBaseCNN(), inputs=torch.full((1, 3, 32, 32), float("nan"))), RffError,
     "tensor 'inputs' holds 3,072 NaN value(s)"),
    ("erf(overflowing model)", lambda w: erf(_overflowing(), images=1), RffError,
     "the ERF of features.16: tensor 'input gradient' holds"),
    ("erf(NaN module)", lambda w: erf(_overflowing(float("nan")), images=1), RffError,
     "the weights of RFFBaseCNN (as given): tensor 'features.0.weight' holds"),
    # -- 5. what was expected and what to pass instead -----------------------------------------------------------
    ("tag(model)", lambda w: tag(RFFBaseCNN(), "paper"), TagError,
     "tag() takes the analysis that analyze() returns, got a model: call tag(analyze(model), …)"),
    ("build_freeze_plan(model)", lambda w: build_freeze_plan(RFFBaseCNN()), PlanError,
     "build_freeze_plan() takes the analysis that analyze() returns"),
    ("freeze(model, analysis)", lambda w: freeze(RFFBaseCNN(), _plan()).__enter__(), InvalidArgument,
     "make one from this analysis with build_freeze_plan(analysis)"),
    ("load(recipe, base=other)", lambda w: load_rewritten(w / "recipe", base=nn.Sequential(nn.Linear(2, 2))),
     RewriteError, "was made from 'rff-base-cnn'; its step 1 (meta_head) does not apply to Sequential"),
    ("rewrite(head_layers=5)", lambda w: rewrite(RFFBaseCNN(), meta_groups=2, head_layers=5), InvalidArgument,
     "layer globs takes a name or a list of names (strings), got int 5"),
    ("load_weights(path=5)", lambda w: load_weights(RFFBaseCNN(), 5), InvalidArgument,
     "weights are given by the path of a file or rewrite folder, got int"),
    ("FreezePlan.load(dict)", lambda w: FreezePlan.load({"schema": "x"}), PlanError,
     "for a dict use FreezePlan.from_dict"),
    ("interval(strings)", lambda w: _plan()["features.0"].interval(("a", "b")), InvalidArgument,
     "a unit is a tuple of integers, one per spatial axis"),
    ("erf(unit=5)", lambda w: erf(RFFBaseCNN(), unit=5, images=1), InvalidArgument, "a unit is a tuple of integers"),
    ("ProtocolConfig(augment=None)", lambda w: ProtocolConfig(augment=None), InvalidArgument,
     "augment must be an Augment"),
    ("erf(inputs=list)", lambda w: erf(RFFBaseCNN(), inputs=[[0.0]]), InvalidArgument, "inputs must be a float tensor"),
    # -- 7. paths once, as typed -----------------------------------------------------------------------------------
    ("read_image(unicode)", lambda w: read_image(w / "ünï.png", (8, 8)), InvalidArgument,
     "ünï.png cannot be decoded (not an image format PIL reads)"),
]


def _overflowing(value: float = 1e30) -> nn.Module:
    """The base CNN with every weight matrix set to ``value``: 1e30 is finite, but the forward overflows."""
    model = RFFBaseCNN()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.fill_(value)
    return model


@pytest.fixture(scope="module")
def api_work(work: Path) -> Path:
    """The CLI work folder plus broken rewrite folders."""
    for name in ("corrupt_recipe", "evil_recipe", "truncated_recipe"):
        (work / name).mkdir(exist_ok=True)
    (work / "corrupt_recipe" / "recipe.json").write_text('{"schema": "rffsurgery.recipe/1", "steps": [')
    for name in ("evil_recipe", "truncated_recipe"):
        (work / name / "recipe.json").write_text((work / "recipe" / "recipe.json").read_text())
    torch.save({"weights": Augment()}, work / "evil_recipe" / "state_dict.pt")  # an object, not tensors
    (work / "truncated_recipe" / "state_dict.pt").write_bytes((work / "recipe" / "state_dict.pt").read_bytes()[:100])
    return work


@pytest.mark.parametrize("call, error, key", [a[1:] for a in API], ids=[a[0] for a in API])
def test_api_bad_input(call: Callable[[Path], Any], error: type[Exception], key: str, api_work: Path) -> None:
    before = _snapshot(api_work)
    with pytest.raises(error) as raised:
        call(api_work)
    message = str(raised.value)
    assert key in message
    assert "weights_only=False" not in message and "Traceback" not in message
    assert "\n" not in message.strip()
    assert _snapshot(api_work) == before


# -- the error path itself and the good paths next to the refused ones ---------------------------------------
def test_debug_shows_the_traceback(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for args, env in ((["--debug", "analyze", "no-such-model"], None), (["analyze", "no-such-model"], "1")):
        if env:
            monkeypatch.setenv("RFFSURGERY_DEBUG", env)
        result = CliRunner().invoke(main, args)
        assert isinstance(result.exception, ModelNotFound)  # let through, with its traceback


def test_an_unexpected_error_says_how_to_get_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import rffsurgery.cli.analyze

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(rffsurgery.cli.analyze, "analyze", broken)
    result = CliRunner().invoke(main, ["analyze", "rff-base-cnn"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "unexpected ZeroDivisionError: division by zero" in result.stderr and "--debug" in result.stderr


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    import rffsurgery.cli.analyze

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rffsurgery.cli.analyze, "analyze", interrupted)
    result = CliRunner().invoke(main, ["analyze", "rff-base-cnn"])
    assert result.exit_code == 130 and result.stderr.strip() == "interrupted"


@pytest.mark.parametrize("exit_with", [SystemExit(0), GeneratorExit()], ids=["sys.exit(0)", "GeneratorExit"])
def test_an_exit_from_code_no_wrapper_saw_is_an_error(exit_with: BaseException,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's own backstop: rffsurgery never ends a command with SystemExit, so one arriving is user code's."""
    import rffsurgery.cli.analyze

    def leaves(*args: Any, **kwargs: Any) -> None:
        raise exit_with

    monkeypatch.setattr(rffsurgery.cli.analyze, "analyze", leaves)
    result = CliRunner().invoke(main, ["analyze", "rff-base-cnn"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.stderr.startswith("error: code outside rffsurgery (the model's)"), result.stderr


def test_a_single_glob_string_is_one_glob_not_its_characters() -> None:
    done = rewrite(RFFBaseCNN(), meta_groups=2, head_layers="classifier.1")
    assert [c.path for c in done.changes] == ["classifier.1"]
    assert [t.name for t in tag(_plan(), "names", patterns="features.6")] == ["features.6"]


def test_force_replaces_with_normal_modes(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.write_text("old")
    result = CliRunner().invoke(main, ["analyze", "rff-base-cnn", "--export-plan", str(target), "--force"])
    assert result.exit_code == 0, result.output
    assert FreezePlan.load(target).parameter_names
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]  # no temporary left


def test_real_tensor_fallback_still_runs_within_the_bound(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = analyze(f"{work}/models.py:NeedsReal", (3, 64, 64))
    assert plan["conv"].rf == (3, 3)
    monkeypatch.setenv("RFFSURGERY_MEMORY_LIMIT_GB", "0.00001")  # 10 kB: even 3x64x64 needs more
    with pytest.raises(RffError, match="limit 1e-05 GiB"):
        analyze(f"{work}/models.py:NeedsReal", (3, 64, 64))


def test_tuple_output_rewrite_checks_backward_and_onnx(work: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "tuple.onnx"
    result = CliRunner().invoke(main, ["rewrite", f"{work}/models.py:TupleOut", "--meta-groups", "2",
                                       "--onnx", str(out)])
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output and "ok   backward" in result.output
    assert "onnxruntime matches PyTorch" in result.output and out.is_file()


def test_resume_records_the_data_settings(work: Path) -> None:
    state = torch.load(work / "resumable" / "split-g.1" / "seed-0" / "checkpoint.pt", weights_only=True)
    data = {k: v for k, v in state["data"].items() if k not in ("base", "transfer")}
    assert data == {"source": "generated", "per_class": 10, "cue": 0.0, "image_size": 32}
    assert state["data"]["transfer"] == ["hbars", "vbars"]  # the split's classes, not only its name


def test_a_refused_onnx_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        export_onnx(_DictModel(), (3, 8, 8), tmp_path / "d.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_image_is_named(tmp_path: Path) -> None:
    from PIL import Image

    from rffsurgery.train import DatasetNotFound, ImageFiles
    from rffsurgery.data.folder import FileDataset

    path = tmp_path / "x.jpg"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(path)
    path.write_bytes(path.read_bytes()[:300])  # a valid header, half the pixels
    with pytest.raises(DatasetNotFound, match="x.jpg cannot be decoded"):
        FileDataset(ImageFiles((str(path),), torch.tensor([0]), ("a",), 32))[0]


class _DictModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"maps": self.conv(x)}


def test_plot_needs_matplotlib_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rffsurgery.reports.plot import plot_rf

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependency, match=re.escape("pip install 'rffsurgery[plot]'")):
        plot_rf(_plan(), tmp_path / "rf.png")


# -- issue 23: the good paths next to the refused ones -------------------------------------------------------
def test_a_rewrite_result_is_accepted_where_a_model_is_meant(tmp_path: Path) -> None:
    done = rewrite(RFFBaseCNN(), meta_groups=2)
    plan = build_freeze_plan(analyze(RFFBaseCNN()), "paper")
    assert plan.check(done) == ""  # the rewritten model keeps the frozen layers' graph
    with freeze(done, plan) as frozen:
        assert frozen == list(plan.parameter_names)
        assert not done.after.get_parameter(frozen[0]).requires_grad
    assert done.after.get_parameter(frozen[0]).requires_grad
    assert [l.name for l in analyze(done)] == [l.name for l in analyze(done.after)]
    assert erf(done, "features.3", images=1).nodes[0].node == "features.3"  # one name, not its characters


def test_a_single_select_pattern_is_one_pattern() -> None:
    assert ProtocolConfig(policy="names", select="features.6").select == ("features.6",)


def test_a_model_without_spatial_axes_says_so(work: Path) -> None:
    table = CliRunner().invoke(main, ["analyze", f"{work}/models.py:Mlp2"])
    assert table.exit_code == 0, table.output
    assert "no spatial axes: every layer of" in table.output and "(an MLP)" in table.output
    conv = CliRunner().invoke(main, ["analyze", "rff-base-cnn"])
    assert "no spatial axes" not in conv.output


def test_ranges_are_declared_once_and_shown_by_click() -> None:
    """Every numeric option of every command takes its type from rffsurgery.limits (one range per setting)."""
    import click

    from rffsurgery.cli.types import FiniteFloatRange

    untyped = []

    def walk(command: click.Command, path: str) -> None:
        for param in command.params:
            kind = param.type
            bounded = isinstance(kind, FiniteFloatRange) or isinstance(kind, click.IntRange) and kind.max is not None
            if isinstance(kind, (click.types.IntParamType, click.types.FloatParamType)) and not bounded:
                untyped.append(f"{path} {param.opts[0]}")  # an int without a ceiling, or a float that may be NaN
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(main, "rffsurgery")
    assert not untyped, f"numeric options without a declared range: {untyped}"
