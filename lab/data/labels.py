"""Build the "image folder + label folder" layout from hymenoptera (``invoke generate-labels``).

From ``<data>/hymenoptera_data/{train,val}/{ants,bees}/*.jpg`` this makes::

    <data>/hymenoptera_labeled/train/ants_image/<name>.jpg     (hard link, else a copy)
    <data>/hymenoptera_labeled/train/ants_label/<stem>.txt     (holds the class name: "ants")

and the same for bees and for val. Every image, whatever its extension, gets a label file
named after its stem, so a reader pairs them by stem. Running it again changes nothing.
Stdlib only (host side); lesson 10 calls ``generate_labels`` to show how it is done.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

from lab.data import DatasetMissing, require_dataset
from lab.paths import data_dir as default_data_dir

LABELED_DIR = "hymenoptera_labeled"
# What PIL (and torchvision's ImageFolder) read; compared case-insensitively.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _write_atomic(path: Path, data: bytes) -> None:
    # temp file in the same folder, then rename: a crash never leaves a half-written label
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _place_image(source: Path, target: Path) -> str:
    """Hard-link (or copy) one image; returns "linked", "copied" or "unchanged"."""
    if target.exists() and (
        os.path.samefile(source, target) or filecmp.cmp(source, target, shallow=False)
    ):
        return "unchanged"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
        how = "linked"
    except OSError:  # another filesystem, or links not allowed: fall back to a copy
        shutil.copy2(source, tmp)
        how = "copied"
    os.replace(tmp, target)
    return how


def generate_labels(data_dir: Path | None = None) -> dict:
    """Make ``<data>/hymenoptera_labeled`` from ``<data>/hymenoptera_data``; idempotent.

    Returns ``{"root": Path, "counts": {split: {class: n_images}}, "linked": n, "copied": n,
    "unchanged": n, "labels_written": n}``. Raises DatasetMissing (one line naming the command
    that fetches it) when hymenoptera is not downloaded.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    source = require_dataset("hymenoptera", root)
    out = root / LABELED_DIR
    summary = {
        "root": out,
        "counts": {},
        "linked": 0,
        "copied": 0,
        "unchanged": 0,
        "labels_written": 0,
    }
    for split_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        split_counts = {}
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            cls = class_dir.name
            images = sorted(p for p in class_dir.iterdir() if is_image(p))
            image_dir = out / split_dir.name / f"{cls}_image"
            label_dir = out / split_dir.name / f"{cls}_label"
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            for image in images:
                summary[_place_image(image, image_dir / image.name)] += 1
                label = label_dir / f"{image.stem}.txt"
                if not label.exists() or label.read_text(encoding="utf-8") != cls:
                    _write_atomic(label, cls.encode("utf-8"))
                    summary["labels_written"] += 1
            split_counts[cls] = len(images)
        if split_counts:
            summary["counts"][split_dir.name] = split_counts
    return summary


def main(data_dir: Path | None = None, quiet: bool = False, as_json: bool = False) -> int:
    """``lab data labels``: one summary line (or JSON); missing dataset → one line, exit 2."""
    try:
        summary = generate_labels(data_dir)
    except DatasetMissing as exc:
        print(f"lab data labels: {exc}", file=sys.stderr)
        return 2
    if as_json:
        import json

        print(json.dumps({**summary, "root": str(summary["root"])}, indent=2))
    elif not quiet:
        total = sum(sum(c.values()) for c in summary["counts"].values())
        per = ", ".join(
            f"{split}/{cls} {n}"
            for split, classes in summary["counts"].items()
            for cls, n in classes.items()
        )
        print(
            f"labeled {total} images in {summary['root']} ({per}); "
            f"{summary['linked']} linked, {summary['copied']} copied, "
            f"{summary['unchanged']} already there, {summary['labels_written']} labels written"
        )
    return 0
