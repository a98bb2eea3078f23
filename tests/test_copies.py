"""The learner's copies of the course in work/: made once, following the course while untouched,
never overwritten once edited, and what `lab lesson` runs when the learner edited one."""

from __future__ import annotations

import shutil
import threading

import pytest

import lab.course
from lab import copies
from lab.cli import main
from lab.course import all_lessons, find


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A scratch copy of two lessons of the course (07 has exercises, 00 has none), so a test
    can change "the course" the way a `git pull` would."""
    root = tmp_path / "course"
    for number in ("00", "07"):
        shutil.copytree(find(number).folder, root / find(number).run_name)
    monkeypatch.setattr(lab.course, "COURSE_DIR", root)
    return root


def lab_cli(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_sync_makes_every_copy_once(course, _work_dir, capsys):
    status, out, _ = lab_cli(capsys, "course", "sync")
    assert status == 0
    made = sorted(p.relative_to(_work_dir).as_posix() for p in _work_dir.glob("*/*.py"))
    assert made == [
        "00_interactive_playground/lesson.py",
        "07_custom_autograd_function/exercises.py",
        "07_custom_autograd_function/lesson.py",
    ]
    for path in made:
        assert (_work_dir / path).read_bytes() == (course / path).read_bytes()
    assert "07_custom_autograd_function/lesson.py: made" in out
    assert [what for _, what in copies.sync()] == [copies.SAME] * 3


def test_an_untouched_copy_follows_the_course_and_an_edited_one_is_kept(course, _work_dir, capsys):
    copies.sync()
    lesson = course / "07_custom_autograd_function" / "lesson.py"
    exercises = course / "07_custom_autograd_function" / "exercises.py"
    mine = _work_dir / "07_custom_autograd_function" / "exercises.py"
    mine.write_text(mine.read_text(encoding="utf-8") + "\n# my answer\n", encoding="utf-8")
    lesson.write_text(lesson.read_text(encoding="utf-8") + "\n# a teacher's fix\n")
    exercises.write_text(exercises.read_text(encoding="utf-8") + "\n# a new hint\n")

    status, out, _ = lab_cli(capsys, "course", "sync", "--quiet")
    assert status == 0
    copy_of_lesson = _work_dir / "07_custom_autograd_function" / "lesson.py"
    assert copy_of_lesson.read_bytes() == lesson.read_bytes()  # untouched: updated
    assert mine.read_text(encoding="utf-8").endswith("# my answer\n")  # edited: kept
    assert out.strip() == (
        "07_custom_autograd_function/exercises.py: kept your edited copy; the course has a "
        "newer version (`lab course reset 07` takes it, keeping yours beside it)"
    )


def test_reset_takes_the_course_and_keeps_the_learners_version_beside_it(course, _work_dir, capsys):
    copies.sync()
    mine = _work_dir / "07_custom_autograd_function" / "lesson.py"
    mine.write_text("# my own lesson\n", encoding="utf-8")
    status, out, _ = lab_cli(capsys, "course", "reset", "07")
    assert status == 0
    (kept,) = mine.parent.glob("lesson.mine-*.py")
    assert kept.read_text(encoding="utf-8") == "# my own lesson\n"
    assert mine.read_bytes() == (course / "07_custom_autograd_function" / "lesson.py").read_bytes()
    assert f"(your version: {kept.name})" in out


def test_a_deleted_copy_comes_back_fresh(course, _work_dir):
    copies.sync()
    mine = _work_dir / "00_interactive_playground" / "lesson.py"
    mine.unlink()
    assert dict((c.key, what) for c, what in copies.sync())[
        "00_interactive_playground/lesson.py"
    ] == (copies.MADE)
    assert mine.exists()


def test_an_exercise_copy_from_before_lesson_folders_is_moved_not_replaced(course, _work_dir):
    old = _work_dir / "exercises" / "exercise07_custom_autograd_function.py"
    old.parent.mkdir(parents=True)
    old.write_text("# answers written before the update\n", encoding="utf-8")
    copies.sync()
    new = _work_dir / "07_custom_autograd_function" / "exercises.py"
    assert new.read_text(encoding="utf-8") == "# answers written before the update\n"
    assert not old.exists()


def test_a_folder_where_a_copy_belongs_is_one_line(course, _work_dir, capsys):
    (_work_dir / "07_custom_autograd_function" / "lesson.py").mkdir(parents=True)
    status, _, err = lab_cli(capsys, "course", "sync")
    assert status == 2
    assert "is a folder where your copy should be" in err and "\n" not in err.strip()


def test_two_syncs_at_once_make_each_copy_once(course, _work_dir):
    results = []
    threads = [threading.Thread(target=lambda: results.append(copies.sync())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = [c.key for run in results for c, what in run if what == copies.MADE]
    assert sorted(made) == sorted({c.key for run in results for c, _ in run})
    assert not list(_work_dir.rglob("*.tmp"))


def test_lab_lesson_runs_the_learners_edited_copy_unless_original(_work_dir, capsys, runs_dir):
    lesson = find("00")
    copy = _work_dir / lesson.run_name / "lesson.py"
    copy.parent.mkdir(parents=True)
    text = lesson.path.read_text(encoding="utf-8")
    setting = next(line for line in text.splitlines() if line.startswith("X0 ="))
    copy.write_text(text.replace(setting, "X0 = 1.25  # edited by the learner"), "utf-8")

    with pytest.raises(SystemExit):
        main(["lesson", "00", "--help"])
    out, err = capsys.readouterr()
    assert "edited by the learner (default: 1.25)" in out
    assert f"running your edited copy {copy}" in err
    with pytest.raises(SystemExit):
        main(["lesson", "00", "--original", "--help"])
    out, err = capsys.readouterr()
    assert "edited by the learner" not in out and "running your edited copy" not in err


def test_every_lesson_of_the_course_has_copies_to_make():
    keys = [c.key for lesson in all_lessons() for c in copies.copies_of(lesson)]
    assert "07_custom_autograd_function/exercises.py" in keys
    assert all(key.endswith(("/lesson.py", "/exercises.py")) for key in keys)
