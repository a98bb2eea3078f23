"""Datasets: where each one lands under the data dir, and a one-line error when it is missing.

Stdlib only (host side). The download machinery lives in the submodules.
"""

from __future__ import annotations

from pathlib import Path

from lab.data.registry import default_dataset_dirs
from lab.errors import LabError
from lab.paths import data_dir as default_data_dir

# dataset -> folder under the data dir that proves it is there (from registry.toml), e.g.
# {"mnist": "MNIST/raw", "cifar10": "cifar-10-batches-py", "hymenoptera": "hymenoptera_data"}
DATASET_DIRS = default_dataset_dirs()


class DatasetMissing(LabError):
    """Raised by lessons and tasks that need a dataset which is not downloaded yet."""

    def __init__(self, name: str, where: Path) -> None:
        self.dataset = name
        super().__init__(
            f"dataset {name!r} is missing (looked in {where}); "
            f"fetch it with `invoke download-data --dataset {name}` "
            f"(or `python -m lab data download --dataset {name}`)"
        )


def require_dataset(name: str, data_dir: Path | None = None) -> Path:
    """The dataset's folder under the data dir, or DatasetMissing when it is absent/empty."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    where = root / DATASET_DIRS[name]
    if not where.is_dir() or not any(where.iterdir()):
        raise DatasetMissing(name, where)
    return where
