"""Drive the classroom hub (compose.hub.yaml) from tests and benchmarks: build its image, bring
a hub up under its own project, network, port and name prefix, and act as its admin and
learners over HTTP, the way a browser or a script would."""

from __future__ import annotations

import asyncio
import html
import json
import os
import random
import re
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from support import e2e_stack as stack

COMPOSE_FILE = stack.ROOT / "compose.hub.yaml"
DOCKERFILE = stack.ROOT / "docker" / "hub" / "Dockerfile"
HUB_TAG = "autograd-lab/hub:latest"
LABEL = "org.autograd-lab.hub"  # docker/hub/autograd_hub.py puts it on containers and volumes
_XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')
_SAYS = re.compile(
    r'<div class="alert [^"]*" role="alert">\s*<p>(.*?)</p>|class="login_error">(.*?)</p>', re.S
)


def says(page: str) -> str:
    """What a sign-up or login page tells the user (its alert), as plain text."""
    found = _SAYS.search(page)
    return html.unescape(" ".join((found.group(1) or found.group(2)).split())) if found else ""


def build_hub_image() -> float:
    """``docker build`` the hub image (classic builder); seconds it took."""
    stack.ARTIFACTS.mkdir(exist_ok=True)
    log = stack.ARTIFACTS / "build-hub.log"
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            ["docker", "build", "-f", str(DOCKERFILE), "-t", HUB_TAG, str(stack.BUILD_CONTEXT)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"building {HUB_TAG} failed (full log: {log}):\n{tail}")
    return time.monotonic() - started


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}:\n{result.stderr}")
    return result


@dataclass
class Hub:
    """One hub: its compose project, a scratch project dir (lab/ copy, data/), its own port,
    network and prefix for learner containers and volumes, so nothing clashes."""

    project: str
    workdir: Path
    admin: str = "teacher"
    admin_password: str = field(default_factory=lambda: os.urandom(12).hex())
    port: int = field(default_factory=stack.free_port)
    settings: dict[str, str] = field(default_factory=dict)
    # learners' networks out of a range of this hub's own: never one another hub uses
    subnets: str = field(
        default_factory=lambda: f"10.{random.randint(100, 250)}.{16 * random.randint(0, 15)}.0/20"
    )
    admin_session: requests.Session | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
        return env | {
            "HUB_PORT": str(self.port),
            "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
            "HUB_PREFIX": self.project,
            "HUB_LEARNER_SUBNETS": self.subnets,
            "HUB_ADMINS": self.admin,
            "HUB_MEM_LIMIT": "1G",
            "HUB_CPU_LIMIT": "1",
            **self.settings,
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str, check: bool = True, timeout: float = 300, input=None):
        command = ["docker", "compose", "-p", self.project, "--project-directory"]
        command += [str(self.workdir), "-f", str(COMPOSE_FILE), *args]
        result = subprocess.run(
            command, capture_output=True, text=True, env=self.env, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def up(self, recreate: bool = False, **settings: str) -> float:
        """(Re)create the hub with these settings on top; seconds until it is healthy."""
        self.settings.update(settings)
        started = time.monotonic()
        args = ["up", "-d", "--wait", "--wait-timeout", "300", "--no-build", "--pull", "never"]
        args += ["--force-recreate"] if recreate else []
        result = self.compose(*args, check=False)
        if result.returncode != 0:
            raise AssertionError(f"hub up failed:\n{result.stderr}\n{self.logs()}")
        return time.monotonic() - started

    def logs(self, tail: int = 60) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), check=False).stdout

    def learner_containers(self) -> list[str]:
        filter_ = f"label={LABEL}={self.project}"
        return docker("ps", "-aq", "--filter", filter_).stdout.split()

    def down(self, volumes: bool) -> None:
        """Stop the hub; the learners' containers and networks go too (they are not
        compose's), and with ``volumes`` every volume this hub made."""
        for container in self.learner_containers():
            docker("rm", "-f", container, check=False)
        self.compose("down", "--remove-orphans", *(["-v"] if volumes else []), check=False)
        filter_ = f"label={LABEL}={self.project}"
        for network in docker("network", "ls", "-q", "--filter", filter_).stdout.split():
            docker("network", "rm", network, check=False)
        if volumes:
            filter_ = f"label={LABEL}={self.project}"
            for volume in docker("volume", "ls", "-q", "--filter", filter_).stdout.split():
                docker("volume", "rm", "-f", volume, check=False)

    # --- HTTP, as the admin and the learners ---------------------------------------------

    def page_form(self, session: requests.Session, path: str) -> str:
        response = session.get(f"{self.url}{path}", timeout=60)
        response.raise_for_status()
        return _XSRF.search(response.text).group(1)

    def signup(self, username: str, password: str) -> requests.Response:
        session = requests.Session()
        xsrf = self.page_form(session, "/hub/signup")
        data = {"username": username, "signup_password": password}
        data |= {"signup_password_confirmation": password, "_xsrf": xsrf}
        return session.post(f"{self.url}/hub/signup", data=data, timeout=60)

    def login(self, username: str, password: str) -> requests.Session | None:
        """A logged-in browser session, or None when the hub refused the login."""
        session = requests.Session()
        xsrf = self.page_form(session, "/hub/login")
        data = {"username": username, "password": password, "_xsrf": xsrf}
        response = session.post(
            f"{self.url}/hub/login", data=data, timeout=60, allow_redirects=False
        )
        return session if response.status_code == 302 else None

    def set_admin_password(self, name: str, password: str) -> subprocess.CompletedProcess:
        """What `invoke hub-admin NAME` does, with the password on stdin."""
        command = ["exec", "-T", "hub", "python", "-m", "classroom_auth", "admin", name]
        return self.compose(*command, "--password-stdin", input=password + "\n", check=False)

    def admin_token(self) -> str:
        """The teacher makes the admin (`invoke hub-admin`), who logs in and mints an API
        token. The admin's browser session is kept for the pages that take no token."""
        result = self.set_admin_password(self.admin, self.admin_password)
        assert result.returncode == 0, result.stderr
        self.admin_session = self.login(self.admin, self.admin_password)
        assert self.admin_session is not None, "the admin could not log in"
        headers = {"X-XSRFToken": self.admin_session.cookies.get("_xsrf", "")}
        response = self.admin_session.post(
            f"{self.url}/hub/api/users/{self.admin}/tokens",
            json={"note": "e2e"},
            headers=headers,
            timeout=60,
        )
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def approve(self, username: str, approve: bool = True) -> requests.Response:
        """The admin's click on "Approve" (or "Revoke") in /hub/authorize: a POST form with
        the page's XSRF token."""
        xsrf = self.page_form(self.admin_session, "/hub/authorize")
        return self.admin_session.post(
            f"{self.url}/hub/authorize/{username}",
            data={"_xsrf": xsrf, "approve": "1" if approve else "0"},
            timeout=60,
            allow_redirects=False,
        )

    def add_learner(self, username: str, password: str) -> None:
        """Sign up, get approved."""
        said = says(self.signup(username, password).text)
        assert said.startswith("Signed up as"), said
        assert self.approve(username).status_code == 302

    def api(self, method: str, path: str, token: str | None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(
            method, f"{self.url}/hub/api/{path}", headers=headers, timeout=60, **kwargs
        )

    def server(self, user: str, path: str, token: str | None, method: str = "GET", **kwargs):
        """A request to ``user``'s own server, through the hub's proxy."""
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(
            method, f"{self.url}/user/{user}/{path}", headers=headers, timeout=60, **kwargs
        )

    def start_server(self, token: str, user: str, timeout: float = 300) -> float:
        """Ask the hub to start ``user``'s server; seconds until JupyterLab answers (the
        timeout is a waiting limit for a loaded machine, not a target)."""
        started = time.monotonic()
        response = self.api("POST", f"users/{user}/server", token)
        assert response.status_code in (201, 202), f"{response.status_code} {response.text}"
        while True:
            answer = self.server(user, "lab", token, allow_redirects=False)
            if answer.status_code == 200 and b"JupyterLab" in answer.content:
                return time.monotonic() - started
            assert time.monotonic() - started < timeout, (
                f"{user}'s server did not answer in {timeout:.0f} s ({answer.status_code})\n"
                + self.logs()
            )
            time.sleep(0.1)

    def stop_server(self, token: str, user: str, timeout: float = 120) -> None:
        """Stop ``user``'s server and wait until its container is gone, not just until the
        hub says it stopped (Docker removes it a moment later)."""
        response = self.api("DELETE", f"users/{user}/server", token)
        assert response.status_code in (202, 204), f"{response.status_code} {response.text}"
        self.wait_stopped(token, user, timeout)

    def wait_stopped(self, token: str, user: str, timeout: float) -> float:
        """Seconds until the hub has no server for ``user`` and its container is gone."""
        started = time.monotonic()
        while (
            self.api("GET", f"users/{user}", token).json().get("servers")
            or docker("inspect", self.container_name(user), check=False).returncode == 0
        ):
            assert time.monotonic() - started < timeout, f"{user}'s server is still there"
            time.sleep(0.5)
        return time.monotonic() - started

    def container_name(self, user: str) -> str:
        return f"{self.project}-{user}"

    def container(self, user: str) -> dict:
        """``docker inspect`` of ``user``'s running container."""
        return json.loads(docker("inspect", self.container_name(user)).stdout)[0]

    def run_in_kernel(self, user: str, token: str, code: str, timeout: float = 300) -> str:
        """Run ``code`` in a fresh kernel of ``user``'s server, as Shift+Enter would (the
        kernel's websocket, through the proxy); returns its output, fails on an error."""
        kernel = self.new_kernel(user, token)
        try:
            return asyncio.run(
                asyncio.wait_for(_execute(self.channels(user, kernel), token, code), timeout)
            )
        finally:
            self.server(user, f"api/kernels/{kernel}", token, method="DELETE")

    def start_cell(self, user: str, token: str, code: str, timeout: float = 300) -> str:
        """Start ``code`` in a fresh kernel of ``user``'s server and leave it running, as a
        learner who closes the tab would; returns the kernel's id once it is busy."""
        kernel = self.new_kernel(user, token)
        url = self.channels(user, kernel)
        asyncio.run(asyncio.wait_for(_execute(url, token, code, until_busy=True), timeout))
        return kernel

    def new_kernel(self, user: str, token: str) -> str:
        response = self.server(user, "api/kernels", token, method="POST", json={})
        assert response.status_code == 201, f"{response.status_code} {response.text}"
        return response.json()["id"]

    def channels(self, user: str, kernel: str) -> str:
        return f"ws://127.0.0.1:{self.port}/user/{user}/api/kernels/{kernel}/channels"


async def _execute(url: str, token: str, code: str, until_busy: bool = False) -> str:
    """Send ``code`` to the kernel; its output once it finished, or "" as soon as it is busy
    with it (``until_busy``)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    connection = await websocket_connect(
        HTTPRequest(url, headers={"Authorization": f"token {token}"})
    )
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "", "version": "5.3"}
    content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    message = {"header": header | {"session": uuid.uuid4().hex, "date": ""}, "parent_header": {}}
    message |= {"metadata": {}, "content": content | {"user_expressions": {}}, "channel": "shell"}
    connection.write_message(json.dumps(message))
    output, status = [], None
    while True:
        raw = await connection.read_message()
        assert raw is not None, "the kernel's websocket closed"
        reply = json.loads(raw)
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, state = reply["msg_type"], reply["content"].get("execution_state")
        if kind == "status" and state == "busy" and until_busy:
            connection.close()
            return ""
        if kind == "stream":
            output.append(reply["content"]["text"])
        elif kind == "error":
            output.append("\n".join(reply["content"]["traceback"]))
        elif kind == "execute_reply":
            status = reply["content"]["status"]
        elif kind == "status" and state == "idle" and status:
            break
    connection.close()
    text = "".join(output)
    assert status == "ok", f"the cell failed ({status}):\n{text[-3000:]}"
    return text
