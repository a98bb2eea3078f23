"""Fixtures for the download tests: the local HTTP server and a test registry pointing at it."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.dl_server import FileServer
from support.dl_support import SYNTHETIC, write_registry


@pytest.fixture
def server():
    with FileServer(SYNTHETIC) as srv:
        yield srv


@pytest.fixture
def registry(tmp_path, server) -> Path:
    """Two mirrors on the test server, ``a`` then ``b``."""
    return write_registry(tmp_path / "registry.toml", [server.url("a"), server.url("b")])
