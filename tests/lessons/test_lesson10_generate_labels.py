"""Lesson 10: runs the generate-labels code and checks every image got its label file."""

from __future__ import annotations

import pytest
from support.synthetic import HYMENOPTERA_SMALL, install_hymenoptera
from support.tbutil import read_scalars, single_run_dir

from lab.data import DatasetMissing
from lab.lessons import lesson10_generate_labels as lesson


def test_main_labels_every_image_and_logs_counts(data_dir, runs_dir):
    install_hymenoptera(data_dir)
    run = lesson.main(["--device", "cpu"])
    assert len(run.checks) == 3
    labeled = data_dir / "hymenoptera_labeled"
    for (split, cls), count in HYMENOPTERA_SMALL.items():
        sources = sorted((data_dir / "hymenoptera_data" / split / cls).iterdir())
        assert len(sources) == count
        for source in sources:
            assert (
                labeled / split / f"{cls}_image" / source.name
            ).read_bytes() == source.read_bytes()
            label = labeled / split / f"{cls}_label" / f"{source.stem}.txt"
            assert label.read_text(encoding="utf-8").strip() == cls
    scalars = read_scalars(single_run_dir(runs_dir, "10_generate_labels"))
    assert {tag: points[0][1] for tag, points in scalars.items()} == {
        f"label_files/{split}/{cls}": float(count)
        for (split, cls), count in HYMENOPTERA_SMALL.items()
    }


def test_second_run_passes_its_idempotence_check(data_dir, runs_dir):
    install_hymenoptera(data_dir)
    lesson.main(["--device", "cpu"])
    assert "running it again writes nothing (idempotent)" in lesson.main(["--device", "cpu"]).checks


def test_the_checker_finds_a_missing_or_wrong_label(data_dir, runs_dir):
    install_hymenoptera(data_dir)
    lesson.main(["--device", "cpu"])
    images = lesson.source_images(data_dir)
    root = data_dir / "hymenoptera_labeled"
    ants = images[("train", "ants")]
    assert lesson.unlabeled(root, "train", "ants", ants) == []
    (root / "train" / "ants_label" / f"{ants[0].stem}.txt").unlink()
    (root / "train" / "ants_label" / f"{ants[1].stem}.txt").write_text("bees", encoding="utf-8")
    (root / "train" / "ants_image" / ants[2].name).unlink()
    problems = lesson.unlabeled(root, "train", "ants", ants)
    assert [problem.split(":")[0] for problem in problems] == [p.name for p in ants[:3]]


def test_missing_dataset_names_the_fetch_command(data_dir, runs_dir):
    with pytest.raises(DatasetMissing) as info:
        lesson.main(["--device", "cpu"])
    assert "invoke download-data --dataset hymenoptera" in info.value.message
