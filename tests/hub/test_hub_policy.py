"""GPU policy, settings and secrets of the classroom hub, without Docker or a GPU."""

from __future__ import annotations

import os
import stat

import docker.types
import pytest

UUIDS = "GPU-6f1e4c2a-0b1d-4e3f-9a8b-1c2d3e4f5a6b,MIG-2b7c9d1e-3f4a-5b6c-7d8e-9f0a1b2c3d4e"


def host_device_requests(policy, index: int) -> list[dict]:
    """What docker-py (the client DockerSpawner uses) puts in the container's HostConfig."""
    host = docker.types.HostConfig(version="1.44", device_requests=policy.device_requests(index))
    return host.get("DeviceRequests", [])


def test_no_gpu_policy_requests_no_device_and_hides_the_image_default(autograd_hub):
    policy = autograd_hub.parse_gpu_policy("none")
    assert host_device_requests(policy, 0) == []
    assert policy.visible_devices(0) == "void"  # the lab image says NVIDIA_VISIBLE_DEVICES=all


def test_all_gives_every_learner_every_gpu(autograd_hub):
    policy = autograd_hub.parse_gpu_policy("all")
    for index in range(3):
        assert host_device_requests(policy, index) == [
            {
                "Driver": "nvidia",
                "Count": -1,
                "DeviceIDs": [],
                "Capabilities": [["gpu"]],
                "Options": {},
            }
        ]
        assert policy.visible_devices(index) == "all"


def test_round_robin_gives_each_learner_exactly_one_gpu_by_index(autograd_hub):
    policy = autograd_hub.parse_gpu_policy("round-robin", count="4")
    given = []
    for index in range(6):
        (request,) = host_device_requests(policy, index)
        assert request["Count"] == 0 and request["Driver"] == "nvidia"
        (device,) = request["DeviceIDs"]
        assert policy.visible_devices(index) == device
        given.append(device)
    assert given == ["0", "1", "2", "3", "0", "1"]


def test_an_explicit_uuid_list_hands_out_one_device_per_learner_in_turn(autograd_hub):
    policy = autograd_hub.parse_gpu_policy(UUIDS)
    allowed = UUIDS.split(",")
    given = [host_device_requests(policy, index)[0]["DeviceIDs"] for index in range(4)]
    assert given == [[allowed[0]], [allowed[1]], [allowed[0]], [allowed[1]]]
    assert policy.visible_devices(1) == allowed[1]


@pytest.mark.parametrize("runtime, kind", [(True, "all"), (False, "none")])
def test_auto_follows_the_engine_nvidia_runtime(autograd_hub, runtime, kind):
    assert autograd_hub.parse_gpu_policy("auto", nvidia_runtime=runtime).kind == kind
    assert autograd_hub.parse_gpu_policy("", nvidia_runtime=runtime).kind == kind


def test_the_nvidia_runtime_is_seen_in_docker_info(autograd_hub):
    assert autograd_hub.has_nvidia_runtime({"Runtimes": {"runc": {}, "nvidia": {}}})
    cdi = {
        "Runtimes": {"runc": {}},
        "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=all"}],
    }
    assert autograd_hub.has_nvidia_runtime(cdi)
    assert not autograd_hub.has_nvidia_runtime({"Runtimes": {"runc": {}}})


@pytest.mark.parametrize(
    "value, count, names",
    [
        ("round-robin", "", "HUB_GPU_COUNT"),
        ("round-robin", "0", "HUB_GPU_COUNT"),
        ("gpu0,gpu1", "", "HUB_GPU_POLICY"),
        ("GPU-abc,", "", None),  # a trailing comma is fine
    ],
)
def test_a_bad_gpu_policy_is_one_line_naming_the_variable(autograd_hub, value, count, names):
    if names is None:
        assert autograd_hub.parse_gpu_policy(value, count).devices == ("GPU-abc",)
        return
    with pytest.raises(autograd_hub.HubConfigError) as caught:
        autograd_hub.parse_gpu_policy(value, count)
    message = str(caught.value)
    assert message.startswith(names) and "\n" not in message


def test_settings_defaults(autograd_hub):
    settings = autograd_hub.settings_from_env({})
    assert settings.lab_image == "autograd-lab/lab:latest"
    assert (settings.uid, settings.gid) == (1000, 1000)
    assert settings.admins == {"admin"} and settings.gpu.kind == "none"
    assert settings.idle_timeout == 3600 and settings.cull_every == 60


def test_settings_from_env(autograd_hub):
    env = {
        "LAB_IMAGE": "registry.example/lab:2",
        "LAB_UID": "1234",
        "HUB_ADMINS": "ann, bo",
        "HUB_IDLE_TIMEOUT": "20",
        "HUB_GPU_POLICY": "round-robin",
        "HUB_GPU_COUNT": "8",
    }
    settings = autograd_hub.settings_from_env(env)
    assert settings.lab_image == "registry.example/lab:2" and settings.uid == 1234
    assert settings.admins == {"ann", "bo"} and settings.cull_every == 6
    assert settings.gpu == autograd_hub.GpuPolicy("round-robin", count=8)


@pytest.mark.parametrize(
    "name, value",
    [
        ("LAB_UID", "lab"),
        ("HUB_MEM_LIMIT", "lots"),
        ("HUB_CPU_LIMIT", "-1"),
        ("HUB_IDLE_TIMEOUT", "0"),
        ("HUB_PREFIX", "a b"),
        ("HUB_ADMINS", " , "),
    ],
)
def test_bad_settings_are_one_line_naming_the_variable(autograd_hub, name, value):
    with pytest.raises(autograd_hub.HubConfigError) as caught:
        autograd_hub.settings_from_env({name: value})
    assert str(caught.value).startswith(name) and "\n" not in str(caught.value)


def test_learners_get_their_own_volumes_and_a_stable_gpu_index(autograd_hub):
    alice = autograd_hub.learner_volumes("hub", "alice")
    bob = autograd_hub.learner_volumes("hub", "bob")
    assert alice == {"hub-work-alice": "/workspace/work", "hub-runs-alice": "/workspace/runs"}
    assert not set(alice) & set(bob)
    assert [autograd_hub.learner_index(user_id) for user_id in (1, 2, 3)] == [0, 1, 2]


def test_the_host_path_of_a_bind_mount_is_read_from_inspect(autograd_hub):
    mounts = [
        {"Type": "volume", "Destination": "/srv/jupyterhub", "Source": "/var/lib/docker/x"},
        {"Type": "bind", "Destination": "/srv/autograd-lab/lab", "Source": "/home/t/repo/lab"},
    ]
    assert autograd_hub.host_source(mounts, autograd_hub.LESSONS_MOUNT) == "/home/t/repo/lab"
    assert autograd_hub.host_source(mounts, autograd_hub.DATA_MOUNT) is None


def test_a_secret_is_generated_once_private_and_kept(autograd_hub, tmp_path):
    path = tmp_path / "cookie_secret"
    first = autograd_hub.ensure_secret(path)
    assert len(bytes.fromhex(first)) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert autograd_hub.ensure_secret(path) == first
    assert os.listdir(tmp_path) == ["cookie_secret"]  # no temp file left behind
