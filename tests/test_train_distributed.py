"""``torchrun --nproc_per_node 2 -m rffsurgery train``: two CPU processes (gloo) against one process.

Tolerance.  The model here has no BatchNorm and the options no dropout or augmentation,
so the two processes compute, step for step, the gradient of the same global batch's
mean loss as one process does (each takes its part of the same permutation; the loss
is scaled by its share; DDP averages): the only difference is the order of float
additions (two partial sums all-reduced instead of one sum), about 1e-7 relative per
step.  After a few Adam steps that stays far below 1e-4 of any loss, and an accuracy
can change only if a validation image sits within ~1e-6 of a decision tie: losses
must agree to 1e-4 (relative), accuracies to one validation image.  The batch size
(25 over 2 processes, 128 images) gives uneven parts (13/12, and 2/1 in the last
batch), so the share scaling is exercised.  With BatchNorm the runs differ more
(each process normalises its own part of the batch, as in any DDP training).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rffsurgery.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
MODEL = '''from torch import nn


def factory():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 8))


factory.default_input_size = (3, 32, 32)
'''
TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], log: Path, nproc: int = 2) -> int:
    """Run ``python -m torch.distributed.run … -m rffsurgery ARGS`` with stdout and stderr into ``log``.

    Its own process group, killed as a whole on timeout, so no worker outlives the test.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "rffsurgery", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            return proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"torchrun took over {TIMEOUT} s: {log.read_text()[-2000:]}")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _args(tmp_path: Path) -> list[str]:
    model = tmp_path / "nobn.py"
    model.write_text(MODEL)
    return ["train", "--model", f"{model}:factory", "--per-class", "20", "--epochs", "1", "--transfer-epochs", "2",
            "--batch-size", "25", "--device", "cpu", "--threads", "1", "--no-plots"]


def _shape(value):
    """The structure of a JSON document: keys and list lengths, no values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__ if not isinstance(value, (int, float)) or isinstance(value, bool) else "number"


def test_two_processes_match_one(tmp_path):
    args = _args(tmp_path)
    assert torchrun([*args, "--out", str(tmp_path / "two")], tmp_path / "two.log") == 0, \
        (tmp_path / "two.log").read_text()[-3000:]
    one = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output

    reports = {k: json.loads((tmp_path / k / "report.json").read_text()) for k in ("one", "two")}
    assert _shape(reports["one"]) == _shape(reports["two"])
    assert reports["one"]["meta"]["world_size"] == 1 and reports["two"]["meta"]["world_size"] == 2
    (r1,), (r2,) = reports["one"]["runs"], reports["two"]["runs"]
    assert (r1["n"], r1["frozen"]) == (r2["n"], r2["frozen"]) and "2 processes" not in r1["device"]
    transfer_val = 2 * 4  # 2 transfer classes × 20 % of 20 images
    for key in ("normal_accuracy", "rff_accuracy"):
        assert abs(r1[key] - r2[key]) <= 1 / transfer_val + 1e-9

    rows = {k: json.loads((tmp_path / k / "split-g.1" / "seed-0" / "log.json").read_text()) for k in ("one", "two")}
    assert [(r["stage"], r["model"], r["epoch"]) for r in rows["one"]] == \
        [(r["stage"], r["model"], r["epoch"]) for r in rows["two"]]
    for a, b in zip(rows["one"], rows["two"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
        assert abs(a["val_accuracy"] - b["val_accuracy"]) <= 1 / 8 + 1e-9  # ≥ 8 validation images per set

    log = (tmp_path / "two.log").read_text()  # stdout and stderr redirected to a file, as under nohup
    assert log.count("g.1 seed 0 | base epoch 1/1") == 1  # one process talks
    assert "2 process(es)" in log and "× 2 processes" in log and log.count("split    runs") == 1
    assert not list((tmp_path / "two").rglob(".*.tmp"))


@pytest.mark.slow
def test_resume_under_torchrun_reproduces_the_uninterrupted_run(tmp_path):
    args = _args(tmp_path)
    assert torchrun([*args, "--out", str(tmp_path / "full")], tmp_path / "full.log") == 0
    out = str(tmp_path / "cut")
    assert torchrun([*args, "--out", out, "--stop-after", "base"], tmp_path / "a.log") == 0
    alone = CliRunner().invoke(main, [*args, "--out", out, "--resume"])
    assert alone.exit_code == 1 and "written by a run of 2 process(es), this one has 1" in alone.output
    assert torchrun([*args, "--out", out, "--resume"], tmp_path / "b.log") == 0, (tmp_path / "b.log").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")}  # noqa: E731
                          for r in rows]
    logs = [json.loads((tmp_path / k / "split-g.1" / "seed-0" / "log.json").read_text()) for k in ("full", "cut")]
    assert strip(logs[0]) == strip(logs[1])
    one = CliRunner().invoke(main, [*args, "--out", out, "--resume"])
    assert one.exit_code == 0, one.output  # a finished run is read back whatever the process count


def test_each_rank_takes_its_part_of_the_same_global_batches(tmp_path):
    """No processes needed: a World with a rank and a size only decides which indices a process takes."""
    import torch
    from PIL import Image

    from rffsurgery.train import select_device
    from rffsurgery.train.distributed import World
    from rffsurgery.data.folder import image_folder
    from rffsurgery.train.loop import TensorBatches, make_batches

    def steps(batches, world, seed=3):
        return list(batches.steps(torch.Generator().manual_seed(seed), world))

    batches = TensorBatches(torch.arange(11.0), torch.arange(11), 4)  # global batches 4, 4, 3
    one = steps(batches, World())
    parts = [steps(batches, World(rank, 3)) for rank in range(3)]
    assert [total for _, _, total in one] == [4, 4, 3]
    for i, (x, _, total) in enumerate(one):
        mine = [part[i] for part in parts]
        assert torch.equal(torch.cat([m[0] for m in mine]), x)  # the same images, in order, split in rank order
        assert [len(m[1]) for m in mine] == ([2, 1, 1] if total == 4 else [1, 1, 1])
        assert all(m[2] == total for m in mine)
    assert [len(s) for s in (steps(TensorBatches(torch.arange(9.0), torch.arange(9), 4), World(r, 2))
                             for r in range(2))] == [2, 2]  # the last batch (1 image < 2 processes) is dropped
    evaluation = [list(batches.steps(None, World(r, 2))) for r in range(2)]
    assert sorted(torch.cat([y for part in evaluation for _, y, _ in part]).tolist()) == list(range(11))

    for name in "ab":
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / name / f"{i}.png")
    files = make_batches(image_folder(tmp_path, 8).load(["a", "b"]), select_device("cpu"), 4, workers=0)
    whole = steps(files, World())
    halves = [steps(files, World(r, 2)) for r in range(2)]
    for i, (x, y, total) in enumerate(whole):
        assert torch.equal(torch.cat([halves[0][i][0], halves[1][i][0]]), x)
        assert halves[0][i][2] == halves[1][i][2] == total
