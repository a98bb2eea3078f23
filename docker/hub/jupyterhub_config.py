# The classroom hub: sign-up with a teacher's approval (classroom_auth), DockerSpawner starting
# one lab container per learner on a network of its own, the idle culler, the disk watch and
# the package proxy. Settings come from the environment (compose.hub.yaml, .env); the policies
# live in autograd_hub.py, which host tests import. Sections:
#   the Docker engine - the hub and its proxy - who gets in - one lab container per learner -
#   the learners' networks - services (add a teacher's service here, with its role)
import asyncio
import ipaddress
import os
import socket
import sys
from pathlib import Path

import autograd_hub as hub
import nativeauthenticator

import docker

c = get_config()  # noqa: F821 (injected by traitlets)
HERE = Path(__file__).resolve().parent

# --- the Docker engine: settings, the hub's own container, the machine ----------------------
client = docker.APIClient(version="auto")
try:
    info = client.info()
    settings = hub.settings_from_env(nvidia_runtime=hub.has_nvidia_runtime(info))
    # The hub's own container tells where the repo's lessons and datasets are on the host.
    myself = client.inspect_container(socket.gethostname())
    lessons_dir, data_dir = hub.course_dirs(myself.get("Mounts", []))
except hub.HubConfigError as problem:
    sys.exit(f"autograd hub: {problem}")
except docker.errors.DockerException as problem:
    sys.exit(
        f"autograd hub: cannot use the Docker engine ({problem}); mount /var/run/docker.sock "
        "and set DOCKER_GID to its group (`stat -c %g /var/run/docker.sock`)"
    )
PID_MAX = int(Path("/proc/sys/kernel/pid_max").read_text())  # the host's: not namespaced


def capacity_warnings(servers: int) -> list[str]:
    return hub.capacity_warnings(settings, servers, info["MemTotal"], info["NCPU"], PID_MAX)


print(
    f"autograd hub: each learner's server may use {settings.mem_limit} memory, "
    f"{settings.cpu_limit:g} CPUs, {settings.pids_limit} processes and "
    f"{settings.disk_limit / 1024**3:g} GiB of files; this machine has "
    f"{info['MemTotal'] / 1024**3:.1f} GiB and {info['NCPU']} CPUs",
    file=sys.stderr,
)
for line in capacity_warnings(settings.max_servers):
    print(f"autograd hub: WARNING: HUB_MAX_SERVERS={settings.max_servers}: {line}", file=sys.stderr)

# --- the hub and its proxy: published by compose on 127.0.0.1 only --------------------------
c.JupyterHub.bind_url = "http://0.0.0.0:8000"
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_ip = settings.hub_connect_host  # the learners' containers dial this
c.JupyterHub.db_url = f"sqlite:///{hub.STATE_DIR / 'jupyterhub.sqlite'}"
# Generated on first start into the state volume, 0600, never logged.
c.JupyterHub.cookie_secret = bytes.fromhex(hub.ensure_secret(hub.STATE_DIR / "cookie_secret"))
c.ConfigurableHTTPProxy.auth_token = hub.ensure_secret(hub.STATE_DIR / "proxy_token")
c.ConfigurableHTTPProxy.pid_file = str(hub.STATE_DIR / "proxy.pid")
# A request to a server that is not answering ends in an error page after this long instead
# of hanging (a connect to a container that is gone fails after ~7 s: compose.hub.yaml's
# tcp_syn_retries); long enough for a kernel to start on a busy machine.
c.ConfigurableHTTPProxy.command = ["configurable-http-proxy", "--proxy-timeout=120000"]
# Servers outlive a hub restart; the hub reconnects to them from its database.
c.JupyterHub.cleanup_servers = False
# Cookies (the hub's, the XSRF one, each learner's server's) are not sent along with requests
# that other sites start.
c.JupyterHub.tornado_settings = {"cookie_options": {"samesite": "Lax"}}
c.JupyterHub.active_server_limit = settings.max_servers

# --- who gets in: sign up, a teacher approves; admins are made with `invoke hub-admin` --------
c.JupyterHub.authenticator_class = "classroom_auth.ClassroomAuthenticator"
c.JupyterHub.template_paths = [
    str(HERE / "templates"),
    str(Path(nativeauthenticator.__file__).parent / "templates"),
]
c.Authenticator.admin_users = set(settings.admins)
c.Authenticator.username_pattern = rf"^{hub.USERNAME_PATTERN}\Z"
# Approval is the authenticator's gate; whoever it lets in is allowed.
c.Authenticator.allow_all = True
c.NativeAuthenticator.allowed_failed_logins = settings.login_attempts
c.NativeAuthenticator.seconds_before_next_try = settings.lockout_seconds

# --- one lab container per learner ------------------------------------------------------------
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = settings.lab_image
c.DockerSpawner.cmd = ["start-singleuser"]
# Deleting in JupyterLab frees the space (a trash folder would keep it in the learner's quota).
c.DockerSpawner.args = ["--FileContentsManager.delete_to_trash=False"]
c.DockerSpawner.prefix = settings.prefix
c.DockerSpawner.escape = hub.safe_name  # one-to-one: distinct learners, distinct names
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
# The reference solutions are out of sight (an empty file over each); the course service
# hands a lesson's out once the teacher released them.
c.DockerSpawner.mounts = hub.solution_masks()
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
        # A fork bomb stops at this many processes (threads count too), in this server only.
        "pids_limit": settings.pids_limit,
        "memswap_limit": settings.mem_limit,  # no swap on top of the memory limit
        # Nothing in the container can gain privileges: no capabilities, no setuid.
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }


c.DockerSpawner.extra_host_config = _host_config
c.Spawner.environment = {
    "NVIDIA_VISIBLE_DEVICES": lambda spawner: settings.gpu.visible_devices(_index(spawner)),
    # A busy kernel counts as activity (docker/lab/busy_activity.py); tell the hub often
    # enough that the culler never takes a busy server for an idle one.
    "JUPYTERHUB_ACTIVITY_INTERVAL": str(settings.activity_interval),
    # Where the lab reports progress and asks for released solutions: the course service,
    # through the hub's proxy (lab/classroom/__init__.py).
    "LAB_CLASSROOM_URL": (
        f"http://{settings.hub_connect_host}:8000/services/{hub.COURSE_SERVICE}/"
    ),
}
# The server's own token (JUPYTERHUB_API_TOKEN): the default scopes, and the course service.
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    f"access:services!service={hub.COURSE_SERVICE}",
]
if settings.package_hosts:
    proxy = f"http://{settings.hub_connect_host}:{hub.PACKAGE_PROXY_PORT}"
    c.Spawner.environment |= {
        "HTTPS_PROXY": proxy,
        "https_proxy": proxy,
        "NO_PROXY": f"{settings.hub_connect_host},localhost,127.0.0.1",
        "no_proxy": f"{settings.hub_connect_host},localhost,127.0.0.1",
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


# --- the learners' networks: one internal network per learner, shared with the hub only ----
# No route out and no address on the host's side of the bridge (inhibit_ipv4): a learner
# reaches the hub (its API, the package proxy) and nothing else - not the host's services,
# not the LAN, not another learner's container.
_network_lock = asyncio.Lock()


def _learner_networks():
    return client.networks(filters={"label": f"{hub.LABEL}={settings.prefix}"})


def _join(network):
    """Put the hub on ``network`` under its name for the learners, unless it is there."""
    if myself["Id"] not in (client.inspect_network(network).get("Containers") or {}):
        client.connect_container_to_network(
            myself["Id"], network, aliases=[settings.hub_connect_host]
        )


async def _prepare_network(spawner):
    name = f"{settings.prefix}-net-{spawner.escaped_name}"
    async with _network_lock:  # two spawns at once must not pick the same subnet
        try:
            await spawner.docker("inspect_network", name)
        except docker.errors.NotFound:
            taken = [
                ipaddress.IPv4Network(pool["Subnet"])
                for network in await spawner.docker("networks")
                for pool in (network.get("IPAM") or {}).get("Config") or []
                if "." in pool.get("Subnet", "")
            ]
            subnet = hub.free_subnet(settings.learner_subnets, taken)
            await spawner.docker(
                "create_network",
                name,
                driver="bridge",
                internal=True,
                options={"com.docker.network.bridge.inhibit_ipv4": "true"},
                ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(str(subnet))]),
                labels={hub.LABEL: settings.prefix},
            )
        await asyncio.get_running_loop().run_in_executor(None, _join, name)
    spawner.network_name = name


async def _before_spawn(spawner):
    if hub.username_problem(spawner.user.name, reserved=()):  # made before names were checked
        raise RuntimeError(f"{spawner.user.name!r} is not a valid username: rename the user")
    running = await spawner.docker("containers", filters={"label": hub.LABEL})  # every hub's
    for line in capacity_warnings(len(running) + 1):
        spawner.log.warning("autograd hub: starting %s's server: %s", spawner.user.name, line)
    await _prepare_volumes(spawner)
    await _prepare_network(spawner)


c.Spawner.pre_spawn_hook = _before_spawn
# After a restart the hub is a new container: back onto every learner's network, so the
# servers that kept running are reachable again.
for network in _learner_networks():
    _join(network["Id"])

# --- services: each a process the hub starts (and restarts), with only the scopes it needs ---
c.JupyterHub.services = []
# Learners may use the course service (their own record, released solutions; what each may
# see is the service's rule), on top of the default user role.
c.JupyterHub.load_roles = [
    {"name": "user", "scopes": ["self", f"access:services!service={hub.COURSE_SERVICE}"]}
]


def service(name: str, args: list[str], scopes: list[str], **more) -> None:
    """Run ``python <args>`` as hub service ``name``, with a token of these scopes. ``more``:
    further service keys (a service with a web page adds ``url``, ``oauth_no_confirm``...)."""
    c.JupyterHub.services.append({"name": name, "command": [sys.executable, *args], **more})
    if scopes:
        c.JupyterHub.load_roles.append({"name": name, "scopes": scopes, "services": [name]})


# The teacher's view: the class table and its CSV for admins at /services/course/, the
# learners' labs' progress reports, releasing solutions (lab/classroom/service.py, run from
# the course the hub mounts; its records live in the state volume, beside the grader's).
service(
    hub.COURSE_SERVICE,
    ["-m", "lab.classroom.service", "serve"],
    [],
    url=f"http://127.0.0.1:{hub.COURSE_SERVICE_PORT}",
    oauth_no_confirm=True,
    environment={"PYTHONPATH": os.environ["PYTHONPATH"], "HUB_STATE_DIR": str(hub.STATE_DIR)},
)
# Stops servers nobody used for HUB_IDLE_TIMEOUT s (a busy kernel counts as use), and any
# server HUB_MAX_AGE s after its start (0: never).
service(
    "idle-culler",
    [
        "-m",
        "jupyterhub_idle_culler",
        f"--timeout={settings.idle_timeout}",
        f"--cull-every={settings.cull_every}",
        f"--max-age={settings.max_age}",
    ],
    ["list:users", "read:users:activity", "read:servers", "delete:servers"],
)
# Stops the server of a learner whose files outgrow HUB_DISK_LIMIT.
service(
    "disk-watch",
    [
        "-m",
        "disk_watch",
        f"--prefix={settings.prefix}",
        f"--limit={settings.disk_limit}",
        f"--every={settings.disk_check_every}",
    ],
    ["list:users", "read:servers", "delete:servers"],
)
if settings.package_hosts:
    # The learners' way to the package index (their networks have no other way out).
    service(
        "package-proxy",
        ["-m", "package_proxy", f"--port={hub.PACKAGE_PROXY_PORT}", *settings.package_hosts],
        [],
    )
