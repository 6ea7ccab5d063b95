"""The HTML report of resnet50: its size (target: <= 2 MB without ERF) and how fast it opens (target: < 1 s).

The report is what ``rffsurgery report resnet50 --image PHOTO --export-plan plan.json --out r.html`` writes
(the photo: matplotlib's 512×600 sample portrait).  Open time: headless Chromium (Debian's ``chromium``,
driven by Playwright as in the tests), from ``page.goto`` of the ``file://`` URL until the page has drawn
(``data-ready`` on ``<html>``), on a fresh page each time.  Baseline, interleaved in the same run: the
same for a minimal page of one paragraph, i.e. what the browser costs by itself.  Also writing the
report (``html_report`` on a finished analysis) against ``analyze(resnet50)`` itself.

Run: ``python benchmarks/bench_report.py [--quick] [--repeats N]`` (needs Chromium and playwright).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _common import interleaved, median, parser, print_verdict, write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' browser helpers

from browser import ARGS, chromium_path, open_page  # noqa: E402
from report_screenshot import photo  # noqa: E402
from rffsurgery import analyze, build_freeze_plan, html_report  # noqa: E402

SIZE_TARGET = 2_000_000  # bytes
OPEN_TARGET = 1.0  # seconds


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 15, --quick 3)")
    args = p.parse_args()
    repeats = args.repeats or (3 if args.quick else 15)
    executable = chromium_path()
    if executable is None:
        raise SystemExit("no Chromium found: apt-get install chromium (or set CHROMIUM_PATH)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, sync_playwright() as pw:
        folder = Path(folder)
        plan = analyze("resnet50")
        freeze_plan = build_freeze_plan(plan)
        report = folder / "report.html"

        def write() -> None:
            html_report(plan, report, image=photo(), freeze_plan=freeze_plan, force=True)

        build = interleaved({"html_report": write, "analyze": lambda: analyze("resnet50")},
                            repeats=max(3, repeats // 3))
        size = report.stat().st_size
        blank = folder / "blank.html"
        blank.write_text("<!doctype html><html data-ready='true'><p>baseline</p></html>")
        browser = pw.chromium.launch(executable_path=executable, args=ARGS)

        def opened(path: Path) -> None:
            watched = open_page(browser, path)
            watched.assert_quiet()
            watched.page.close()

        times = interleaved({"report": lambda: opened(report), "blank page": lambda: opened(blank)}, repeats=repeats)
        browser.close()
    med = {k: median(v) for k, v in {**times, **build}.items()}
    print(f"resnet50 report, {repeats} interleaved opens after a warm-up, medians")
    print("size of the report (no ERF, a 224x224 photo, a freeze plan)")
    print(f"  measured  {size / 1e6:.3f} MB   target <= {SIZE_TARGET / 1e6:g} MB   "
          f"{'PASS' if size <= SIZE_TARGET else 'MISS'}")
    ok = med["report"] < OPEN_TARGET
    print("open time: page.goto until drawn")
    print(f"  measured  {med['report']:.3f} s")
    print(f"  baseline  {med['blank page']:.3f} s   (a blank page: the browser's own cost)")
    print(f"  ratio     {med['report'] / med['blank page']:.2f}x   target < {OPEN_TARGET} s absolute   "
          f"{'PASS' if ok else 'MISS'}")
    print_verdict("writing the report (html_report) vs analyze(resnet50)", med["html_report"], med["analyze"],
                  target=1.0)
    write_result("bench_report", {"measured": med["report"], "baseline": med["blank page"], "target_s": OPEN_TARGET,
                                  "pass": ok and size <= SIZE_TARGET, "size_bytes": size,
                                  "size_pass": size <= SIZE_TARGET, "open_pass": ok, "medians_s": med,
                                  "times_s": {**times, **build}})


if __name__ == "__main__":
    main()
