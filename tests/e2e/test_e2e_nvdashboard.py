"""jupyterlab-nvdashboard in the running lab: enabled, and answering on a machine without GPU.

Its routes (jupyterlab_nvdashboard/handlers.py, 0.15.0) live under ``/nvdashboard/``: an HTTP
``accelerators/check`` and websockets; the GPU websockets are only registered when NVML sees
a GPU, ``cpu_resource`` always. The e2e stack runs with the CPU override, so what a learner
without a GPU gets is what is checked: no error anywhere, "no GPU" said plainly.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re

import pytest
from support.e2e_stack import http_get
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

pytestmark = pytest.mark.e2e

ACCELERATORS = "nvdashboard/accelerators/check"
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def jupyter_listing(stack, *command: str) -> str:
    """What a `jupyter ... list` command prints (on stderr, coloured), as plain text."""
    result = stack.exec("lab", "jupyter", *command, check=True)
    return COLOUR.sub("", result.stdout + result.stderr)


def dashboard_get(stack, path: str, token: str | None = None):
    headers = {"Authorization": f"token {token}"} if token else {}
    return http_get(f"{stack.jupyter_url}/{path}", headers)


def test_the_server_extension_is_enabled_and_loads(lab_stack):
    listing = jupyter_listing(lab_stack, "server", "extension", "list")
    assert re.search(r"^\s*jupyterlab_nvdashboard enabled$", listing, re.M), listing
    assert re.search(r"^\s*jupyterlab_nvdashboard 0\.15\.0 OK$", listing, re.M), listing
    front_end = jupyter_listing(lab_stack, "labextension", "list")
    assert re.search(r"jupyterlab-nvdashboard v0\.15\.0 enabled\s+OK", front_end), front_end


def test_accelerator_check_answers_no_gpu_without_error(lab_stack):
    status, body = dashboard_get(lab_stack, ACCELERATORS, lab_stack.token)
    assert status == 200, body[:300]
    answer = json.loads(body)
    assert answer["has_gpu"] is False and answer["ngpus"] == 0
    assert isinstance(answer["accelerators"], dict)


def test_the_dashboard_needs_the_token_like_everything_else(lab_stack):
    # not followed: Jupyter answers an unauthenticated page request with a login redirect
    connection = http.client.HTTPConnection("127.0.0.1", lab_stack.jupyter_port, timeout=10)
    try:
        connection.request("GET", f"/{ACCELERATORS}")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status in (302, 401, 403), response.status
    assert b"has_gpu" not in body
    if response.status == 302:
        assert response.getheader("Location", "").startswith("/login")


async def _first_messages(url: str, token: str, count: int) -> list[dict]:
    request = HTTPRequest(url, headers={"Authorization": f"token {token}"})
    connection = await asyncio.wait_for(websocket_connect(request), 30)
    try:
        return [
            json.loads(await asyncio.wait_for(connection.read_message(), 30)) for _ in range(count)
        ]
    finally:
        connection.close()


def test_the_cpu_panel_streams_and_gpu_panels_are_absent_without_a_gpu(lab_stack):
    base = lab_stack.jupyter_url.replace("http://", "ws://")
    greeting, sample = asyncio.run(
        _first_messages(f"{base}/nvdashboard/cpu_resource", lab_stack.token, 2)
    )
    assert greeting == {"status": "connected"}
    assert 0 <= sample["cpu_utilization"] <= 100 and sample["memory_usage"] > 0
    # no GPU: the GPU panels' endpoints are not there (a 404), rather than failing inside
    status, _ = dashboard_get(lab_stack, "nvdashboard/gpu_utilization", lab_stack.token)
    assert status == 404


def test_no_dashboard_error_in_the_server_log(lab_stack):
    logs = lab_stack.compose("logs", "--no-color", "lab").stdout
    dashboard = [line for line in logs.splitlines() if "nvdashboard" in line.lower()]
    assert not [line for line in dashboard if "error" in line.lower() or "Traceback" in line]
    assert "Traceback" not in logs
