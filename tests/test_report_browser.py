"""The report in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

Skipped, with the reason, when playwright or Chromium is missing (tests/browser.py says
how to get them).  The page is opened from ``file://``; every test also checks that it
logged no error and requested nothing but itself.

What is checked is what a user sees: after a click on a layer's row and the pointer over
an output unit, the rectangle drawn on the screen covers exactly the input pixels of
``layer.interval(unit)`` (clipped to the view, with the true interval in its data and
text), for a CNN, an upsampling net (every phase) and a windowed transformer; for
interior units those drawn pixels are also exactly the support of the unit's input
gradient (tests/gradient_rf.py), the ground truth.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch
import torchvision
from PIL import Image

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install -e '.[test]'")

from rffsurgery import analyze, build_freeze_plan, html_report  # noqa: E402
from rffsurgery.analysis.erf import erf  # noqa: E402
from rffsurgery.plan import Schedule  # noqa: E402
from torchvision.models.swin_transformer import SwinTransformer  # noqa: E402

from browser import ARGS, SCREEN_BOX, chromium_path, open_page  # noqa: E402
from gradient_rf import GradientProbe, default_units, diagonal_units  # noqa: E402
from report_screenshot import LAYER, UNIT, make  # noqa: E402
from test_ground_truth import TinyUNet  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found: apt-get install chromium (or set CHROMIUM_PATH)")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=ARGS)
        yield launched
        launched.close()


def small_swin() -> SwinTransformer:
    """torchvision's Swin with windows of 4 tokens (a plain and a shifted-window block) on a 16×16 input."""
    return SwinTransformer(patch_size=[2, 2], embed_dim=8, depths=[2], num_heads=[1], window_size=[4, 4], num_classes=3)


def choose(page: Any, name: str, every_node: bool = False) -> None:
    """Find a layer as a user does: type its name in the filter, then click its row."""
    if every_node != page.is_checked("#all-nodes"):
        page.click("#all-nodes")
    page.fill("#filter", name)
    page.click(f'#layer-table tr[data-name="{name}"]')
    assert page.evaluate("document.documentElement.dataset.selected") == name


DRAWN = """() => {
  const box = r => { const b = r.getBoundingClientRect(); return {x: b.x, y: b.y, width: b.width, height: b.height}; };
  const rf = document.getElementById('unit-rf');
  return {canvas: box(document.querySelector('#image-stage canvas')),
          view: box(document.querySelector('#image-stage svg')),
          rect: (%s)(rf), data: {...rf.dataset}, centre: {...document.getElementById('unit-centre').dataset},
          text: document.getElementById('unit-info').textContent};
}""" % SCREEN_BOX


def hover(page: Any, layer, unit: Sequence[int], size: Sequence[int], click: bool = False) -> dict[str, Any]:
    """Put the pointer on ``unit``'s cell (the output grid laid evenly over the image); what is drawn then."""
    box = page.locator("#image-stage canvas").bounding_box()
    scale = box["width"] / size[1]
    x = box["x"] + (unit[1] + 0.5) * size[1] / layer.grid[1] * scale
    y = box["y"] + (unit[0] + 0.5) * size[0] / layer.grid[0] * scale
    (page.mouse.click if click else page.mouse.move)(x, y)
    return {**page.evaluate(DRAWN), "scale": scale}


def assert_drawn(drawn: dict[str, Any], layer, unit: Sequence[int]) -> None:
    """The rectangle on the screen is ``layer.interval(unit)``, clipped to the view; data and text say it unclipped."""
    (r0, r1), (c0, c1) = layer.interval(unit)
    box, view, s, rect = drawn["canvas"], drawn["view"], drawn["scale"], drawn["rect"]
    left, right = max(box["x"] + c0 * s, view["x"]), min(box["x"] + (c1 + 1) * s, view["x"] + view["width"])
    top, bottom = max(box["y"] + r0 * s, view["y"]), min(box["y"] + (r1 + 1) * s, view["y"] + view["height"])
    where = f"{layer.name} unit {tuple(unit)}"
    assert drawn["data"]["unit"] == ",".join(map(str, unit)), where
    assert (drawn["data"]["rows"], drawn["data"]["cols"]) == (f"{r0},{r1}", f"{c0},{c1}"), where
    assert rect["shown"], where
    for got, want in ((rect["x"], left), (rect["y"], top), (rect["x"] + rect["width"], right),
                      (rect["y"] + rect["height"], bottom)):
        assert got == pytest.approx(want, abs=0.02), f"{where}: drawn {rect}, want x {left}…{right}, y {top}…{bottom}"
    assert drawn["data"]["clipped"] == str(left > box["x"] + c0 * s or right < box["x"] + (c1 + 1) * s or
                                           top > box["y"] + r0 * s or bottom < box["y"] + (r1 + 1) * s).lower()
    assert (float(drawn["centre"]["y"]), float(drawn["centre"]["x"])) == ((r0 + r1 + 1) / 2, (c0 + c1 + 1) / 2)
    assert f"rows {r0}…{r1} ({r1 - r0 + 1} px), cols {c0}…{c1} ({c1 - c0 + 1} px)" in drawn["text"], drawn["text"]


def drawn_pixels(drawn: dict[str, Any], size: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """The input pixels the drawn rectangle covers inside the image: (first, last) row and column."""
    box, s, rect = drawn["canvas"], drawn["scale"], drawn["rect"]
    c0, c1 = (rect["x"] - box["x"]) / s, (rect["x"] + rect["width"] - box["x"]) / s
    r0, r1 = (rect["y"] - box["y"]) / s, (rect["y"] + rect["height"] - box["y"]) / s
    rows = (max(round(r0), 0), min(round(r1), size[0]) - 1)
    cols = (max(round(c0), 0), min(round(c1), size[1]) - 1)
    return rows, cols


def units_of(layer, limit: int = 16) -> list[tuple[int, ...]]:
    """Centre, borders and neighbouring phases, then the diagonal (every phase of a periodic map)."""
    return list(dict.fromkeys([*default_units(layer.grid), *diagonal_units(layer.grid)]))[:limit]


CASES = {
    "resnet18": (lambda: "resnet18", (3, 64, 64),
                 ["layer1.0.conv2", "layer2.0.downsample.0", "layer3", "layer4.1.conv2"]),
    "TinyUNet (upsampling)": (TinyUNet, (3, 32, 32), ["down2", "up2", "dec2", "up1", "dec1", "head"]),
    "swin (windows)": (small_swin, (3, 16, 16), ["features.0", "features.1.0", "features.1.1"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hovered_units_draw_their_exact_interval(browser, tmp_path: Path, photo: Path, case: str) -> None:
    build, size, names = CASES[case]
    plan = analyze(build(), size)
    watched = open_page(browser, html_report(plan, tmp_path / "r.html", image=photo))
    page = watched.page
    periodic = 0
    for name in names:
        layer = plan[name]
        choose(page, layer.name, every_node=layer.name not in {l.name for l in plan.main_layers()})
        periodic += any(a.map.period > 1 for a in layer.axes)
        for unit in units_of(layer):
            assert_drawn(hover(page, layer, unit, size[1:]), layer, unit)
    assert periodic or case == "resnet18"  # the upsampled and windowed layers do have several phases
    watched.assert_quiet()


def test_a_model_with_one_spatial_axis(browser, tmp_path: Path) -> None:
    """An audio net: the table and chart, and the unit's interval as text (the image view needs 2 axes)."""
    plan = analyze("m5")
    watched = open_page(browser, html_report(plan, tmp_path / "r.html"))
    layer = plan[watched.page.evaluate("document.documentElement.dataset.selected")]
    (lo, hi), = layer.interval((layer.grid[0] // 2,))
    assert f"axis 0 {lo}…{hi} ({hi - lo + 1} px)" in watched.page.inner_text("#unit-info")
    assert watched.page.locator("#image-stage").is_hidden()
    watched.assert_quiet()


def test_a_click_pins_the_unit(browser, tmp_path: Path) -> None:
    plan = analyze("resnet18", 64)
    watched = open_page(browser, html_report(plan, tmp_path / "r.html"))
    page, layer = watched.page, plan["layer2"]
    choose(page, layer.name)
    hover(page, layer, (1, 2), (64, 64), click=True)
    moved = hover(page, layer, (6, 5), (64, 64))
    assert_drawn(moved, layer, (1, 2))
    assert "Pinned" in moved["text"]
    page.keyboard.press("ArrowRight")
    assert_drawn(hover(page, layer, (6, 5), (64, 64)), layer, (1, 3))
    watched.assert_quiet()


@pytest.mark.parametrize("build, size, name", [
    (lambda: torchvision.models.resnet18(weights=None), (3, 64, 64), "layer1.0.conv2"),
    (small_swin, (3, 16, 16), "features.1.0"),  # channels last: (N, H, W, C)
])
def test_drawn_pixels_are_the_gradients_support(browser, tmp_path: Path, build, size, name) -> None:
    """Ground truth: for units whose interval lies in the image, the pixels drawn are those whose gradient is not 0."""
    torch.manual_seed(0)
    model = build().eval()
    plan = analyze(model, size)
    layer = plan[name]
    probe = GradientProbe(model, size)
    value = probe.outputs([name])[name].movedim(layer.dims, (2, 3))  # (N, C, H, W), whatever the layout
    watched = open_page(browser, html_report(plan, tmp_path / "r.html"))
    choose(watched.page, layer.name, every_node=layer.name not in {l.name for l in plan.main_layers()})
    checked = 0
    for unit in units_of(layer, limit=40):
        interval = layer.interval(unit)
        if any(lo < 0 or hi >= n for (lo, hi), n in zip(interval, size[1:])):
            continue  # a border unit can read less than its interval (taps in padding): see gradient_rf.Case
        drawn = hover(watched.page, layer, unit, size[1:])
        assert drawn_pixels(drawn, size[1:]) == probe.support(value, unit), (name, unit)
        checked += 1
    assert checked >= 3
    watched.assert_quiet()


def visible_rows(page: Any) -> list[str]:
    return page.eval_on_selector_all("#layer-table tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.name)")


def test_filter_every_node_and_sort(browser, tmp_path: Path) -> None:
    plan = analyze("resnet18", 64)
    watched = open_page(browser, html_report(plan, tmp_path / "r.html"))
    page = watched.page
    main = [l.name for l in plan.main_layers()]
    assert visible_rows(page) == main
    page.fill("#filter", "Layer3.")  # case does not matter
    assert visible_rows(page) == [n for n in main if "layer3." in n]
    page.click("#all-nodes")
    assert visible_rows(page) == [n for n in plan.layers if "layer3." in n]
    assert page.inner_text("#row-count").startswith(f"{len([n for n in plan.layers if 'layer3.' in n])} of {len(plan)}")
    page.fill("#filter", "")
    page.click("#all-nodes")
    order = {n: i for i, n in enumerate(plan.layers)}

    def rf(name: str) -> float:
        layer = plan.layers[name]
        return max(math.inf if r == "global" else r for r in layer.rf) if layer.status in ("ok", "global") else -1

    page.click('#layer-table th[data-key="rf"]')
    assert visible_rows(page) == sorted(main, key=lambda n: (rf(n), order[n]))
    assert page.get_attribute('#layer-table th[data-key="rf"]', "aria-sort") == "ascending"
    page.click('#layer-table th[data-key="rf"]')
    assert visible_rows(page) == sorted(main, key=lambda n: (-rf(n), order[n]))
    page.click('#layer-table th[data-key="params"]')
    params = {r["name"]: r["n_params"] for r in page.evaluate("JSON.parse(document.getElementById('rff-data')"
                                                                ".textContent).analysis.nodes")}
    assert visible_rows(page) == sorted(main, key=lambda n: (params[n], order[n]))
    page.click('#layer-table th[data-key="index"]')
    assert visible_rows(page) == main
    watched.assert_quiet()


def test_growth_chart_marks_tags_and_selects(browser, tmp_path: Path) -> None:
    plan = analyze("resnet18", 64)
    freeze_plan = build_freeze_plan(plan)
    watched = open_page(browser, html_report(plan, tmp_path / "r.html", freeze_plan=freeze_plan))
    page = watched.page
    points = page.eval_on_selector_all("#growth-chart circle.pt",
                                       "cs => cs.map(c => [c.dataset.name, c.classList.contains('tagged')])")
    charted = [l.name for l in plan.main_layers() if l.status in ("ok", "global")]
    assert [p[0] for p in points] == charted
    assert [p[0] for p in points if p[1]] == [t["node"] for t in freeze_plan.tagged]
    page.click(f'#growth-chart circle[data-name="{charted[3]}"]')
    assert page.evaluate("document.documentElement.dataset.selected") == charted[3]
    watched.assert_quiet()


def test_erf_panel_and_freeze_matrix(browser, tmp_path: Path) -> None:
    model, size = "rff-base-cnn", (3, 32, 32)
    plan = analyze(model, size)
    result = erf(model, ["features.3", "features.16"], input_size=size, images=1)
    freeze_plan = build_freeze_plan(plan, schedule=Schedule(every=3, start=2, stop=8))
    watched = open_page(browser, html_report(plan, tmp_path / "r.html", erf=result, freeze_plan=freeze_plan))
    page = watched.page
    choose(page, "features.16")
    page.locator("#erf-stage").scroll_into_view_if_needed()
    canvas = page.locator("#erf-stage canvas").bounding_box()
    scale = canvas["width"] / size[2]
    node = result["features.16"]
    for fraction in (0.2, 0.5, 0.99):
        rect = page.locator(f"#erf-square-{round(fraction * 100)}").evaluate(SCREEN_BOX)
        (r0, r1), (c0, c1) = node.square(fraction)
        want = [max(c0, 0), max(r0, 0), min(c1 + 1, size[2]), min(r1 + 1, size[1])]
        got = [(rect["x"] - canvas["x"]) / scale, (rect["y"] - canvas["y"]) / scale,
               (rect["x"] + rect["width"] - canvas["x"]) / scale, (rect["y"] + rect["height"] - canvas["y"]) / scale]
        assert got == pytest.approx(want, abs=0.01), fraction
    table = page.inner_text("#erf-table")
    for fraction in (0.2, 0.3, 0.5, 0.99):
        assert f"{node.squares[fraction]} px square" in table and f"{node.area_ratio(fraction):.3f}" in table
    rf_size = "x".join(str(hi - lo + 1) for lo, hi in node.interval).replace("x", "×")
    assert f"theoretical RF\t{rf_size} px" in table
    choose(page, "features.6")  # not computed: the page says so and offers the computed ones
    assert page.locator("#erf-stage").is_hidden()
    page.click('#erf-facts button:has-text("features.3")')
    assert page.evaluate("document.documentElement.dataset.selected") == "features.3"
    cells = page.eval_on_selector_all("#freeze-matrix tr[data-name]", "rows => rows.map(r => [r.dataset.name, "
                                      "[...r.querySelectorAll('td')].map(td => td.className)])")
    assert [c[0] for c in cells] == list(freeze_plan.frozen_nodes)
    for _, row in cells:
        assert [i + 1 for i, c in enumerate(row) if c == "on"] == [2, 5, 8] and len(row) == 8
    assert freeze_plan.fingerprint in page.inner_text("#plan-facts")
    watched.assert_quiet()


def test_resnet50_opens_fast_and_makes_the_readme_screenshot(browser, tmp_path: Path, record_property) -> None:
    """The README's picture comes from here (tests/report_screenshot.py); the open time is measured, not judged."""
    png = tmp_path / "report.png"
    watched = make(browser, png, tmp_path)
    record_property("resnet50_report_open_s", round(watched.open_s, 3))
    size = (tmp_path / "report.html").stat().st_size
    print(f"resnet50 report opened in {watched.open_s:.3f} s ({size / 1e6:.2f} MB)")
    with Image.open(png) as shot:
        assert shot.width == 1400 and shot.height > 1000
    plan = analyze("resnet50")
    (r0, r1), (c0, c1) = plan[LAYER].interval(UNIT)
    assert re.search(rf"rows {r0}…{r1} .*cols {c0}…{c1} .*Pinned", watched.page.inner_text("#unit-info"))
    watched.assert_quiet()
