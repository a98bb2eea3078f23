"""The hub's policies (docker/hub/autograd_hub.py) and its package proxy live beside its
Dockerfile, where the image COPYs them from; tests load those files by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HUB_DIR = Path(__file__).resolve().parents[2] / "docker" / "hub"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, HUB_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def autograd_hub():
    return load("autograd_hub")


@pytest.fixture(scope="session")
def package_proxy():
    return load("package_proxy")
