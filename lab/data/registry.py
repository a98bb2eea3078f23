"""The dataset registry: ``registry.toml`` (or ``--registry FILE``) read into plain dataclasses.

Datasets are data, not code: mirrors, sizes, checksums and how each file lands on disk.
A malformed registry raises RegistryError with one line naming the file and the entry.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from lab.data.hashing import parse_digests

DEFAULT_REGISTRY = Path(__file__).with_name("registry.toml")
UNPACK_KINDS = ("none", "gunzip", "extract")


class RegistryError(ValueError):
    """The registry file is missing or malformed (one line, says where)."""


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = 30.0  # seconds of silence before a connection is abandoned and retried
    retries: int = 4  # per request, after the first attempt
    backoff: float = 0.5  # seconds before the first retry; doubles each time


@dataclass(frozen=True)
class FileSpec:
    dataset: str
    name: str
    urls: tuple[str, ...]  # mirrors in order, already joined with the file name
    to: str = ""  # folder under the data dir where the downloaded file is kept
    size: int | None = None
    # published checksums: one field per hashing.ALGORITHMS entry
    md5: str | None = None
    sha256: str | None = None
    unpack: str = "none"

    @property
    def relpath(self) -> str:
        return str(PurePosixPath(self.to) / self.name) if self.to else self.name

    @property
    def key(self) -> str:  # manifest key
        return f"{self.dataset}/{self.name}"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    dir: str  # folder under the data dir that holds the dataset
    files: tuple[FileSpec, ...]
    layout: dict = field(default_factory=dict)  # folder -> count or list of names


@dataclass(frozen=True)
class Registry:
    path: Path
    fetch: FetchSettings
    datasets: dict[str, DatasetSpec]


def _safe_relative(value: str, where: str) -> str:
    # registry paths are joined onto the data dir: never let one escape it
    parts = PurePosixPath(value).parts
    if value.startswith(("/", "\\")) or ".." in parts:
        raise RegistryError(f"{where}: path {value!r} must stay inside the data dir")
    return value


def _string_list(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RegistryError(f"{where}: expected a list of URLs")
    return tuple(value)


def _file(dataset: str, mirrors: tuple[str, ...], raw: dict, where: str) -> FileSpec:
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise RegistryError(f"{where}: every file needs a name")
    name = _safe_relative(raw["name"], where)
    if "/" in name:
        raise RegistryError(f"{where}: file name {name!r} must not contain '/' (use `to`)")
    urls = (
        _string_list(raw["urls"], where)
        if "urls" in raw
        else tuple(m if m.endswith(name) else m.rstrip("/") + "/" + name for m in mirrors)
    )
    if not urls:
        raise RegistryError(f"{where}: no mirrors for {name!r}")
    unpack = raw.get("unpack", "none")
    if unpack not in UNPACK_KINDS:
        raise RegistryError(f"{where}: unpack must be one of {', '.join(UNPACK_KINDS)}")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise RegistryError(f"{where}: size must be a whole number of bytes")
    try:
        sums = parse_digests(raw, where)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    return FileSpec(
        dataset=dataset,
        name=name,
        urls=urls,
        to=_safe_relative(str(raw.get("to", "")), where),
        size=size,
        unpack=unpack,
        **sums,
    )


def _layout(raw, where: str) -> dict:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: layout must be a table of folder = count or [names]")
    for folder, expected in raw.items():
        _safe_relative(folder, where)
        ok = (isinstance(expected, int) and expected >= 0) or (
            isinstance(expected, list) and all(isinstance(n, str) for n in expected)
        )
        if not ok:
            raise RegistryError(f"{where}: layout {folder!r} must be a count or a list of names")
    return dict(raw)


def _dataset(name: str, raw: dict, where: str) -> DatasetSpec:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: must be a table")
    mirrors = _string_list(raw.get("mirrors", []), where)
    files = raw.get("files")
    if not isinstance(files, list) or not files:
        raise RegistryError(f"{where}: needs at least one [[datasets.{name}.files]] entry")
    specs = tuple(_file(name, mirrors, f, f"{where}.files[{i}]") for i, f in enumerate(files))
    folder = raw.get("dir")
    if not isinstance(folder, str) or not folder:
        raise RegistryError(f"{where}: needs `dir`, the folder the dataset lands in")
    return DatasetSpec(
        name=name,
        dir=_safe_relative(folder, where),
        files=specs,
        layout=_layout(raw.get("layout", {}), f"{where}.layout"),
    )


def load(path: Path | str | None = None) -> Registry:
    """Read and check a registry file (default: the one shipped in this package)."""
    path = Path(path) if path is not None else DEFAULT_REGISTRY
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"registry {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"registry {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"registry {path} is not valid TOML: {exc}") from None
    datasets = raw.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        raise RegistryError(f"registry {path}: no [datasets.NAME] tables")
    fetch_raw = raw.get("fetch", {})
    try:
        fetch = FetchSettings(
            **{k: type(getattr(FetchSettings, k))(v) for k, v in fetch_raw.items()}
        )
    except (TypeError, ValueError, AttributeError):
        raise RegistryError(f"registry {path}: [fetch] takes timeout, retries, backoff") from None
    specs = {
        name: _dataset(name, body, f"registry {path}: datasets.{name}")
        for name, body in datasets.items()
    }
    return Registry(path=path, fetch=fetch, datasets=specs)


def default_dataset_dirs() -> dict[str, str]:
    """dataset -> folder, from the shipped registry (what lab.data.DATASET_DIRS holds)."""
    return {name: spec.dir for name, spec in load().datasets.items()}


def dataset_choices() -> str:
    """``mnist|cifar10|hymenoptera|all``: the shipped registry's names, for help texts."""
    return "|".join([*load().datasets, "all"])
