"""Wall time of the process ``rffsurgery analyze resnet50`` against ``python -c "import torch, torchvision"``.

Target: <= 1.5x.  Importing torch and torchvision is the floor any PyTorch CLI
pays, so the ratio says how much the command adds on top: its own imports, the
model construction (on the meta device), tracing, analysis and printing.  Runs
are whole processes, interleaved, after one untimed warm-up of each (so the page
cache is equally warm for both).

With ``--importtime`` (and whenever the target is missed) it also runs the
command once under ``python -X importtime`` and prints the top-level packages by
cumulative import time, and the import time against the total.

Run: ``python benchmarks/bench_cli.py [--quick] [--repeats N] [--importtime]``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import defaultdict

from _common import interleaved, median, parser, print_verdict, write_result

TARGET = 1.5
MODEL = "resnet50"
# the console script when installed, else the same entry point through this interpreter
_ENTRY = [sys.executable, "-c", "import sys; from rffsurgery.cli import main; sys.exit(main())"]
BASELINE = [sys.executable, "-c", "import torch, torchvision"]


def cli_command() -> list[str]:
    script = shutil.which("rffsurgery")
    return [script, "analyze", MODEL] if script else [*_ENTRY, "analyze", MODEL]


def run(cmd: list[str]) -> str:
    """Run a command to completion, failing loudly (a broken CLI must not look fast)."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return done.stderr


_IMPORTTIME = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)")


def import_profile(top: int = 12) -> dict[str, float]:
    """Import seconds per top-level package of the CLI process (``-X importtime``).

    Sums each module's *self* time into its top-level package, so that torch
    imported from inside rffsurgery counts as torch, not as rffsurgery.
    """
    stderr = run([sys.executable, "-X", "importtime", *_ENTRY[1:], "analyze", MODEL])
    per_package: dict[str, float] = defaultdict(float)
    for match in _IMPORTTIME.finditer(stderr):
        self_us, _cumulative_us, module = match.groups()
        per_package[module.split(".")[0]] += int(self_us) / 1e6
    ranked = dict(sorted(per_package.items(), key=lambda kv: -kv[1])[:top])
    total = sum(per_package.values())
    print(f"  imports of the CLI process (python -X importtime, self time per package), total {total:.2f} s:")
    for package, seconds in ranked.items():
        print(f"    {package:<24} {seconds:7.3f} s")
    return {"total": total, **ranked}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7, --quick 2)")
    p.add_argument("--importtime", action="store_true", help="also profile the CLI's imports")
    args = p.parse_args()
    repeats = args.repeats or (2 if args.quick else 7)
    cmd = cli_command()

    times = interleaved({"cli": lambda: run(cmd), "import": lambda: run(BASELINE)}, repeats=repeats, warmup=1)
    print(f"{repeats} interleaved process runs after 1 warm-up each, medians")
    print(f"  measured: {' '.join(cmd)}")
    print(f"  baseline: {' '.join(BASELINE)}")
    verdict = print_verdict(f"rffsurgery analyze {MODEL} vs import torch, torchvision",
                            median(times["cli"]), median(times["import"]), TARGET)
    imports = import_profile() if args.importtime or not verdict["pass"] else None
    write_result("bench_cli", {**verdict, "repeats": repeats, "times_s": times, "cli": cmd, "baseline_cmd": BASELINE,
                               "import_profile_s": imports})


if __name__ == "__main__":
    main()
