"""The HTML report without a browser: what the file carries, that it is self-contained, the CLI and its errors.

What the page draws is checked in a real browser by tests/test_report_browser.py.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import rffsurgery
from rffsurgery import Schedule, analyze, build_freeze_plan
from rffsurgery.analysis.erf import erf
from rffsurgery.cli import main
from rffsurgery.data.images import read_image
from rffsurgery.errors import InvalidArgument, OutputExists
from rffsurgery.reports.html import html_report, render
from rffsurgery.reports.html.payload import MIN_EPOCHS, schedule_horizon

from test_ground_truth import TinyUNet


def embedded(path: Path) -> dict:
    """The JSON the page reads, parsed as the page parses it."""
    text = path.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="rff-data">(.*?)</script>', text, re.S)
    assert found, "no data block"
    return json.loads(found.group(1))


def test_the_nodes_are_the_json_reports_with_grid_and_maps(tmp_path: Path) -> None:
    """Every node as ``analyze --json`` writes it (grid, maps, params, MACs), plus ``main`` and ``tag``."""
    plan = analyze(TinyUNet(), (3, 32, 32))
    path = html_report(plan, tmp_path / "r.html", tags=[rffsurgery.Tag("up2", "test")])
    data = embedded(path)
    nodes = {n["name"]: n for n in data["analysis"]["nodes"]}
    assert list(nodes) == list(plan.layers)
    up1 = nodes["up1"]
    assert up1["grid"] == [32, 32] and up1["maps"][0]["period"] > 1  # upsampled: several phases
    for name, layer in plan.layers.items():
        if layer.status == "ok":
            assert nodes[name]["maps"] == layer.to_dict()["maps"] and nodes[name]["grid"] == list(layer.grid)
    assert {n for n, v in nodes.items() if v["main"]} == {l.name for l in plan.main_layers()}
    assert [n for n, v in nodes.items() if v["tag"]] == ["up2"]
    assert data["schema"] == "rffsurgery.html-report" and data["image"] is None and data["erf"] is None


def test_image_bytes_are_the_image_as_the_model_sees_it(tmp_path: Path, photo: Path) -> None:
    plan = analyze("resnet18", 48)
    data = embedded(html_report(plan, tmp_path / "r.html", image=photo))
    image = data["image"]
    assert (image["height"], image["width"], image["name"]) == (48, 48, "photo.png")
    got = np.frombuffer(base64.b64decode(image["rgb"]), np.uint8).reshape(48, 48, 3)
    assert np.array_equal(got, read_image(photo, (48, 48)).permute(1, 2, 0).numpy())


def test_erf_heat_maps_and_squares(tmp_path: Path) -> None:
    model = TinyUNet()
    plan = analyze(model, (3, 32, 32))
    result = erf(model, ["down2", "dec1"], input_size=(3, 32, 32), images=2)
    data = embedded(html_report(plan, tmp_path / "r.html", erf=result))["erf"]
    assert set(data["nodes"]) == {"down2", "dec1"}
    node = data["nodes"]["dec1"]
    heat = np.frombuffer(base64.b64decode(node["heat"]), np.uint8).reshape(node["height"], node["width"])
    truth = result["dec1"].heatmap
    assert heat.max() == 255 and np.abs(heat / 255 - (truth / truth.max()).numpy()).max() <= 0.5 / 255 + 1e-9
    assert node["squares"] == result["dec1"].summary()["squares"] and node["unit"] == [16, 16]


def test_erf_of_another_size_is_refused(tmp_path: Path) -> None:
    model = TinyUNet()
    result = erf(model, ["down2"], input_size=(3, 16, 16), images=1)
    with pytest.raises(InvalidArgument, match="one input size"):
        html_report(analyze(model, (3, 32, 32)), tmp_path / "r.html", erf=result)


@pytest.mark.parametrize("schedule, epochs, frozen", [
    (Schedule(epochs=(5,)), 5, [5]),
    (Schedule(every=3, start=2, stop=8), 8, [2, 5, 8]),
    (Schedule(every=2, start=2), MIN_EPOCHS, [2, 4, 6, 8, 10]),
    (Schedule(every=4, start=7), 19, [7, 11, 15, 19]),
])
def test_the_freeze_matrix_shows_the_schedule(tmp_path: Path, schedule: Schedule, epochs: int,
                                              frozen: list[int]) -> None:
    plan = analyze("resnet18", 32)
    freeze_plan = build_freeze_plan(plan, "paper", schedule, "freeze")
    data = embedded(html_report(plan, tmp_path / "r.html", freeze_plan=freeze_plan))
    shown = data["plan"]
    assert schedule_horizon(schedule) == shown["epochs"] == epochs and shown["frozen_epochs"] == frozen
    assert shown["fingerprint"] == freeze_plan.fingerprint and shown["nodes"] == list(freeze_plan.frozen_nodes)
    assert "layer2.0.bn1" in shown["nodes"]  # --bn freeze: the BatchNorms after the tagged convs
    assert [n["name"] for n in data["analysis"]["nodes"] if n["tag"]] == [t["node"] for t in freeze_plan.tagged]


def test_a_plan_for_another_model_is_refused(tmp_path: Path) -> None:
    freeze_plan = build_freeze_plan(analyze("resnet18", 32))
    with pytest.raises(InvalidArgument, match="does not have"):
        html_report(analyze(TinyUNet(), (3, 32, 32)), tmp_path / "r.html", freeze_plan=freeze_plan)


def test_the_page_is_self_contained_and_cannot_fetch(tmp_path: Path) -> None:
    text = html_report(analyze("resnet18", 32), tmp_path / "r.html").read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=|url\(|@import|<link|fetch\(|XMLHttpRequest|WebSocket""", text)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text)  # the SVG namespace is a name, not a request
    assert "default-src 'none'" in text  # the Content-Security-Policy forbids every request anyway
    assert "{{" not in text


def test_names_cannot_end_the_script_element() -> None:
    """A node name is the user's text: ``</script>`` in it must not close the data block."""
    data = {"analysis": {"model": "</script><script>alert(1)</script>", "input_size": [3, 8, 8], "nodes": []}}
    page = render(data)
    block = page.split('id="rff-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(block) == data and "<script>alert" not in page


def test_existing_file_and_non_image_models(tmp_path: Path, photo: Path) -> None:
    plan = analyze("m5")
    path = html_report(plan, tmp_path / "m5.html")  # a 1-D model: table and chart, no image view
    assert embedded(path)["analysis"]["input_size"] == [1, 16000]
    with pytest.raises(OutputExists):
        html_report(plan, path)
    with pytest.raises(InvalidArgument, match="2 spatial axes"):
        html_report(plan, tmp_path / "other.html", image=photo)


def test_top_level_name() -> None:
    assert rffsurgery.html_report is html_report and "html_report" in rffsurgery.__all__


def test_resnet50_report_is_small(tmp_path: Path, photo: Path) -> None:
    """Every node of resnet50, and a 224×224 image: well under the 2 MB the report may take without ERF."""
    path = html_report(analyze("resnet50"), tmp_path / "r.html", image=photo)
    assert path.stat().st_size < 2_000_000


# -- the command -------------------------------------------------------------------------------------------------

def test_cli_writes_the_report_with_plan_and_erf(tmp_path: Path, photo: Path) -> None:
    out, plan_path = tmp_path / "r.html", tmp_path / "plan.json"
    args = ["report", "rff-base-cnn", "--image", str(photo), "--erf", "--images", "1", "--export-plan", str(plan_path),
            "--epochs", "2,3", "--out", str(out)]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    data = embedded(out)
    assert data["plan"]["frozen_epochs"] == [2, 3]
    assert data["plan"]["fingerprint"] == json.loads(plan_path.read_text())["model"]["fingerprint"]
    assert data["erf"] is not None and "features.16" in data["erf"]["nodes"]
    assert data["image"]["height"] == 32
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "already exists" in again.output
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0


@pytest.mark.parametrize("extra, words", [
    (["--images", "2"], "--images only applies with --erf"),
    (["--epochs", "2"], "--epochs only applies with --export-plan"),
    (["--top-k", "2"], "--top-k only applies with --policy growth"),
    (["--export-plan", "{out}"], "--out and --export-plan name the same file"),
])
def test_cli_usage_errors(tmp_path: Path, extra: list[str], words: str) -> None:
    out = tmp_path / "r.html"
    done = CliRunner().invoke(main, ["report", "resnet18", "--out", str(out),
                                     *[e.replace("{out}", str(out)) for e in extra]])
    assert done.exit_code == 2 and words in done.output and not out.exists()


def test_cli_policy_marks_the_tags(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    done = CliRunner().invoke(main, ["report", "resnet18", "--input-size", "32", "--policy", "names",
                                     "--select", "layer3.*.conv1", "--out", str(out)])
    assert done.exit_code == 0, done.output
    tagged = [n["name"] for n in embedded(out)["analysis"]["nodes"] if n["tag"]]
    assert tagged == ["layer3.0.conv1", "layer3.1.conv1"]


def test_cli_user_errors_are_one_line(tmp_path: Path, photo: Path) -> None:
    done = CliRunner().invoke(main, ["report", "m5", "--image", str(photo), "--out", str(tmp_path / "r.html")])
    assert done.exit_code == 1 and done.output.startswith("error: --image needs an image model")
    assert len(done.output.strip().splitlines()) == 1


def test_heat_bytes_round_trip() -> None:
    """One byte per pixel, max = 255: what the page decodes."""
    from rffsurgery.analysis.erf import ErfResult, NodeErf
    from rffsurgery.reports.html.payload import _erf

    heat = torch.zeros(3, 4, dtype=torch.float64)
    heat[1, 2], heat[0, 0] = 2.0, 1.0
    node = NodeErf("n", (0, 0), heat, ((0, 1), (0, 1)), (2, 2), {0.2: 1, 0.3: 1, 0.5: 1, 0.99: 3})
    result = ErfResult("m", (1, 3, 4), "w", "d", [node])
    got = np.frombuffer(base64.b64decode(_erf(result)["nodes"]["n"]["heat"]), np.uint8).reshape(3, 4)
    assert got[1, 2] == 255 and got[0, 0] == 128 and got.sum() == 255 + 128
