"""Run a lesson's cells headless, in order, exactly as a learner's Shift+Enter would.

A lesson file is a jupytext percent script: ``# %%`` starts a code cell, ``# %% [markdown]`` a
markdown cell. Its first code cell tagged ``parameters`` is the settings cell: top-level
``NAME = literal`` lines, each becoming a command-line flag (``EPOCHS = 1  # passes over the
data`` → ``--epochs N``, help "passes over the data (default: 1)"). After that cell runs,
the runner writes the flags' values over the defaults, then runs the remaining cells.

:func:`definitions` gives tests the lesson's reusable pieces (imports, functions, classes and
UPPER_CASE constants) without running its narrative cells.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from lab.course import Lesson

_CELL = re.compile(r"^# %%(?P<header>.*)$")


@dataclass(frozen=True)
class Cell:
    kind: str  # "code" | "markdown"
    source: str
    first_line: int  # 1-based line of the first source line in the file
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Setting:
    name: str  # "EPOCHS"
    default: object
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.lower().replace("_", "-")


def cells(text: str) -> list[Cell]:
    """The file's cells; text before the first ``# %%`` is ignored like jupytext does."""
    found: list[Cell] = []
    header, start, body = None, 0, []
    lines = text.splitlines()

    def close() -> None:
        if header is None:
            return
        kind = "markdown" if "[markdown]" in header else "code"
        tags = (
            tuple(re.findall(r'"([^"]+)"', header.split("tags=", 1)[1]))
            if "tags=" in header
            else ()
        )
        found.append(Cell(kind, "\n".join(body).strip("\n"), start, tags))

    for number, line in enumerate(lines, start=1):
        match = _CELL.match(line)
        if match:
            close()
            header, start, body = match.group("header"), number + 1, []
        else:
            body.append(line)
    close()
    return found


def _settings_cell(all_cells: list[Cell]) -> Cell | None:
    return next((c for c in all_cells if c.kind == "code" and "parameters" in c.tags), None)


def settings(text: str) -> list[Setting]:
    """The settings cell's ``NAME = literal`` lines, in order, with their trailing comments."""
    cell = _settings_cell(cells(text))
    if cell is None:
        return []
    lines = cell.source.splitlines()
    found = []
    for node in ast.parse(cell.source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if not (isinstance(target, ast.Name) and target.id.isupper()):
            continue
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            continue
        line = lines[node.lineno - 1]
        comment = line.split("#", 1)[1].strip() if "#" in line else target.id.lower()
        found.append(Setting(target.id, default, comment))
    return found


def _parse_value(kind: type):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def build_parser(lesson: Lesson, text: str) -> argparse.ArgumentParser:
    """Standard options every lesson has, then one flag per setting of this lesson."""
    parser = argparse.ArgumentParser(
        prog=f"lab lesson {lesson.number}", description=lesson.title, allow_abbrev=False
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where tensors live (default: auto = cuda when available, else cpu)",
    )
    parser.add_argument(
        "--runs-dir", type=Path, help="TensorBoard runs root (default: $LAB_RUNS_DIR or ./runs)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="datasets root (default: $LAB_DATA_DIR or ./data)"
    )
    parser.add_argument(
        "--no-gpu-metrics",
        action="store_true",
        help="do not sample GPU utilization/memory/power into the run",
    )
    parser.add_argument(
        "--original",
        action="store_true",
        help="run the course's lesson, not your edited copy in work/ (when there is one)",
    )
    group = parser.add_argument_group("this lesson's settings (its first code cell)")
    for setting in settings(text):
        help_text = f"{setting.help} (default: {setting.default!r})"
        if isinstance(setting.default, bool):
            group.add_argument(
                setting.flag,
                dest=setting.name,
                action=argparse.BooleanOptionalAction,
                default=setting.default,
                help=help_text,
            )
        else:
            kind = type(setting.default) if setting.default is not None else str
            group.add_argument(
                setting.flag,
                dest=setting.name,
                type=_parse_value(kind),
                default=setting.default,
                metavar=setting.name,
                help=help_text,
            )
    return parser


def _learners_copy(lesson: Lesson, argv: list[str]) -> Path | None:
    """The learner's edited copy of the lesson, unless ``--original`` is among ``argv``."""
    from lab.copies import Copy, edited
    from lab.paths import work_dir

    copy = Copy(lesson, lesson.path.name, work_dir())
    if "--original" in argv or not edited(copy):
        return None
    print(
        f"running your edited copy {copy.path} (`--original` runs the course's lesson)",
        file=sys.stderr,
    )
    return copy.path


def _module_for(lesson: Lesson) -> types.ModuleType:
    # A real module object, registered under the lesson's import name: classes the cells
    # define pickle by reference (DataLoader workers, torch.save) like any module's.
    module = types.ModuleType(lesson.module_name)
    module.__dict__["__builtins__"] = __builtins__
    sys.modules[lesson.module_name] = module
    return module


def _padded(cell: Cell) -> str:
    # Newlines first, so tracebacks and syntax errors point at the cell's real lines.
    return "\n" * (cell.first_line - 1) + cell.source + "\n"


def _compile(cell: Cell, path: Path):
    return compile(_padded(cell), str(path), "exec")


def run(
    lesson: Lesson, argv: list[str], source: str | None = None, lenient: bool = False
) -> types.ModuleType:
    """Parse ``argv`` against the lesson's settings and run all of its cells in order.

    The learner's edited copy (``<work>/NN_name/lesson.py``, see :mod:`lab.copies`) is what
    runs, unless ``--original``; ``source`` replaces the file's text (the tests run mutated
    copies of a lesson); ``lenient`` ignores flags this lesson has no setting for (``lab lesson
    all --dry-run``). Raises what a cell raises; the lesson's run is closed either way.
    """
    from lab.lessons import harness

    path = lesson.path
    if source is None:
        path = _learners_copy(lesson, argv) or lesson.path
        source = path.read_text(encoding="utf-8")
    text = source
    parser = build_parser(lesson, text)
    args = parser.parse_known_args(argv)[0] if lenient else parser.parse_args(argv)
    overrides = {s.name: getattr(args, s.name) for s in settings(text)}
    options = harness.Options(
        device=args.device,
        run_name=lesson.run_name,
        runs_dir=args.runs_dir,
        data_dir=args.data_dir,
        gpu_metrics=not args.no_gpu_metrics,
    )
    module = _module_for(lesson)
    namespace = module.__dict__
    all_cells = cells(text)
    settings_cell = _settings_cell(all_cells)
    opened_before = harness.current()
    try:
        with harness.cli_options(options):
            for cell in all_cells:
                if cell.kind != "code" or not cell.source.strip():
                    continue
                exec(_compile(cell, path), namespace)  # noqa: S102 - the lesson's own code
                if cell is settings_cell:
                    namespace.update(overrides)
    except SystemExit:
        opened = harness.current()
        if opened is not None and opened is not opened_before and not opened.checks:
            opened.discard()  # stopped before teaching anything: no empty run for TensorBoard
        raise
    finally:
        opened = harness.current()
        if opened is not None and opened is not opened_before:
            opened.close()
    return module


_DEFINITION_NODES = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
)


def _is_constant(node: ast.stmt) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return isinstance(node, ast.Assign | ast.AnnAssign) and all(
        isinstance(t, ast.Name) and t.id.isupper() for t in targets
    )


def definition_code(text: str, path: Path):
    """``(cell, code)`` for each code cell's reusable pieces, without the narrative: its
    imports, functions, classes and UPPER_CASE constants. A SyntaxError names the file's
    line. Shared by lessons (tests load their pieces) and exercise copies (the checks)."""
    for cell in cells(text):
        if cell.kind != "code":
            continue
        tree = ast.parse(_padded(cell), str(path))
        kept = [
            node for node in tree.body if isinstance(node, _DEFINITION_NODES) or _is_constant(node)
        ]
        if kept:
            yield cell, compile(ast.Module(body=kept, type_ignores=[]), str(path), "exec")


def definitions(lesson: Lesson) -> types.ModuleType:
    """The lesson's reusable pieces, executed in order into a fresh module."""
    module = _module_for(lesson)
    for _, code in definition_code(lesson.path.read_text(encoding="utf-8"), lesson.path):
        exec(code, module.__dict__)  # noqa: S102 - the lesson's own code
    return module
