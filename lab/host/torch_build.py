"""Which CUDA build of torch the lab image gets, and whether the host's driver runs it.

The torch pin has one source, docker/lab/requirements-torch.txt (what the image installs;
tests/test_packaging.py keeps pyproject's ``lab`` extra in step); ``TORCH_INDEX_URL`` (the
environment, then ``.env``, as Compose reads it) picks another build of the same version.

Drivers: CUDA minor-version compatibility lets every CUDA 12.x build run on a driver >=
525.60.13 and every 13.x build on >= 580 (NVIDIA's CUDA compatibility guide), so the cu126
wheel runs on R535/R550/R570; the default cu130 wheel and cu132 need R580.

macOS: the lab's Linux VM on a Mac has no NVIDIA GPU, and PyPI's aarch64 Linux torch is a CUDA
13 build (3 GB of CUDA libraries); without a ``TORCH_INDEX_URL`` of its own, a Mac gets the
CPU build (``invoke up`` passes it; README and .env.example say it for plain Compose).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lab.host import compose, version_tuple

REQUIREMENTS = compose.PROJECT_DIR / "docker" / "lab" / "requirements-torch.txt"
TORCH_INDEX = "https://download.pytorch.org/whl/"
# the CUDA that PyPI's Linux wheels of a torch release are built with
PYPI_TORCH_CUDA = {"2.14": "13.0"}
DRIVER_FLOOR = {12: (525, 60, 13), 13: (580, 0, 0)}  # per CUDA major, minor-version compat
# PyTorch's CUDA builds of the pinned release, newest first (torch 2.12 dropped cu128;
# 2.14 publishes cu126, cu130 and cu132: https://download.pytorch.org/whl/torch/)
CUDA_BUILDS = (("13.2", "cu132"), ("13.0", "cu130"), ("12.6", "cu126"))
CPU_INDEX = TORCH_INDEX + "cpu"
MAC_HINT = (
    f"for plain `docker compose up` on a Mac, put {compose.CPU_COMPOSE_FILE} and "
    f"TORCH_INDEX_URL={CPU_INDEX} in .env"
)
OK, WARN, FAIL = "ok", "warn", "fail"


def torch_pin(requirements: Path = REQUIREMENTS) -> str | None:
    """``2.14.1``: from the image's requirements, else the installed package's metadata."""
    pattern = re.compile(r"^torch==([\w.+]+)", re.M)
    try:
        found = pattern.search(requirements.read_text())
    except OSError:
        found = None
    if found is None:
        try:
            requires = metadata.requires("autograd-lab") or []
        except metadata.PackageNotFoundError:
            requires = []
        found = next(filter(None, (pattern.search(r) for r in requires)), None)
    return found.group(1) if found else None


@dataclass(frozen=True)
class TorchBuild:
    cuda: str | None  # "13.0"; None: CPU-only, or unknown when ``known`` is False
    label: str  # for people: "torch 2.14.1 CUDA 13.0 build (PyPI default)"
    known: bool = True


def image_torch(environ=None, env_file=None, macos: bool = False) -> TorchBuild:
    pin = torch_pin() or "?"
    url = compose.env_setting("TORCH_INDEX_URL", environ, env_file)
    if not url and macos:
        return TorchBuild(None, f"torch {pin} CPU-only build (chosen for macOS)")
    if not url:
        cuda = PYPI_TORCH_CUDA.get(".".join(pin.split(".")[:2]))
        if cuda is None:
            return TorchBuild(None, f"torch {pin} from PyPI (CUDA build unknown here)", False)
        return TorchBuild(cuda, f"torch {pin} CUDA {cuda} build (PyPI default)")
    if re.search(r"/whl/cpu/?$", url):
        return TorchBuild(None, f"torch {pin} CPU-only build (TORCH_INDEX_URL={url})")
    match = re.search(r"/cu(\d+)(\d)/?$", url)
    if match:
        cuda = f"{int(match.group(1))}.{match.group(2)}"
        return TorchBuild(cuda, f"torch {pin} CUDA {cuda} build (TORCH_INDEX_URL={url})")
    return TorchBuild(None, f"torch {pin} from TORCH_INDEX_URL={url}", False)


def _floor(cuda: str) -> tuple[int, int, int]:
    return DRIVER_FLOOR.get(int(cuda.split(".")[0]), (999, 0, 0))


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(str(p) for p in version).removesuffix(".0.0")


def best_build(driver: str | None) -> tuple[str, str] | None:
    """The newest CUDA build of the pinned torch that this driver runs."""
    have = version_tuple(driver)
    return next((b for b in CUDA_BUILDS if have >= _floor(b[0])), None)


def driver_verdict(driver: str | None, build: TorchBuild) -> tuple[str, str, str]:
    """(ok/warn/fail, what was found, what to do) for a host with an NVIDIA GPU."""
    fits = best_build(driver)
    use = f"TORCH_INDEX_URL={TORCH_INDEX}{fits[1]} in .env" if fits else ""
    if not build.known:
        return WARN, f"cannot tell which CUDA the image's {build.label} needs", ""
    if build.cuda is None:
        fix = f"for the GPU, {use or 'update the NVIDIA driver'}, then `invoke build`"
        return WARN, f"the image's {build.label} will not use the GPU", fix
    floor = _floor(build.cuda)
    needs = f"the image's {build.label} needs driver >= {_dotted(floor)}"
    if version_tuple(driver) >= floor:
        return OK, needs, ""
    update = f"update the NVIDIA driver to >= {_dotted(floor)}"
    if fits is None:
        return FAIL, needs, f"{update} (no PyTorch CUDA build of this torch runs on {driver})"
    return (
        FAIL,
        needs,
        f"{use} (CUDA {fits[0]} runs on driver {driver}), then `invoke build`; or {update}",
    )
