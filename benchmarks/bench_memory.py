"""Peak memory (ru_maxrss) of ``rffsurgery analyze MODEL`` at the model's default size, one process per model.

Zoo models are analysed on the meta device, so their weights are never allocated: the
peak is the imported libraries plus the traced graph and its per-node records, and it
should not grow with the parameter count.  The baseline is the process that only imports
what the CLI imports (``rffsurgery.cli``, torch, torchvision, timm), measured in the same run.
The target is the bound stated in the README: every model under ``--bound`` MiB (default 1024).

    python benchmarks/bench_memory.py                 # the default list, largest last
    python benchmarks/bench_memory.py --quick         # resnet50 only
    python benchmarks/bench_memory.py timm:convnext_xxlarge
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _common import parser, write_result

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["resnet50", "vit_b_16", "convnext_tiny", "efficientnet_b0", "timm:convnext_xxlarge",
          "timm:vit_giant_patch14_224", "timm:vit_gigantic_patch14_224"]
BASELINE = [sys.executable, "-c", "import rffsurgery.cli, torch, torchvision, timm"]


def peak_mib(command: list[str]) -> tuple[float, int]:
    """Peak resident set size of one child process in MiB (Linux reports ru_maxrss in KiB), and its exit code."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, proc.returncode


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", help="model names (default: a list from resnet50 to vit_gigantic)")
    p.add_argument("--bound", type=float, default=1024.0, help="the stated bound in MiB")
    args = p.parse_args()
    models = args.models or (MODELS[:1] if args.quick else MODELS)
    baseline, _ = peak_mib(BASELINE)
    print(f"baseline (imports only): {baseline:.0f} MiB")
    rows = []
    for name in models:
        peak, code = peak_mib([sys.executable, "-m", "rffsurgery", "analyze", name])
        ok = code == 0 and peak <= args.bound
        rows.append({"model": name, "peak_mib": round(peak), "exit_code": code, "over_baseline_mib": round(peak - baseline),
                     "ratio": round(peak / baseline, 3), "pass": ok})
        print(f"{name:<34} peak {peak:6.0f} MiB  (+{peak - baseline:5.0f} over imports, {peak / baseline:.2f}x)  "
              f"exit {code}  target <= {args.bound:.0f} MiB  {'PASS' if ok else 'MISS'}")
    write_result("memory", {"baseline_mib": round(baseline), "bound_mib": args.bound, "models": rows})


if __name__ == "__main__":
    main()
