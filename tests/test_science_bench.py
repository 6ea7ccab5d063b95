"""``benchmarks/bench_science.py --quick``: the pre-registered experiments' code path, end to end on the real files.

Slow (minutes on a shared CPU) and needs ``apt-get install dataset-fashion-mnist``: run with ``-m slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/usr/share/datasets/fashion-mnist")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not DATA.is_dir(), reason="needs the Debian package dataset-fashion-mnist")]


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/bench_science.py", "--quick", "--threads", "1", *args],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=1200)


def test_quick_rff_experiment_publishes_every_comparison(tmp_path):
    run = _bench("--experiment", "exp1", "--out", str(tmp_path / "out"), "--publish", str(tmp_path / "pub"))
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "pub" / "report.json").read_text())
    assert len(report["runs"]) == 4 and len(report["splits"]) == 2
    assert list(report["comparisons"]) == ["rff", "placebo", "aa", "rff_vs_placebo"]
    assert {p.name for p in (tmp_path / "pub").iterdir()} == {"report.json", "report.txt", "report.md", "deltas.png"}
    again = _bench("--experiment", "exp1", "--out", str(tmp_path / "out"), "--report-only")
    assert again.returncode == 0 and json.loads((tmp_path / "out" / "report.json").read_text())["overall"] == \
        report["overall"]


def test_quick_rewrite_experiment(tmp_path):
    run = _bench("--experiment", "rewrite", "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["variants"]) == ["original", "meta", "conv3d", "meta+conv3d"]
    assert report["meta"]["evaluation"] == "test" and report["meta"]["eval_size"] == 10_000
