# The classroom hub: NativeAuthenticator (sign-up, admin approval), DockerSpawner starting
# one lab container per learner, the idle culler. Settings come from the environment
# (compose.hub.yaml, .env); the policies live in autograd_hub.py, which host tests import.
import os
import socket
import sys
from pathlib import Path

import autograd_hub as hub
import nativeauthenticator
from jupyterhub.handlers.base import BaseHandler

import docker

c = get_config()  # noqa: F821 (injected by traitlets)

STATE = Path(os.environ.get("HUB_STATE_DIR", "/srv/jupyterhub"))
client = docker.APIClient(version="auto")
try:
    nvidia = hub.has_nvidia_runtime(client.info())
    settings = hub.settings_from_env(nvidia_runtime=nvidia)
    # The hub's own container tells where the repo's lessons and datasets are on the host.
    myself = client.inspect_container(socket.gethostname())
    mounts = myself.get("Mounts", [])
    # The learners' network is the hub's, not compose's: `compose down` then never trips over
    # learners' containers still attached to it. The hub joins it under HUB_CONNECT_HOST.
    try:
        client.inspect_network(settings.network)
    except docker.errors.NotFound:
        client.create_network(settings.network, labels={hub.LABEL: settings.prefix})
    if settings.network not in myself["NetworkSettings"]["Networks"]:
        client.connect_container_to_network(
            myself["Id"], settings.network, aliases=[settings.hub_connect_host]
        )
except hub.HubConfigError as problem:
    sys.exit(f"autograd hub: {problem}")
except docker.errors.DockerException as problem:
    sys.exit(
        f"autograd hub: cannot use the Docker engine ({problem}); mount /var/run/docker.sock "
        "and set DOCKER_GID to its group (`stat -c %g /var/run/docker.sock`)"
    )
lessons_dir = os.environ.get("HUB_LESSONS_HOST_DIR") or hub.host_source(mounts, hub.LESSONS_MOUNT)
data_dir = os.environ.get("HUB_DATA_HOST_DIR") or hub.host_source(mounts, hub.DATA_MOUNT)
if not lessons_dir or not data_dir:
    sys.exit(
        f"autograd hub: mount the repository's lab/ at {hub.LESSONS_MOUNT} and data/ at "
        f"{hub.DATA_MOUNT} (compose.hub.yaml does), or set HUB_LESSONS_HOST_DIR/HUB_DATA_HOST_DIR"
    )

# --- the hub and its proxy: published by compose on 127.0.0.1 only --------------------------
c.JupyterHub.bind_url = "http://0.0.0.0:8000"
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_ip = settings.hub_connect_host  # the learners' containers dial this
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
# Generated on first start into the state volume, 0600, never logged.
c.JupyterHub.cookie_secret = bytes.fromhex(hub.ensure_secret(STATE / "cookie_secret"))
c.ConfigurableHTTPProxy.auth_token = hub.ensure_secret(STATE / "proxy_token")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
# Servers outlive a hub restart; the hub reconnects to them from its database.
c.JupyterHub.cleanup_servers = False

# --- who gets in: sign up, then an admin approves ---------------------------------------------
c.JupyterHub.authenticator_class = "native"
c.JupyterHub.template_paths = [str(Path(nativeauthenticator.__file__).parent / "templates")]
c.Authenticator.admin_users = set(settings.admins)
# Approval is NativeAuthenticator's gate; whoever it lets in is allowed.
c.Authenticator.allow_all = True
c.NativeAuthenticator.minimum_password_length = 8
c.NativeAuthenticator.check_common_password = True


class _NoStatsd:
    """nativeauthenticator 1.3.0 times logins with ``handler.statsd``, which JupyterHub 6
    removed (every login would fail with AttributeError): a no-op stand-in."""

    def timer(self, *_args, **_kwargs):
        return self

    def start(self):
        return self

    def stop(self, *_args, **_kwargs):
        pass


if not hasattr(BaseHandler, "statsd"):
    BaseHandler.statsd = _NoStatsd()

# --- one lab container per learner ------------------------------------------------------------
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = settings.lab_image
c.DockerSpawner.cmd = ["start-singleuser"]
c.DockerSpawner.prefix = settings.prefix
c.DockerSpawner.network_name = settings.network
c.DockerSpawner.use_internal_ip = True
# A fresh container per start (so a rebuilt lab image reaches everyone); files live in volumes.
c.DockerSpawner.remove = True
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.mem_limit = settings.mem_limit
c.DockerSpawner.cpu_limit = settings.cpu_limit
c.DockerSpawner.read_only_volumes = {
    lessons_dir: hub.LAB_LESSONS_DIR,
    data_dir: hub.LAB_DATA_DIR,
}
c.DockerSpawner.extra_create_kwargs = {
    # The lab user, explicitly: the image's entrypoint then just runs the command.
    "user": f"{settings.uid}:{settings.gid}",
    "labels": {hub.LABEL: settings.prefix},
    # The image's healthcheck asks /api, which under the hub lives at the server's prefix;
    # seldom, since every learner's check costs a Python start.
    "healthcheck": {
        "test": ["CMD", "python", "-c", hub.HEALTHCHECK],
        "interval": 30 * 10**9,
        "timeout": 5 * 10**9,
        "retries": 3,
        "start_period": 120 * 10**9,
    },
}
c.Spawner.default_url = "/lab"
# Generous: when a whole class presses "Start" at nine, a dozen servers import JupyterLab at once.
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 180


def _index(spawner):
    return hub.learner_index(spawner.user.id)


def _host_config(spawner):
    return {
        # DataLoader workers pass batches through /dev/shm; Docker's default 64 MB is too small.
        "shm_size": settings.shm_size,
        "device_requests": settings.gpu.device_requests(_index(spawner)),
    }


c.DockerSpawner.extra_host_config = _host_config
c.Spawner.environment = {
    "NVIDIA_VISIBLE_DEVICES": lambda spawner: settings.gpu.visible_devices(_index(spawner)),
}


async def _prepare_volumes(spawner):
    """Create the learner's volumes on first start, owned by the lab user: Docker would create
    a mount point the image lacks as root, and LAB_UID may differ from the image's user."""
    volumes = hub.learner_volumes(settings.prefix, spawner.escaped_name)
    spawner.volumes = dict(volumes)
    created = []
    for name in volumes:
        try:
            await spawner.docker("inspect_volume", name)
        except docker.errors.NotFound:
            await spawner.docker("create_volume", name, labels={hub.LABEL: settings.prefix})
            created.append(name)
    if not created:
        return
    helper = await spawner.docker(
        "create_container",
        image=settings.lab_image,
        entrypoint=["chown", f"{settings.uid}:{settings.gid}", *volumes.values()],
        user="0:0",
        network_disabled=True,
        host_config=client.create_host_config(
            binds={name: {"bind": path, "mode": "rw"} for name, path in volumes.items()}
        ),
    )
    try:
        await spawner.docker("start", helper["Id"])
        result = await spawner.docker("wait", helper["Id"])
        if result.get("StatusCode") != 0:
            raise RuntimeError(f"could not give {created} to uid {settings.uid}")
    finally:
        await spawner.docker("remove_container", helper["Id"], force=True)


c.Spawner.pre_spawn_hook = _prepare_volumes

# --- the idle culler: stops servers nobody has used for HUB_IDLE_TIMEOUT seconds -----------
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={settings.idle_timeout}",
            f"--cull-every={settings.cull_every}",
        ],
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
