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
# half-written label, and running it again changes nothing. We run it and check the result
# file by file.

# %% tags=["parameters"]
SHOW = 4  # example images shown per class

# %%
import hashlib
import os
from collections import Counter
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from lab.data.labels import LABELED_DIR, generate_labels
from lab.lessons.harness import check, open_lesson, show
from lab.lessons.imaging import image_grid, load_rgb

lesson = open_lesson(datasets=("hymenoptera",))
device = lesson.device

# %% [markdown]
# ## Which files need a label?
#
# Every *image* in `hymenoptera_data/<split>/<class>/`. `generate_labels` decides by file
# extension. To check it we must not ask the same question the same way, so here the judge
# is PIL itself: a file is an image if PIL can open it. The real download has 397 `.jpg`
# files and one `.gif` (`imageNotFound.gif`): an extension list that forgets `.gif` (or
# `.jpeg`) would silently leave an image unlabeled — this check would see it.


# %%
def opens_as_image(path: Path) -> bool:
    """PIL recognises the file's content (the extension plays no part)."""
    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError):
        return False


def source_images(source: Path) -> dict[tuple[str, str], list[Path]]:
    """``{(split, class): [image, ...]}`` as downloaded, images judged by PIL."""
    return {
        (split.name, cls.name): sorted(p for p in cls.iterdir() if opens_as_image(p))
        for split in sorted(source.iterdir())
        if split.is_dir()
        for cls in sorted(split.iterdir())
        if cls.is_dir()
    }


images = source_images(lesson.data_dir / "hymenoptera_data")
extensions = Counter(p.suffix.lower() for files in images.values() for p in files)
for (split, cls), files in images.items():
    print(f"{split}/{cls}: {len(files)} images")
print("by extension:", dict(extensions))

# %% [markdown]
# ## Make the labeled layout
#
# `generate_labels` returns a summary: the counts per split and class, and how many images
# were linked, copied or already there, and how many label files it wrote.

# %%
summary = generate_labels(lesson.data_dir)
labeled_root = summary["root"]
print(f"labeled layout in {labeled_root}")
print({key: value for key, value in summary.items() if key not in ("root", "counts")})
check(
    labeled_root.name == LABELED_DIR
    and all(
        summary["counts"].get(split, {}).get(cls) == len(files)
        for (split, cls), files in images.items()
    ),
    "every split/class is counted with as many images as PIL finds in the download",
)

# %% [markdown]
# ## Checking the result, file by file
#
# A label file is named after the image's *stem* (`0013035.jpg` → `0013035.txt`), so any
# extension pairs up; it must hold the class name. The image in `<cls>_image/` must be the
# downloaded one: the same file (a hard link) or a byte-for-byte copy — a file of that name
# is not enough.


# %%
def read_label(labeled_root: Path, split: str, cls: str, image: Path) -> str | None:
    """The text of the image's label file, or None when there is none."""
    label = labeled_root / split / f"{cls}_label" / f"{image.stem}.txt"
    return label.read_text(encoding="utf-8").strip() if label.is_file() else None


def unlabeled(labeled_root: Path, split: str, cls: str, images: list[Path]) -> list[str]:
    """Images of (split, cls) that lack an image copy or a label file saying `cls`."""
    image_dir = labeled_root / split / f"{cls}_image"
    problems = []
    for image in images:
        if not (image_dir / image.name).is_file():
            problems.append(f"{image.name}: no image in {image_dir.name}")
        elif (image_dir / image.name).read_bytes() != image.read_bytes():
            problems.append(f"{image.name}: the one in {image_dir.name} is another picture")
        elif read_label(labeled_root, split, cls, image) != cls:
            problems.append(f"{image.name}: no label file saying {cls!r}")
    return problems


problems = [
    problem
    for (split, cls), files in images.items()
    for problem in unlabeled(labeled_root, split, cls, files)
]
for (split, cls), files in images.items():
    on_disk = len(list((labeled_root / split / f"{cls}_label").glob("*.txt")))
    print(f"  {split}/{cls}: {len(files)} images, {on_disk} label files")
    lesson.writer.add_scalar(f"label_files/{split}/{cls}", on_disk, 0)
for problem in problems[:5]:
    print(f"  ✗ {problem}")
check(not problems, "every image has its copy and a label file holding its class name")
links = sum(
    os.path.samefile(image, labeled_root / split / f"{cls}_image" / image.name)
    for (split, cls), files in images.items()
    for image in files
)
print(f"{links} of {sum(len(files) for files in images.values())} images are hard links")

# %% [markdown]
# And nothing else: a label folder holds one `<stem>.txt` per image, an image folder the
# images — no label for a file that is not an image, no half-written temporary file.


# %%
def unexpected(labeled_root: Path, split: str, cls: str, images: list[Path]) -> list[str]:
    """Files in the (split, cls) folders that no image of the download accounts for."""
    wanted = {
        f"{cls}_image": {image.name for image in images},
        f"{cls}_label": {f"{image.stem}.txt" for image in images},
    }
    return [
        f"{folder}/{path.name}"
        for folder, names in wanted.items()
        for path in sorted((labeled_root / split / folder).iterdir())
        if path.name not in names
    ]


extra = [
    found
    for (split, cls), files in images.items()
    for found in unexpected(labeled_root, split, cls, files)
]
print(f"files no image accounts for: {extra[:5]}")
check(not extra, "the labeled folders hold those files and nothing else")

# %% [markdown]
# ## Look at a few: each image with the text of its label file

# %%
shown, titles = [], []
for (split, cls), files in images.items():
    if split == "train":
        for image in files[:SHOW]:
            shown.append(load_rgb(labeled_root / split / f"{cls}_image" / image.name))
            titles.append(f"{image.stem[:10]}: {read_label(labeled_root, split, cls, image)}")
show(image_grid(shown, titles, ncols=max(1, SHOW)), "labeled_examples")

# %% [markdown]
# ## Running it again changes nothing
#
# Idempotent: every image is already in place and every label already says the right thing.
# The summary says so; we do not take its word for it: every file of the labeled layout is
# fingerprinted before and after — which file it is (inode), when it was last written, what
# it holds.


# %%
def fingerprint(root: Path) -> dict[str, tuple]:
    """``{path: (inode, modified ns, sha256)}`` for every file under ``root``."""
    return {
        str(path.relative_to(root)): (
            path.stat().st_ino,
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


before = fingerprint(labeled_root)
again = generate_labels(lesson.data_dir)
after = fingerprint(labeled_root)
total = sum(len(files) for files in images.values())
print({key: value for key, value in again.items() if key not in ("root", "counts")})
changed = sorted(
    path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
)
print(f"{len(before)} files before, {len(after)} after; changed: {changed[:5]}")
check(
    again["labels_written"] == 0 and again["unchanged"] == total,
    "running it again reports nothing written",
)
check(not changed, "running it again leaves every file as it was (idempotent)")

# %%
lesson.done()
