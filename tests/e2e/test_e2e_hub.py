"""The classroom for real: the hub image built, compose.hub.yaml up, an admin and two learners
(alice, bob) going through sign-up, approval and the REST API, each with their own lab
container; then isolation, TensorBoard per learner, restarts and the idle culler.

The tests run in file order against one hub (module scope); the culler test comes last because
it ends every server. Without a Docker engine they skip, except in CI where that fails.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field

import pytest
from support import e2e_stack as stack
from support import hub_stack

pytestmark = pytest.mark.e2e

LEARNERS = ("alice", "bob")
NOTE = "alice's notes: d(x**2)/dx = 2x\n"
LESSON_07 = (
    "from lab.course import find\nfrom lab.lessons import runner\n"
    "runner.run(find('07'), ['--device', 'cpu'])\n"
)


@dataclass
class Classroom:
    hub: hub_stack.Hub
    admin: str  # the admin's API token
    tokens: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    login_before_approval: dict[str, bool] = field(default_factory=dict)
    start_seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def hub_image(docker_engine) -> str:
    hub_stack.build_hub_image()
    return hub_stack.HUB_TAG


@pytest.fixture(scope="module")
def lab_image(docker_engine):
    """The lab image from this tree under a tag of our own too: the shared
    autograd-lab/lab:latest may be rebuilt from another tree while the hub spawns from it."""
    tag = f"autograd-lab/lab:hube2e-{secrets.token_hex(4)}"
    stack.build_image("lab", "-t", tag, log_name="build-lab-hub.log")
    yield tag
    hub_stack.docker("rmi", tag, check=False)  # the tag only; the layers stay cached


@pytest.fixture(scope="module")
def classroom(lab_image, hub_image, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hubstack")
    shutil.copytree(
        stack.ROOT / "lab",
        workdir / "lab",
        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"),
    )
    (workdir / "data").mkdir()
    hub = hub_stack.Hub(
        project=f"hube2e{secrets.token_hex(4)}",
        workdir=workdir,
        settings={"LAB_IMAGE": lab_image},
    )
    try:
        print(f"\nhub up -> healthy: {hub.up():.1f} s")
        room = Classroom(hub=hub, admin=hub.admin_token())
        for name in LEARNERS:
            password = secrets.token_urlsafe(12)
            room.passwords[name] = password
            assert hub.signup(name, password).status_code == 200
            room.login_before_approval[name] = hub.login(name, password) is not None
            hub.approve(name)
            response = hub.api("POST", f"users/{name}", room.admin)
            assert response.status_code == 201, response.text
            response = hub.api("POST", f"users/{name}/tokens", room.admin, json={"note": "e2e"})
            assert response.status_code == 201, response.text
            room.tokens[name] = response.json()["token"]
        for name in LEARNERS:
            room.start_seconds[name] = hub.start_server(room.admin, name)
            print(f"start {name}'s server -> JupyterLab answers: {room.start_seconds[name]:.1f} s")
        yield room
    finally:
        hub.down(volumes=True)


def test_a_learner_logs_in_only_after_an_admin_approved_them(classroom):
    assert classroom.login_before_approval == {"alice": False, "bob": False}
    for name in LEARNERS:
        assert classroom.hub.login(name, classroom.passwords[name]) is not None
    assert classroom.hub.login("alice", "not-her-password") is None


def test_each_learner_has_an_own_non_root_container_and_own_volumes(classroom):
    hub = classroom.hub
    seen = {}
    for name in LEARNERS:
        info = hub.container(name)
        assert info["Config"]["User"] == "1000:1000"
        uid = hub_stack.docker("exec", info["Id"], "id", "-u").stdout.strip()
        assert uid == "1000"
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts["/workspace/work"]["Name"] == f"{hub.project}-work-{name}"
        assert mounts["/workspace/runs"]["Name"] == f"{hub.project}-runs-{name}"
        assert mounts["/workspace/work"]["RW"] and mounts["/workspace/runs"]["RW"]
        assert not mounts["/opt/autograd-lab/lab"]["RW"] and not mounts["/workspace/data"]["RW"]
        assert mounts["/opt/autograd-lab/lab"]["Source"] == str(hub.workdir / "lab")
        host = info["HostConfig"]
        assert host["Memory"] == 1024**3 and host["CpuQuota"] == host["CpuPeriod"]  # 1G, 1 CPU
        # a CPU host (HUB_GPU_POLICY=auto, no NVIDIA runtime): no device, none visible
        assert not host["DeviceRequests"]
        assert "NVIDIA_VISIBLE_DEVICES=void" in info["Config"]["Env"]
        seen[name] = {mounts["/workspace/work"]["Name"], mounts["/workspace/runs"]["Name"]}
        # the healthcheck asks this server's own prefix (the image's asks /api, a 404 here)
        check = info["Config"]["Healthcheck"]["Test"]
        assert hub_stack.docker("exec", info["Id"], *check[1:], check=False).returncode == 0
    assert not seen["alice"] & seen["bob"]
    # the lessons are read-only for the learner (work/ is written to in the restart test)
    readonly = hub_stack.docker(
        "exec", hub.container("alice")["Id"], "touch", "/opt/autograd-lab/lab/x", check=False
    )
    assert readonly.returncode != 0 and "Read-only file system" in readonly.stderr


def test_a_learner_token_is_refused_on_another_server_and_on_admin_endpoints(classroom):
    hub, alice = classroom.hub, classroom.tokens["alice"]
    assert hub.server("alice", "api/status", alice).status_code == 200
    assert hub.server("bob", "api/status", alice).status_code == 403
    assert hub.server("bob", "api/contents", alice).status_code == 403
    assert hub.api("GET", "users", alice).status_code == 403
    assert hub.api("GET", "users/bob", alice).status_code == 404
    assert hub.api("DELETE", "users/bob/server", alice).status_code == 404
    assert hub.api("POST", "users", alice, json={"usernames": ["mallory"]}).status_code == 403
    assert hub.api("GET", "user", alice).json()["name"] == "alice"


def test_an_anonymous_request_to_a_server_is_sent_to_the_login_page(classroom):
    response = classroom.hub.server("alice", "lab", token=None)
    assert response.status_code == 200  # after the redirects
    assert response.url.split("?")[0] == f"{classroom.hub.url}/hub/login"
    assert "_xsrf" in response.text and 'name="password"' in response.text
    assert classroom.hub.server("alice", "api/contents", token=None).status_code == 403


def tensorboard_runs(classroom, name: str) -> list[str]:
    response = classroom.hub.server(name, "tensorboard/data/runs", classroom.tokens[name])
    assert response.status_code == 200, f"{name}'s TensorBoard: {response.status_code}"
    return json.loads(response.content)


def test_lesson07_run_in_alice_server_shows_in_her_tensorboard_only(classroom):
    before = {name: tensorboard_runs(classroom, name) for name in LEARNERS}
    output = classroom.hub.run_in_kernel("alice", classroom.tokens["alice"], LESSON_07)
    assert "done: " in output and "claims checked" in output
    deadline = time.monotonic() + 120  # a waiting limit (TensorBoard reloads every 5 s)
    while True:
        new = set(tensorboard_runs(classroom, "alice")) - set(before["alice"])
        tags = json.loads(
            classroom.hub.server(
                "alice", "tensorboard/data/plugin/scalars/tags", classroom.tokens["alice"]
            ).content
        )
        if new and all(tags.get(run) for run in new):  # listed, with its scalars
            break
        assert time.monotonic() < deadline, f"lesson 07's run not in alice's TensorBoard: {tags}"
        time.sleep(1)
    assert [run.split("/")[0] for run in new] == ["07_custom_autograd_function"]
    assert tensorboard_runs(classroom, "bob") == before["bob"] == []
    # bob's token does not open alice's TensorBoard either
    assert classroom.hub.server("alice", "tensorboard/", classroom.tokens["bob"]).status_code == 403


@pytest.mark.browser
def test_alice_logs_in_and_opens_her_tensorboard_from_the_launcher(classroom, page):
    from playwright.sync_api import expect

    hub = classroom.hub
    page.set_default_timeout(90_000)
    page.goto(f"{hub.url}/user/alice/lab")
    assert urlpath(page.url) == "/hub/login"  # sent to log in first
    page.fill("#username_input", "alice")
    page.fill("#password_input", classroom.passwords["alice"])
    page.locator("form input[type=submit], form button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/user/alice/lab"))
    tile = page.locator(".jp-LauncherCard", has_text="TensorBoard")
    expect(tile).to_be_visible()
    tile.click()
    frame = page.frame_locator("iframe[src*='/user/alice/tensorboard']")
    expect(frame.get_by_text(re.compile("07_custom_autograd_function")).first).to_be_visible()


def urlpath(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url).split("?")[0]


def test_a_stopped_and_restarted_server_keeps_the_learner_files(classroom):
    hub, alice = classroom.hub, classroom.tokens["alice"]
    path = "api/contents/notes.txt"
    body = {"type": "file", "format": "text", "content": NOTE}
    assert hub.server("alice", path, alice, method="PUT", json=body).status_code in (200, 201)
    first = hub.container("alice")["Id"]
    hub.stop_server(classroom.admin, "alice")
    assert hub_stack.docker("inspect", first, check=False).returncode != 0  # container gone
    hub.start_server(classroom.admin, "alice")
    assert hub.container("alice")["Id"] != first
    assert hub.server("alice", path, alice).json()["content"] == NOTE


def test_a_restarted_hub_keeps_users_tokens_running_servers_and_files(classroom):
    hub = classroom.hub
    running = hub.container("alice")["Id"]
    hub.compose("down")  # what `invoke hub-down` runs: fine with learners' servers still up
    hub.up()
    users = {user["name"] for user in hub.api("GET", "users", classroom.admin).json()}
    assert users == {hub.admin, *LEARNERS}
    assert hub.api("GET", "user", classroom.tokens["bob"]).json()["name"] == "bob"
    assert hub.login("bob", classroom.passwords["bob"]) is not None
    assert hub.container("alice")["Id"] == running  # the server outlived the hub
    deadline = time.monotonic() + 180  # a waiting limit for a loaded CI box, not a target
    while (
        answer := hub.server("alice", "api/contents/notes.txt", classroom.tokens["alice"])
    ).status_code != 200:
        assert time.monotonic() < deadline, (
            f"alice's server unreachable after the restart: {answer.status_code}\n" + hub.logs()
        )
        time.sleep(0.5)
    assert answer.json()["content"] == NOTE


GPU_POLICIES = {  # HUB_GPU_POLICY (+ count) -> what learners 1, 2, 3 get
    "none": ([[], [], []], ["void", "void", "void"]),
    "all": ([[-1, []]] * 3, ["all"] * 3),
    "round-robin:2": ([[0, ["0"]], [0, ["1"]], [0, ["0"]]], ["0", "1", "0"]),
    "GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d,MIG-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d": (
        [
            [0, ["GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"]],
            [0, ["MIG-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"]],
            [0, ["GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"]],
        ],
        [
            "GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
            "MIG-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d",
            "GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
        ],
    ),
}
# The hub's real config, loaded in the hub container with a policy in its environment, asked
# for learners 1-3's host config; docker-py turns it into what the engine would receive.
HOST_CONFIGS = """
import json, types, docker
from traitlets.config.loader import PyFileConfigLoader
config = PyFileConfigLoader("jupyterhub_config.py", path="/etc/jupyterhub").load_config()
client = docker.APIClient(version="auto")
out = []
for user_id in (1, 2, 3):
    spawner = types.SimpleNamespace(user=types.SimpleNamespace(id=user_id))
    host = client.create_host_config(**config.DockerSpawner.extra_host_config(spawner))
    visible = config.Spawner.environment["NVIDIA_VISIBLE_DEVICES"](spawner)
    out.append({"requests": host.get("DeviceRequests", []), "visible": visible})
print(json.dumps(out))
"""


@pytest.mark.parametrize("policy", GPU_POLICIES)
def test_each_gpu_policy_requests_exactly_its_devices_without_a_gpu(classroom, policy):
    value, _, count = policy.partition(":")
    env = ["-e", f"HUB_GPU_POLICY={value}", "-e", f"HUB_GPU_COUNT={count}"]
    result = classroom.hub.compose("exec", "-T", *env, "hub", "python", "-c", HOST_CONFIGS)
    learners = json.loads(result.stdout)
    expected_requests, expected_visible = GPU_POLICIES[policy]
    for learner, requests, visible in zip(
        learners, expected_requests, expected_visible, strict=True
    ):
        got = [[r["Count"], r["DeviceIDs"]] for r in learner["requests"]]
        assert got == ([requests] if requests else [])
        assert all(
            r["Driver"] == "nvidia" and r["Capabilities"] == [["gpu"]] for r in learner["requests"]
        )
        assert learner["visible"] == visible


def test_the_culler_stops_idle_servers_and_keeps_their_files(classroom):
    hub = classroom.hub
    hub.up(recreate=True, HUB_IDLE_TIMEOUT="20", HUB_CULL_EVERY="5")
    for name in LEARNERS:
        hub.wait_stopped(classroom.admin, name, timeout=120)
    assert hub.learner_containers() == []
    volumes = hub_stack.docker("volume", "ls", "-q").stdout.split()
    assert {f"{hub.project}-work-{name}" for name in LEARNERS} <= set(volumes)
    logs = hub.compose("logs", "--no-color", "hub", check=False).stdout
    assert "Culling server" in logs
