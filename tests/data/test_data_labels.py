"""`lab data labels` (invoke generate-labels): image folders + label folders from hymenoptera."""

from __future__ import annotations

import json
import os

import pytest
from support import synthetic
from support.dl_support import lab_data

from lab.data import DatasetMissing
from lab.data.labels import LABELED_DIR, generate_labels


def test_every_image_gets_a_label_holding_its_class(data_dir):
    synthetic.install_hymenoptera(data_dir)

    summary = generate_labels(data_dir)

    out = data_dir / LABELED_DIR
    assert summary["root"] == out
    assert summary["counts"] == {
        split: {cls: n for (s, cls), n in synthetic.HYMENOPTERA_SMALL.items() if s == split}
        for split in ("train", "val")
    }
    for (split, cls), count in synthetic.HYMENOPTERA_SMALL.items():
        images = sorted((out / split / f"{cls}_image").iterdir())
        labels = sorted((out / split / f"{cls}_label").iterdir())
        assert len(images) == len(labels) == count
        assert [p.stem for p in images] == [p.stem for p in labels]
        assert {p.read_text() for p in labels} == {cls}
        source = data_dir / "hymenoptera_data" / split / cls / images[0].name
        assert images[0].read_bytes() == source.read_bytes()
        assert os.path.samefile(images[0], source)  # a hard link: no second copy on disk


def test_second_run_changes_nothing(data_dir):
    synthetic.install_hymenoptera(data_dir)
    first = generate_labels(data_dir)
    before = {p: p.stat().st_mtime_ns for p in (data_dir / LABELED_DIR).rglob("*")}

    again = generate_labels(data_dir)

    assert again["counts"] == first["counts"]
    assert again["labels_written"] == again["linked"] == again["copied"] == 0
    assert {p: p.stat().st_mtime_ns for p in (data_dir / LABELED_DIR).rglob("*")} == before


def test_any_image_extension_gets_a_label(data_dir):
    synthetic.install_hymenoptera(data_dir)
    ants = data_dir / "hymenoptera_data" / "train" / "ants"
    (ants / "odd_one.PNG").write_bytes((ants / "ants_000.jpg").read_bytes())
    (ants / "other.jpeg").write_bytes((ants / "ants_001.jpg").read_bytes())
    (ants / "notes.txt").write_text("not an image")

    summary = generate_labels(data_dir)

    out = data_dir / LABELED_DIR / "train"
    assert summary["counts"]["train"]["ants"] == synthetic.HYMENOPTERA_SMALL[("train", "ants")] + 2
    assert (out / "ants_image" / "odd_one.PNG").is_file()
    assert (out / "ants_label" / "odd_one.txt").read_text() == "ants"
    assert (out / "ants_label" / "other.txt").read_text() == "ants"
    assert not (out / "ants_image" / "notes.txt").exists()


def test_a_damaged_label_is_rewritten(data_dir):
    synthetic.install_hymenoptera(data_dir)
    generate_labels(data_dir)
    label = data_dir / LABELED_DIR / "val" / "bees_label" / "bees_000.txt"
    label.write_text("ants")

    summary = generate_labels(data_dir)

    assert summary["labels_written"] == 1
    assert label.read_text() == "bees"


def test_missing_dataset_names_the_command(data_dir):
    with pytest.raises(DatasetMissing) as caught:
        generate_labels(data_dir)
    assert "invoke download-data --dataset hymenoptera" in str(caught.value)

    result = lab_data("labels", "--data-dir", str(data_dir))

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "download-data --dataset hymenoptera" in result.stderr
    assert not (data_dir / LABELED_DIR).exists()


def test_cli_json(data_dir):
    synthetic.install_hymenoptera(data_dir)

    result = lab_data("labels", "--json")  # data dir from LAB_DATA_DIR

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["root"] == str(data_dir / LABELED_DIR)
    assert summary["counts"]["train"]["bees"] == synthetic.HYMENOPTERA_SMALL[("train", "bees")]
