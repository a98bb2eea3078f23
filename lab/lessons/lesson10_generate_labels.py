# %% [markdown]
# # 10 · Generating label folders: one label file per image
#
# Lesson 09's Dataset reads an "image folder + label folder" layout, where the label of
# `train/ants_image/0013035.jpg` is the text in `train/ants_label/0013035.txt` ("ants"). The
# hymenoptera download is laid out the ImageFolder way instead — the class is the folder name:
#
# ```
# hymenoptera_data/train/ants/0013035.jpg        hymenoptera_labeled/train/ants_image/0013035.jpg
# hymenoptera_data/train/bees/...          ──►   hymenoptera_labeled/train/ants_label/0013035.txt
# hymenoptera_data/val/...                       hymenoptera_labeled/train/bees_image/... (and val)
# ```
#
# `lab.data.labels.generate_labels` builds the right-hand side — the very function behind
# `invoke generate-labels`. Images are hard-linked (copied where links are impossible), each
# label file is written to a temporary name and renamed, so an interrupted run never leaves a
# half-written label, and running it again changes nothing. This lesson runs it and checks
# the result file by file.

# %%
from __future__ import annotations

from pathlib import Path

from lab.data import require_dataset
from lab.data.labels import LABELED_DIR, generate_labels, is_image
from lab.lessons.harness import LessonRun, lesson_parser, run_main

# %% [markdown]
# ## Which images need a label?
#
# Every image in `hymenoptera_data/<split>/<class>/`, whatever its extension.


# %%
def source_images(data_dir: Path | None = None) -> dict[tuple[str, str], list[Path]]:
    """``{(split, class): [image, ...]}`` as downloaded."""
    source = require_dataset("hymenoptera", data_dir)
    return {
        (split.name, cls.name): sorted(p for p in cls.iterdir() if is_image(p))
        for split in sorted(source.iterdir())
        if split.is_dir()
        for cls in sorted(split.iterdir())
        if cls.is_dir()
    }


# %% [markdown]
# ## Checking the result, file by file


# %%
def unlabeled(labeled_root: Path, split: str, cls: str, images: list[Path]) -> list[str]:
    """Images of (split, cls) that lack an image copy or a label file saying `cls`."""
    image_dir = labeled_root / split / f"{cls}_image"
    label_dir = labeled_root / split / f"{cls}_label"
    problems = []
    for image in images:
        label = label_dir / f"{image.stem}.txt"
        if not (image_dir / image.name).is_file():
            problems.append(f"{image.name}: no image in {image_dir.name}")
        elif not label.is_file() or label.read_text(encoding="utf-8").strip() != cls:
            problems.append(f"{image.name}: no label file saying {cls!r}")
    return problems


# %% [markdown]
# ## The whole lesson


# %%
def run_lesson(run: LessonRun) -> None:
    images = source_images(run.args.data_dir)
    summary = generate_labels(run.args.data_dir)
    labeled_root = summary["root"]
    print(f"labeled layout in {labeled_root}:")
    for split, cls in images:
        counted = summary["counts"].get(split, {}).get(cls)
        on_disk = len(list((labeled_root / split / f"{cls}_label").glob("*.txt")))
        print(f"  {split}/{cls}: {counted} images, {on_disk} label files")
        run.writer.add_scalar(f"label_files/{split}/{cls}", on_disk, 0)
    run.check(
        labeled_root.name == LABELED_DIR
        and all(
            summary["counts"].get(split, {}).get(cls) == len(files)
            for (split, cls), files in images.items()
        ),
        "every split/class is counted with as many images as were downloaded",
    )
    problems = [
        problem
        for (split, cls), files in images.items()
        for problem in unlabeled(labeled_root, split, cls, files)
    ]
    for problem in problems[:5]:
        print(f"  ✗ {problem}")
    run.check(not problems, "every image has its copy and a label file holding its class name")

    again = generate_labels(run.args.data_dir)
    total = sum(len(files) for files in images.values())
    run.check(
        again["labels_written"] == 0 and again["unchanged"] == total,
        "running it again writes nothing (idempotent)",
    )
    for (split, cls), files in images.items():
        if files:
            image = files[0]
            run.writer.add_text(
                "labels/example",
                f"`{split}/{cls}_label/{image.stem}.txt` "
                f"holds `{cls}`, the label of `{split}/{cls}_image/{image.name}`",
            )
            break


def build_parser():
    return lesson_parser("Generating label folders: one label file per image", data=True)


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("10_generate_labels", run_lesson, argv, build_parser())


# %%
if __name__ == "__main__":
    main()
