"""The lesson harness and runner: settings become flags, cells run in order, a stopped lesson
leaves no empty run, tests get a lesson's pieces without its narrative."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lab.cli import main
from lab.course import Lesson
from lab.lessons import runner

LESSON = textwrap.dedent(
    """\
    # %% [markdown]
    # # 98 · A tiny lesson

    # %% tags=["parameters"]
    STEPS = 3  # how many steps
    RATE = 0.5  # a rate
    NAME = "x"  # a name
    PLOT = True  # draw the plot

    # %%
    from lab.lessons.harness import check, open_lesson

    lesson = open_lesson()
    seen = []


    # %%
    def double(value):
        return 2 * value


    for step in range(STEPS):
        seen.append(double(step))
        lesson.writer.add_scalar("value", seen[-1], step)
    print(seen)
    check(len(seen) == STEPS, "one value per step")

    # %%
    lesson.done()
    """
)


@pytest.fixture
def tiny(tmp_path) -> Lesson:
    folder = tmp_path / "98_tiny"
    folder.mkdir()
    (folder / "lesson.py").write_text(LESSON)
    return Lesson("98", "tiny", folder)


def test_cells_split_like_jupytext(tiny):
    cells = runner.cells(tiny.path.read_text())
    assert [c.kind for c in cells] == ["markdown", "code", "code", "code", "code"]
    assert cells[1].tags == ("parameters",)
    assert cells[1].first_line == 5  # line numbers in tracebacks are the file's


def test_settings_become_typed_flags_with_their_comment_as_help(tiny, capsys):
    parser = runner.build_parser(tiny, tiny.path.read_text())
    args = parser.parse_args(["--steps", "5", "--rate", "0.25", "--name", "y", "--no-plot"])
    assert (args.STEPS, args.RATE, args.NAME, args.PLOT) == (5, 0.25, "y", False)
    assert parser.parse_args([]).STEPS == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--steps", "many"])
    assert "--steps: expected int, got 'many'" in capsys.readouterr().err
    assert "how many steps (default: 3)" in parser.format_help()


def test_run_applies_flags_after_the_settings_cell(tiny, runs_dir, capsys):
    ns = runner.run(tiny, ["--steps", "4", "--no-gpu-metrics"])
    assert ns.seen == [0, 2, 4, 6]
    assert ns.lesson.checks == ["one value per step"] and ns.lesson.closed
    out = capsys.readouterr().out
    assert "✓ one value per step" in out and "[98_tiny] done: 1 claims checked" in out
    (run,) = (runs_dir / "98_tiny").iterdir()
    assert list(run.glob("events.out.tfevents*"))


def test_a_failed_claim_names_the_claim_and_the_line(tiny, runs_dir):
    source = tiny.path.read_text().replace("len(seen) == STEPS", "len(seen) == STEPS + 1")
    with pytest.raises(AssertionError, match="lesson claim failed: one value per step") as info:
        runner.run(tiny, ["--no-gpu-metrics"], source=source)
    frames = [f for f in info.traceback if Path(str(f.path)) == tiny.path]
    wrong = next(n for n, line in enumerate(source.splitlines()) if "STEPS + 1" in line)
    assert frames and frames[-1].lineno == wrong  # pytest's lineno is 0-based


def test_definitions_bring_functions_and_constants_without_the_narrative(tiny, runs_dir):
    module = runner.definitions(tiny)
    assert module.double(21) == 42 and module.STEPS == 3
    assert not hasattr(module, "lesson") and not hasattr(module, "seen")
    assert not runs_dir.exists(), "no run is opened by loading definitions"


def test_a_missing_dataset_stops_with_the_fetch_command_and_leaves_no_run(tiny, runs_dir, data_dir):
    source = tiny.path.read_text().replace("open_lesson()", 'open_lesson(datasets=("mnist",))')
    from lab.data import DatasetMissing

    with pytest.raises(DatasetMissing, match="invoke download-data --dataset mnist"):
        runner.run(tiny, ["--no-gpu-metrics"], source=source)
    assert not (runs_dir / "98_tiny").exists()


def test_an_unknown_lesson_flag_is_a_usage_error_with_exit_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["lesson", "01", "--no-such-flag"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_lesson_help_lists_the_lessons_settings(capsys):
    with pytest.raises(SystemExit):
        main(["lesson", "01", "--help"])
    out = capsys.readouterr().out
    assert "--steps STEPS" in out and "gradient-descent steps (default: 200)" in out


def test_a_notebook_names_its_lesson_by_its_folder(tmp_path, monkeypatch):
    # A kernel has no __file__: the lesson is the folder Jupyter starts it in (or the one
    # JPY_SESSION_NAME names), the course's folder or the learner's copy of it.
    from lab.lessons import harness

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(harness.LabUsageError, match="cannot tell which lesson"):
        harness.notebook_lesson()
    folder = tmp_path / "07_custom_autograd_function"
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert harness.notebook_lesson() == "07_custom_autograd_function"
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "03_computational_graph" / "lesson.py"))
    assert harness.notebook_lesson() == "03_computational_graph"


def test_show_puts_a_png_of_the_figure_under_the_cell_whatever_the_backend(monkeypatch):
    # Under MPLBACKEND=Agg a kernel has no PNG formatter for a bare Figure (it would show
    # "<Figure size … with 1 Axes>"): show() hands the kernel the PNG itself.
    import io

    import IPython.display
    import matplotlib
    import matplotlib.pyplot as plt
    from PIL import Image

    from lab.lessons import harness

    assert matplotlib.get_backend().lower() == "agg"  # a test process: no display, no inline
    shown = []
    monkeypatch.setattr(harness, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", shown.append)
    fig, ax = plt.subplots(figsize=(4, 2), dpi=50)
    ax.imshow([[0.0, 1.0]], cmap="gray")
    harness.show(fig, "t")
    (picture,) = shown
    assert picture.format == "png"
    with Image.open(io.BytesIO(picture.data)) as png:
        assert png.format == "PNG" and png.width > png.height > 20
    assert not plt.fignum_exists(fig.number), "the figure is closed: not shown a second time"
