"""The images install exactly what pyproject declares, and their build files pass the linters.

Fast checks (no Docker needed): a drifted pin or a lint regression fails here in seconds,
long before the end-to-end tests build anything.
"""

from __future__ import annotations

import re
import runpy
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from support.ci_skip import skip_unless_ci

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile"]  # both images: targets `lab` and `tensorboard`
SHELL_SCRIPTS = [
    ROOT / ".ci" / "run",
    ROOT / ".ci" / "local-base-image.sh",
    ROOT / ".ci" / "copy-host-certs.sh",
    DOCKER / "install-requirements",
    DOCKER / "lab" / "start-lab",
    DOCKER / "lab" / "lab-entrypoint",
]
# Python files ruff does not find by their extension.
EXTRA_PYTHON = [DOCKER / "healthcheck"]


def _name(requirement: Requirement) -> str:
    return re.sub(r"[-_.]+", "-", requirement.name).lower()


def _specs(lines: list[str]) -> dict[str, str]:
    """``{normalized name: specifier}``; a name listed twice is a mistake worth failing on."""
    specs: dict[str, str] = {}
    for line in lines:
        requirement = Requirement(line)
        name = _name(requirement)
        assert name not in specs, f"{name} is listed twice"
        specs[name] = str(requirement.specifier)
    return specs


def _requirements_file(path: Path) -> dict[str, str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return _specs([line for line in lines if line])


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_lab_image_requirements_are_base_deps_plus_lab_extra():
    project = _pyproject()
    base = _specs(project["dependencies"])
    lab = _specs(project["optional-dependencies"]["lab"])
    # Where both list a package the lab extra's exact pin is what the image gets: it must be
    # one the base range accepts, or the host and the image would disagree.
    for name in base.keys() & lab.keys():
        pinned = lab[name].removeprefix("==")
        assert Requirement(f"{name}{base[name]}").specifier.contains(pinned), (
            f"lab extra pins {name}=={pinned}, outside the base range {base[name]}"
        )
    expected = {**base, **lab}
    torch = _requirements_file(DOCKER / "lab" / "requirements-torch.txt")
    rest = _requirements_file(DOCKER / "lab" / "requirements.txt")
    assert not torch.keys() & rest.keys(), "a package is in both requirement files"
    assert {**torch, **rest} == expected


def test_torch_gets_a_layer_of_its_own_before_the_other_requirements():
    """Adding a small package must not download torch again: torch and torchvision are
    installed from their own file, copied and installed before requirements.txt."""
    torch = _requirements_file(DOCKER / "lab" / "requirements-torch.txt")
    assert set(torch) == {"torch", "torchvision"}
    dockerfile = (DOCKER / "Dockerfile").read_text()
    lab = dockerfile[dockerfile.index("AS lab") :]
    assert lab.index("COPY lab/requirements-torch.txt") < lab.index("COPY lab/requirements.txt")


def test_lab_extra_is_fully_pinned():
    lab = _specs(_pyproject()["optional-dependencies"]["lab"])
    loose = {name: spec for name, spec in lab.items() if not re.fullmatch(r"==[^,*]+", spec)}
    assert not loose, f"the image installs exactly the lab extra; pin these with ==: {loose}"


def test_tensorboard_image_requirements_follow_the_lab_pin_without_torch():
    lab = _specs(_pyproject()["optional-dependencies"]["lab"])
    tensorboard = _requirements_file(DOCKER / "tensorboard" / "requirements.txt")
    assert tensorboard == {"tensorboard": lab["tensorboard"]}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_unless_ci(f"{name} is not installed (pip install -e '.[dev]' provides it)")
    return path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_dockerfile_is_hadolint_clean(dockerfile):
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_shell_scripts_are_shellcheck_clean(script):
    result = subprocess.run(
        [_tool("shellcheck"), "--color=never", str(script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    """.ci/run takes its test command from the README, so the two cannot drift apart."""
    extract = runpy.run_path(str(ROOT / ".ci" / "readme_test_command.py"))["test_command"]
    command = extract((ROOT / "README.md").read_text())
    assert "python -m pytest" in command and "pip install" in command
    with pytest.raises(SystemExit, match="test-command"):
        extract("# A README\n\nno marker here\n")
    with pytest.raises(SystemExit, match="test-command"):
        extract("<!-- test-command -->\n\nsome prose, no fenced block\n")


def _ruff(*args: str) -> subprocess.CompletedProcess:
    extra = [str(path) for path in EXTRA_PYTHON]
    return subprocess.run(
        [_tool("ruff"), *args, ".", *extra], cwd=ROOT, capture_output=True, text=True
    )


def test_code_is_ruff_clean():
    result = _ruff("check", "--no-fix", "--output-format=concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_ruff_formatted():
    result = _ruff("format", "--check")
    assert result.returncode == 0, f"run `ruff format`:\n{result.stdout}{result.stderr}"
