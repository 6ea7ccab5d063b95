"""Property test: every command of the CLI, driven with generated values of every option it declares.

The commands and their parameters are read from the click group itself (``main``), so a
command added later (``report``, new ONNX inputs …) is driven too without touching this
file.  For each command hypothesis draws up to four of its options (and every argument)
and, for each, a value from the parameter's declared type: a choice or a wrong one, the
edges of an integer range (below, at and just above its minimum, above its maximum,
hundreds of digits), NaN / infinite / huge floats, existing, missing, unicode and
unwritable paths, and strings that look like sizes, units, names and globs.  Every run
must end as a program should:

* exit status 0, 1 (an error the user can fix) or 2 (a usage error) — never another
  status, never an exception escaping the command, and never 0 without any output (user
  code that calls ``sys.exit(0)`` must not pass for success);
* no traceback and no "a bug in rffsurgery" message in the output;
* no file outside the example's own working folder created or changed (inputs live in
  a separate folder that is snapshotted; ``--force`` is never combined with an input
  file as an output, since replacing it is then what the user asked for).

Bounded time by design: the ``ci`` profile (derandomised: the same examples every run),
a few examples per command and a deadline per example; small models (``rff-base-cnn``, a
tiny user model) and the cost-driving defaults of ``train`` lowered for the test (1
base and transfer epoch, 10 images per class, ``--max-epochs`` 3), while generated
integers stay near their minimum, so no example trains for long.  No network: the
dataset downloads are replaced by an immediate failure.
"""

from __future__ import annotations

import os
from datetime import timedelta
from itertools import count
from pathlib import Path
from typing import Any, Iterator

import click
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rffsurgery.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

MAX_OPTIONS = 4
EXAMPLES = 10

USER_MODELS = '''
import sys

import torch
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def exits():
    sys.exit(0)


def raises():
    raise ValueError("broken factory")
'''


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every leaf command of the CLI with its words (``("plan", "check")``)."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = dict(_commands(main))


# -- values by declared type: half of them plausible, half at or beyond the edges ----------------------------------
def _mixed(plausible: list[str], edges: list[str]) -> st.SearchStrategy[str]:
    """A value that gets past the option's own check half the time, so that examples reach deep paths too."""
    return st.one_of(st.sampled_from(plausible), st.sampled_from(edges)) if plausible else st.sampled_from(edges)


def _integers(kind: click.ParamType) -> st.SearchStrategy[str]:
    low, high = getattr(kind, "min", None), getattr(kind, "max", None)
    base = 0 if low is None else int(low)
    plausible = [v for v in (base, base + 1, base + 2) if high is None or v <= high]
    edges = {base - 1, -1, 10**30, -(10**30), *(() if high is None else (int(high) + 1,))} - set(plausible)
    return _mixed([str(v) for v in plausible], [str(v) for v in sorted(edges)] + ["x", "1.5", ""])


def _floats(kind: click.ParamType) -> st.SearchStrategy[str]:
    def inside(v: float) -> bool:
        low, high = getattr(kind, "min", None), getattr(kind, "max", None)
        above = low is None or (v > low if getattr(kind, "min_open", False) else v >= low)
        below = high is None or (v < high if getattr(kind, "max_open", False) else v <= high)
        return above and below

    plausible = [str(v) for v in (0.0, 0.001, 0.5, 1.0) if inside(v)]
    return _mixed(plausible, ["nan", "inf", "-inf", "1e999", "-1", "1e30", "x", ""])


TEXT = ["", " ", "0", "-1", "nan", "1e999", "99999999999999999999", "ü", "a,b", "1,1", "x,y", "*", "features.0",
        "features.*", "rff-base-cnn", "0-1", "1.5", "random:2", "random:0", "g.1", "disk,ring", "\u202e"]
MODELS = ["rff-base-cnn", "{w}/models.py:Small", "{w}/models.py:exits", "{w}/models.py:raises", "no-such-model",
          "{w}/nofile.py:f", ":", "{w}/recipe"]
SIZES = ["8", "32", "3,32,32", "3x32", "0", "-3", "1,3,32,32", "nan", "99999999999999999999", "3,100000,1", "3", "2,16"]
HINTS = {"model": MODELS, "input_size": SIZES, "seeds": ["0", "1,1", "-1", "0-1", "5-1", "99999999999999999999", "x"]}
INPUTS = ["{w}/plan.json", "{w}/image.png", "{w}/weights.pt", "{w}/recipe", "{w}/models.py"]
BAD_INPUTS = ["{w}/notjson.json", "{w}/text.txt", "{w}/adir", "{w}/missing.json", "{w}/ünï.json"]
OUTPUTS = ["new.json", "new.png", "new.graphml", "new.onnx", "new", "sub/deeper/new.json", "ünï/out.json"]
BAD_OUTPUTS = ["{w}/afile/below", "{w}/existing.json", "", "/proc/rffsurgery-property"]


def _values(param: click.Parameter, forced: bool) -> st.SearchStrategy[str]:
    """Strings for ``param``, from its declared type (and, for a few well-known names, from their domain)."""
    kind = param.type
    if param.name in HINTS:
        return st.sampled_from(HINTS[param.name])
    if isinstance(kind, click.Choice):
        return _mixed(list(map(str, kind.choices)), ["bogus", ""])
    if isinstance(kind, click.types.IntParamType):
        return _integers(kind)
    if isinstance(kind, click.types.FloatParamType):
        return _floats(kind)
    if isinstance(kind, click.Path):
        if kind.exists:
            return _mixed(INPUTS, BAD_INPUTS)
        # an output, or an input read by name: never an existing input file together with --force, and an
        # existing input folder only where a folder is refused (writing into it is what the user asked for)
        edges = [*BAD_OUTPUTS, *([] if kind.dir_okay else ["{w}/adir"]), *([] if forced else INPUTS[:1] + BAD_INPUTS[:2])]
        return _mixed(OUTPUTS, edges)
    return st.sampled_from(TEXT)


@st.composite
def invocations(draw: st.DrawFn, words: tuple[str, ...], command: click.Command) -> list[str]:
    options = [p for p in command.params if isinstance(p, click.Option)]
    chosen = draw(st.lists(st.sampled_from(options), max_size=MAX_OPTIONS, unique_by=lambda p: p.name)) if options \
        else []
    forced = any(p.name == "force" for p in chosen)
    args = list(words)
    for param in command.params:
        if isinstance(param, click.Argument):
            args.append(draw(_values(param, forced)))
    for param in chosen:
        flag = max(param.opts, key=len)
        if param.is_flag:
            args.append(flag)
            continue
        for _ in range(draw(st.integers(1, 2)) if param.multiple else 1):
            args += [flag, draw(_values(param, forced))]
    return args


# -- the world the commands run in ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files the commands may read; they must never change."""
    w = tmp_path_factory.mktemp("property-inputs")
    (w / "models.py").write_text(USER_MODELS)
    (w / "notjson.json").write_text("{not json")
    (w / "text.txt").write_text("hello\n")
    (w / "ünï.json").write_text("[]")
    (w / "existing.json").write_text('{"mine": true}\n')
    (w / "afile").write_text("a file\n")
    (w / "adir").mkdir()
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 30, 30)).save(w / "image.png")
    from rffsurgery.models import RFFBaseCNN

    torch.save(RFFBaseCNN().state_dict(), w / "weights.pt")
    runner = CliRunner()
    for args in (["analyze", "rff-base-cnn", "--export-plan", str(w / "plan.json")],
                 ["rewrite", "rff-base-cnn", "--meta-groups", "2", "--out", str(w / "recipe")]):
        made = runner.invoke(main, args)
        assert made.exit_code == 0, made.output
    return w


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture()
def cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lower the defaults that make ``train`` long, and make every download fail at once (no network here)."""
    train = COMMANDS.get(("train",))
    lowered = {"epochs": 1, "transfer_epochs": 1, "max_epochs": 3}
    for param in train.params if train is not None else ():
        if param.name in lowered:
            monkeypatch.setattr(param, "default", lowered[param.name])
    from rffsurgery.cli import train_rewrite
    from rffsurgery.data import DATASETS, Dataset, generated

    monkeypatch.setitem(train_rewrite.PAPER_DEFAULTS, "epochs", 1)
    entry = DATASETS["generated"]
    monkeypatch.setitem(DATASETS, "generated", Dataset(lambda per_class=10, cue=0.0: generated(per_class, cue),
                                                       entry.help, entry.root, entry.options, entry.streams))
    import torchvision

    def offline(*args: Any, **kwargs: Any) -> None:
        raise OSError("no network in the property test")

    for name in ("CIFAR10", "CIFAR100"):
        monkeypatch.setattr(torchvision.datasets, name, offline)


@pytest.mark.parametrize("words", list(COMMANDS), ids=" ".join)
def test_every_command_survives_generated_options(words: tuple[str, ...], inputs: Path, cheap: None,
                                                  tmp_path: Path) -> None:
    examples = count()

    @settings(max_examples=EXAMPLES, deadline=timedelta(seconds=60), database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(invocations(words, COMMANDS[words]))
    def run(args: list[str]) -> None:
        args = [a.replace("{w}", str(inputs)) for a in args]
        folder = tmp_path / f"example-{next(examples)}"
        folder.mkdir()
        before = _snapshot(inputs)
        threads, deterministic, cwd = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), os.getcwd()
        os.chdir(folder)  # relative outputs (and train's default runs/rff) land in the example's own folder
        try:
            result = CliRunner().invoke(main, args)
        finally:
            os.chdir(cwd)
            torch.set_num_threads(threads)  # --threads and --deterministic change the process, not only the run
            torch.use_deterministic_algorithms(deterministic)
        shown = f"rffsurgery {' '.join(args)}\n{result.output}"
        assert result.exit_code in (0, 1, 2), shown
        assert result.exit_code != 0 or result.output.strip(), shown  # success says what it did: never a silent exit 0
        assert result.exception is None or isinstance(result.exception, SystemExit), (shown, result.exception)
        assert "Traceback" not in result.output and "a bug in rffsurgery" not in result.output, shown
        assert _snapshot(inputs) == before, shown
        assert all(p.name.startswith("example-") for p in tmp_path.iterdir()), shown  # nothing beside the examples

    run()
