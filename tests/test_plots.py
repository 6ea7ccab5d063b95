"""The pictures say what they claim: labels, legends, branch epoch, refusal to overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest

from rffsurgery import analyze
from rffsurgery.errors import OutputExists
from rffsurgery.reports import training as train_report
from rffsurgery.train.protocols.aggregate import aggregate

from test_ground_truth import TinyUNet


def _captured(monkeypatch, module) -> list:
    figures = []
    monkeypatch.setattr(module, "save_figure", lambda fig, path, *a, **k: figures.append(fig) or Path(path))
    return figures


def test_rf_plot_names_layers_and_refuses_to_overwrite(tmp_path: Path) -> None:
    from rffsurgery.reports.plot import plot_rf

    plan = analyze(TinyUNet(), (3, 32, 32))
    path = plot_rf(plan, tmp_path / "rf.png")
    assert path.stat().st_size > 10_000
    with pytest.raises(OutputExists):
        plot_rf(plan, path)
    plot_rf(plan, path, force=True)


def test_rf_plot_content(monkeypatch) -> None:
    import rffsurgery.reports.plot as plot

    figures = _captured(monkeypatch, plot)
    plan = analyze(TinyUNet(), (3, 32, 32))
    plot.plot_rf(plan, "unused.png")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [l.name for l in plan.main_layers()]
    assert ax.get_yscale() == "linear"
    texts = {t.get_text() for t in ax.texts}
    assert {"S=1", "S=2", "S=4"} <= texts
    assert any("range over positions" in t.get_text() for t in ax.get_legend().get_texts())


def test_curves_mark_the_branch_epoch_and_deltas_have_a_legend(monkeypatch) -> None:
    figures = _captured(monkeypatch, train_report)
    rows = [dict(stage="base", model="shared", epoch=e, train_accuracy=0.1 * e, val_accuracy=0.1 * e) for e in (1, 2)]
    rows += [dict(stage="branch", model=m, epoch=3, train_accuracy=0.3, val_accuracy=0.3) for m in ("normal", "rff")]
    rows += [dict(stage="transfer", model=m, epoch=4, train_accuracy=0.5, val_accuracy=0.5) for m in ("normal", "rff")]
    train_report.plot_curves(rows, Path("unused.png"))
    legend = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert legend[0].startswith("branch epoch 3")
    runs = [dict(split="a", seed=s, delta=d, n=2, normal_accuracy=0.5, rff_accuracy=0.5, epoch_time_ratio=1.0)
            for s, d in enumerate((0.01, -0.02, 0.03))]
    train_report.plot_deltas(aggregate(runs), Path("unused.png"))
    left, right = figures[1].axes
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["RFF − normal"]
    assert "95 % CI over seeds" in left.get_title() and "over split means" in left.get_title()
    assert right.get_yscale() == "log" and "error-rate ratio" in right.get_ylabel()
