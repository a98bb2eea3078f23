"""Lesson 10: runs the generate-labels code and checks every image got its label file, with
PIL (not the extension list generate_labels uses) deciding what an image is."""

from __future__ import annotations

import pytest
from PIL import Image
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.synthetic import HYMENOPTERA_SMALL, install_hymenoptera
from support.tbutil import read_scalars, single_run_dir

import lab.data.labels as labels

lesson = definitions("10")

FIRST_RUN = "summary = generate_labels(lesson.data_dir)\n"
SECOND_RUN = "again = generate_labels(lesson.data_dir)\n"
MUTATIONS = [
    ('/ f"{cls}_label" / f"{image.stem}.txt"', '/ f"{cls}_label" / f"{image.name}.txt"'),
    ("if opens_as_image(p))", 'if p.suffix == ".jpg")'),
    ("(image_dir / image.name).is_file()", "(image_dir / image.stem).is_file()"),
    # what a faulty generator could leave, injected after the lesson's own run of it:
    (  # a half-written label left behind (no write-then-rename)
        FIRST_RUN,
        FIRST_RUN + '(summary["root"] / "train" / "ants_label" / ".x.txt.tmp").write_text("an")\n',
    ),
    (  # an image "copy" that is another picture under the right name
        FIRST_RUN,
        FIRST_RUN + 'victim = sorted((summary["root"] / "val" / "bees_image").iterdir())[0]\n'
        'victim.unlink()\nvictim.write_bytes(b"another picture")\n',
    ),
    (  # a second run that rewrites a label without saying so
        SECOND_RUN,
        SECOND_RUN + 'sorted((labeled_root / "val" / "ants_label").iterdir())[0]'
        '.write_text("ants\\n")\n',
    ),
]
MUTATION_IDS = ["name-not-stem", "jpg-only", "no-copy", "temp-left", "wrong-copy", "rewrites"]


def install_with_odd_images(data_dir):
    """The synthetic download plus what the real one has: a .gif, and a .jpeg, and a stray
    .DS_Store (not an image: it needs no label)."""
    source = install_hymenoptera(data_dir)
    Image.new("RGB", (20, 16), (200, 30, 30)).save(source / "train" / "ants" / "imageNotFound.gif")
    Image.new("RGB", (24, 18), (30, 200, 30)).save(source / "val" / "bees" / "bee_x.jpeg")
    (source / "train" / "bees" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0")
    return source


def test_pil_decides_what_an_image_is(data_dir):
    source = install_with_odd_images(data_dir)
    found = lesson.source_images(source)
    assert {key: len(files) for key, files in found.items()} == {
        **HYMENOPTERA_SMALL,
        ("train", "ants"): HYMENOPTERA_SMALL[("train", "ants")] + 1,
        ("val", "bees"): HYMENOPTERA_SMALL[("val", "bees")] + 1,
    }
    assert not lesson.opens_as_image(source / "train" / "bees" / ".DS_Store")
    (source / "fake.jpg").write_text("not a jpeg", encoding="utf-8")
    assert not lesson.opens_as_image(source / "fake.jpg")


def test_cells_label_every_image_and_log_counts(data_dir, runs_dir):
    source = install_with_odd_images(data_dir)
    ns = run_lesson("10", "--show", "2")
    assert len(ns.lesson.checks) == 5 and ns.lesson.figures == ["labeled_examples"]
    assert len(ns.shown) == 4  # two per training class: the setting took effect
    labeled = data_dir / "hymenoptera_labeled"
    for split, cls in HYMENOPTERA_SMALL:
        for image in (source / split / cls).iterdir():
            label = labeled / split / f"{cls}_label" / f"{image.stem}.txt"
            if image.name == ".DS_Store":
                assert not label.exists()
                continue
            copy = labeled / split / f"{cls}_image" / image.name
            assert copy.read_bytes() == image.read_bytes()
            assert label.read_text(encoding="utf-8").strip() == cls
    scalars = read_scalars(single_run_dir(runs_dir, "10_generate_labels"))
    extra = {("train", "ants"): 1, ("val", "bees"): 1}
    assert {tag: points[0][1] for tag, points in scalars.items()} == {
        f"label_files/{split}/{cls}": float(count + extra.get((split, cls), 0))
        for (split, cls), count in HYMENOPTERA_SMALL.items()
    }


def test_second_run_passes_its_idempotence_check(data_dir, runs_dir):
    install_hymenoptera(data_dir)
    run_lesson("10")
    again = run_lesson("10").lesson.checks
    assert "running it again leaves every file as it was (idempotent)" in again


def test_the_checker_finds_a_missing_or_wrong_label(data_dir):
    source = install_hymenoptera(data_dir)
    labels.generate_labels(data_dir)
    root = data_dir / "hymenoptera_labeled"
    ants = lesson.source_images(source)[("train", "ants")]
    assert lesson.unlabeled(root, "train", "ants", ants) == []
    (root / "train" / "ants_label" / f"{ants[0].stem}.txt").unlink()
    (root / "train" / "ants_label" / f"{ants[1].stem}.txt").write_text("bees", encoding="utf-8")
    (root / "train" / "ants_image" / ants[2].name).unlink()
    copy = root / "train" / "ants_image" / ants[3].name
    copy.unlink()  # a hard link: replace the link, not the downloaded image
    copy.write_bytes(ants[4].read_bytes())  # the right name, another picture
    problems = lesson.unlabeled(root, "train", "ants", ants)
    assert [problem.split(":")[0] for problem in problems] == [p.name for p in ants[:4]]
    assert "another picture" in problems[3]


def test_the_checker_finds_files_no_image_accounts_for(data_dir):
    source = install_hymenoptera(data_dir)
    labels.generate_labels(data_dir)
    root = data_dir / "hymenoptera_labeled"
    bees = lesson.source_images(source)[("val", "bees")]
    assert lesson.unexpected(root, "val", "bees", bees) == []
    (root / "val" / "bees_label" / ".bee_000.txt.tmp").write_text("be", encoding="utf-8")
    (root / "val" / "bees_image" / "notes.txt").write_text("hi", encoding="utf-8")
    assert lesson.unexpected(root, "val", "bees", bees) == [
        "bees_image/notes.txt",
        "bees_label/.bee_000.txt.tmp",
    ]
    assert lesson.unexpected(root, "val", "bees", bees[1:]) == [  # folders in name order
        f"bees_image/{bees[0].name}",
        "bees_image/notes.txt",
        "bees_label/.bee_000.txt.tmp",
        f"bees_label/{bees[0].stem}.txt",
    ]


@pytest.mark.parametrize("dropped", [".gif", ".jpeg"])
def test_an_extension_list_that_forgets_one_fails_the_lesson(
    data_dir, runs_dir, monkeypatch, dropped
):
    """generate_labels filters by extension; the lesson's PIL count must notice a gap."""
    install_with_odd_images(data_dir)
    monkeypatch.setattr(labels, "IMAGE_EXTENSIONS", labels.IMAGE_EXTENSIONS - {dropped})
    with pytest.raises(AssertionError, match="as many images as PIL finds"):
        run_lesson("10")


@pytest.mark.parametrize(("old", "new"), MUTATIONS, ids=MUTATION_IDS)
def test_a_broken_lesson_fails_its_own_checks(data_dir, runs_dir, old, new):
    install_with_odd_images(data_dir)
    assert_mutation_caught("10", old, new)
