"""deploy/z2jh/config.yaml against the Zero to JupyterHub chart's own schema, offline.

Helm merges a --values file over the chart's values.yaml and validates the result against
values.schema.json; this does the same with jsonschema. Both chart files are copied from the
chart into z2jh-chart/ next to this test, with its BSD-3-Clause LICENSE.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = Path(__file__).resolve().parent / "z2jh-chart"
CONFIG = ROOT / "deploy" / "z2jh" / "config.yaml"


def merged_over_chart(config: dict) -> dict:
    """Helm's merge of user values over the chart's: maps merge key by key, the rest replaces."""

    def merge(base, over):
        if isinstance(base, dict) and isinstance(over, dict):
            out = dict(base)
            for key, value in over.items():
                out[key] = merge(base.get(key), value) if key in base else value
            return out
        return over

    return merge(yaml.safe_load((CHART / "values.yaml").read_text()), config)


@pytest.fixture(scope="module")
def schema() -> dict:
    if not (CHART / "values.schema.json").is_file():
        pytest.fail(f"the z2jh chart files are missing: expected them in {CHART}")
    return json.loads((CHART / "values.schema.json").read_text())


@pytest.fixture
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def errors(schema: dict, values: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(values)]


def test_config_validates_against_the_chart_schema(schema, config):
    assert errors(schema, merged_over_chart(config)) == []


def test_a_misspelt_singleuser_key_fails_validation(schema, config):
    broken = copy.deepcopy(config)
    broken["singleuser"]["memmory"] = broken["singleuser"].pop("memory")
    found = errors(schema, merged_over_chart(broken))
    assert any("memmory" in error for error in found), found


def test_a_wrong_type_under_singleuser_fails_validation(schema, config):
    broken = copy.deepcopy(config)
    broken["singleuser"]["uid"] = "lab"
    assert any(
        error.startswith("singleuser/uid") for error in errors(schema, merged_over_chart(broken))
    )


def test_the_image_runs_as_the_lab_user_with_singleuser(config):
    single = config["singleuser"]
    assert (single["uid"], single["fsGid"], single["cmd"]) == (1000, 1000, "start-singleuser")
    assert single["storage"]["homeMountPath"] == "/workspace/work"


def test_profiles_are_cpu_one_gpu_and_a_mig_slice(config):
    profiles = {p["slug"]: p["kubespawner_override"] for p in config["singleuser"]["profileList"]}
    assert set(profiles) == {"cpu", "gpu", "mig"}
    assert "extra_resource_limits" not in profiles["cpu"]
    assert profiles["cpu"]["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert profiles["gpu"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    (mig,) = profiles["mig"]["extra_resource_limits"].items()
    assert mig[0].startswith("nvidia.com/mig-") and mig[1] == "1"


def test_lessons_and_datasets_are_mounted_read_only_and_runs_per_learner(config):
    mounts = {m["mountPath"]: m for m in config["singleuser"]["storage"]["extraVolumeMounts"]}
    assert mounts["/opt/autograd-lab/lab"]["readOnly"] and mounts["/workspace/data"]["readOnly"]
    assert mounts["/workspace/runs"]["name"] == "volume-{user_server}"  # the learner's own
    course = [v for v in config["singleuser"]["storage"]["extraVolumes"] if v["name"] == "course"]
    assert course[0]["persistentVolumeClaim"]["readOnly"] is True


def test_the_culler_is_on(config):
    assert config["cull"]["enabled"] is True and config["cull"]["timeout"] > 0


def test_the_teachers_view_runs_as_a_hub_service_learners_can_reach(config):
    import importlib
    from urllib.parse import urlparse

    hub = config["hub"]
    course = hub["services"]["course"]
    module = course["command"][course["command"].index("-m") + 1]
    assert callable(importlib.import_module(module).main)  # what the hub pod runs exists
    port = urlparse(course["url"]).port
    assert {p["port"] for p in hub["service"]["extraPorts"]} == {port}  # the proxy reaches it
    assert [p["port"] for rule in hub["networkPolicy"]["ingress"] for p in rule["ports"]] == [port]
    mounts = {m["mountPath"]: m for m in hub["extraVolumeMounts"]}
    assert course["environment"]["PYTHONPATH"] + "/lab" in mounts  # lab.classroom from there
    # learners' own server tokens may call it, and their labs know where it is
    scope = "access:services!service=course"
    assert scope in hub["config"]["Spawner"]["server_token_scopes"]
    assert scope in hub["loadRoles"]["user"]["scopes"]
    single = config["singleuser"]
    assert single["extraEnv"]["LAB_CLASSROOM_URL"].endswith("/services/course/")
    # learners' course has no reference solutions; the hub's has
    learners = {m["mountPath"]: m for m in single["storage"]["extraVolumeMounts"]}
    assert learners["/opt/autograd-lab/lab"]["subPath"] == "lab-learners"
    assert mounts["/srv/autograd-lab/lab"]["subPath"] == "lab"
