"""The README's screenshot of the report: resnet50 on a photo, one unit of ``layer2`` hovered.

``python tests/report_screenshot.py`` writes docs/images/report.png (needs Chromium and
playwright, see the README); tests/test_report_browser.py runs the same :func:`make`
into a temporary folder, so the picture in the README is what the test checks.  The
photo is Grace Hopper's portrait that matplotlib ships as sample data (public domain),
so nothing is downloaded.  The report is what

    rffsurgery report resnet50 --image grace_hopper.jpg --export-plan plan.json --out report.html

writes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's rffsurgery, when run as a script

from browser import ARGS, Watched, chromium_path, open_page  # noqa: E402
from rffsurgery import analyze, build_freeze_plan, html_report  # noqa: E402

__all__ = ["LAYER", "UNIT", "make", "photo"]

LAYER, UNIT = "layer2", (11, 14)  # a unit whose receptive field holds the face


def photo() -> Path:
    """matplotlib's sample photograph (installed with matplotlib, part of the test extra)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def make(browser, png: Path, folder: Path) -> Watched:
    """Write the report into ``folder``, open it, hover :data:`UNIT` of :data:`LAYER`, screenshot it to ``png``."""
    plan = analyze("resnet50")
    freeze_plan = build_freeze_plan(plan)
    path = html_report(plan, folder / "report.html", image=photo(), freeze_plan=freeze_plan, force=True)
    watched = open_page(browser, path, width=1400, height=1000)
    page = watched.page
    page.click(f'#layer-table tr[data-name="{plan[LAYER].name}"]')
    box = page.locator("#image-stage canvas").bounding_box()
    height, width = plan.input_size[1:]
    (g0, g1), scale = plan[LAYER].grid, box["width"] / width
    page.mouse.move(box["x"] + (UNIT[1] + 0.5) * width / g1 * scale, box["y"] + (UNIT[0] + 0.5) * height / g0 * scale)
    page.mouse.click(box["x"] + (UNIT[1] + 0.5) * width / g1 * scale, box["y"] + (UNIT[0] + 0.5) * height / g0 * scale)
    page.mouse.move(0, 0)
    png.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(png), full_page=True)
    return watched


def main() -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise SystemExit("no Chromium found: apt-get install chromium (or set CHROMIUM_PATH)")
    out = ROOT / "docs" / "images" / "report.png"
    with sync_playwright() as p, tempfile.TemporaryDirectory() as folder:
        browser = p.chromium.launch(executable_path=executable, args=ARGS)
        try:
            watched = make(browser, out, Path(folder))
            watched.assert_quiet()
        finally:
            browser.close()
    print(f"wrote {out.relative_to(ROOT)}; the report opened in {watched.open_s:.2f} s")


if __name__ == "__main__":
    main()
