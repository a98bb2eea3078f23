"""The classroom's defences that need no Docker: which usernames and passwords sign-up takes,
the Docker names learners get, what the machine can hold, the learners' subnets, the disk
watch's decisions and the package proxy's refusals."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import re
import string
import threading

import pytest

# The collisions and tricks of issue 21: control characters that escaped exactly like "josé"
# in DockerSpawner, a name too long for a volume, a slash in disguise, a Cyrillic look-alike.
HOSTILE = ["jos\x0c3\n9", "josé", "a" * 300, "a%2Fb", "\u0430dmin", "alice\n", " bob", "ann marie"]
COMMON = {"password", "12345678", "qwertyuiop", "iloveyou"}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_username_is_refused_with_the_rule_on_one_line(autograd_hub, name):
    problem = autograd_hub.username_problem(name, reserved=())
    assert problem is not None and "\n" not in problem
    assert autograd_hub.USERNAME_RULE in problem
    assert len(problem) < 200  # a 300-character name is not echoed in full


@pytest.mark.parametrize("name", ["alice", "bob-2", "ann_marie", "7th", "x" * 32, "Carol"])
def test_plain_names_are_welcome_in_any_case(autograd_hub, name):
    assert autograd_hub.username_problem(name, reserved={"admin"}) is None


@pytest.mark.parametrize("name", ["ta", "TA", "Ta", "admin", "ADMIN"])
def test_an_admin_name_is_reserved_in_any_case(autograd_hub, name):
    problem = autograd_hub.username_problem(name, reserved={"admin", "ta"})
    assert problem.startswith(f"{name.lower()!r} is reserved for this hub's teachers")


@pytest.mark.parametrize(
    "username, password, why",
    [
        ("erin", " " * 8, "5 different characters"),
        ("erin", "aaaaaaaa", "5 different characters"),
        ("erin", "short1!", "at least 8 characters"),
        ("frank123", "frank123", "your username"),
        ("frank", "xFRANK-2024", "your username"),
        ("erin", "password", "most common"),
        ("erin", "12345678", "most common"),
        ("erin", "QwertyUIOP", "most common"),
    ],
)
def test_weak_passwords_are_refused_saying_why(autograd_hub, username, password, why):
    problem = autograd_hub.password_problem(username, password, COMMON)
    assert problem is not None and why in problem


def test_a_decent_password_passes_even_if_a_very_short_name_is_in_it(autograd_hub):
    assert autograd_hub.password_problem("erin", "tea-kettle-42", COMMON) is None
    assert autograd_hub.password_problem("ta", "ta-pencil-77", COMMON) is None


def test_docker_names_never_collide_for_distinct_users(autograd_hub):
    rng = random.Random(21)
    alphabet = string.ascii_letters + string.digits + "-_.%/\t\n\x0c é\u0430\u212a"
    names = HOSTILE + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)
    ]
    safe = {name: autograd_hub.safe_name(name) for name in set(names)}
    assert len(set(safe.values())) == len(safe)  # one-to-one...
    # ...provably: the grader finds each work volume's learner from its name
    assert all(autograd_hub.username_of(escaped) == name for name, escaped in safe.items())
    assert all(re.fullmatch(r"[a-z0-9-]+", escaped) for escaped in safe.values())
    # the collision: DockerSpawner gave both "jos-c3-a9"
    assert autograd_hub.safe_name("jos\x0c3\n9") == "jos-0c3-0a9"
    assert autograd_hub.safe_name("josé") == "jos-c3-a9"


@pytest.mark.parametrize("escaped", ["Alice", "ann-2", "ann-zz", "ann-2D", "x-c3", "a.b", ""])
def test_a_name_safe_name_never_makes_names_no_learner(autograd_hub, escaped):
    with pytest.raises(ValueError):
        autograd_hub.username_of(escaped)


def test_allowed_names_keep_their_docker_names_and_fit_a_volume_name(autograd_hub):
    assert autograd_hub.safe_name("alice") == "alice"  # existing volumes keep their names
    assert autograd_hub.safe_name("ann-marie_2") == "ann-2dmarie-5f2"
    longest = autograd_hub.safe_name("-" * 32)
    volume = max(autograd_hub.learner_volumes("x" * 40, longest), key=len)
    assert len(volume) <= 255  # a file name on the volume driver's disk


def test_the_class_limits_beyond_the_machine_give_one_warning_each(autograd_hub):
    settings = autograd_hub.settings_from_env({"HUB_MEM_LIMIT": "4G", "HUB_CPU_LIMIT": "2"})
    memory = int(23.5 * 1024**3)
    (warning,) = autograd_hub.capacity_warnings(settings, 10, memory, cpus=16, pid_max=4194304)
    assert "10 servers x HUB_MEM_LIMIT=4G = 40.0 GiB" in warning and "23.5 GiB" in warning
    assert autograd_hub.capacity_warnings(settings, 5, memory, cpus=16, pid_max=4194304) == []
    many = autograd_hub.capacity_warnings(settings, 40, memory, cpus=2, pid_max=32768)
    assert [w.split(" x ")[1].split("=")[0] for w in many] == [
        "HUB_MEM_LIMIT",
        "HUB_CPU_LIMIT",
        "HUB_PIDS_LIMIT",
    ]


def test_each_learner_network_gets_a_free_slash_29(autograd_hub):
    pool = ipaddress.IPv4Network("10.213.0.0/16")
    taken = [ipaddress.IPv4Network("10.213.0.0/29"), ipaddress.IPv4Network("172.17.0.0/16")]
    assert str(autograd_hub.free_subnet(pool, taken)) == "10.213.0.8/29"
    # another Docker network across the range's start pushes past it
    taken.append(ipaddress.IPv4Network("10.213.0.0/24"))
    assert str(autograd_hub.free_subnet(pool, taken)) == "10.213.1.0/29"
    small = ipaddress.IPv4Network("10.9.9.0/29")
    with pytest.raises(autograd_hub.HubConfigError, match="HUB_LEARNER_SUBNETS"):
        autograd_hub.free_subnet(small, [small])


def test_the_disk_watch_stops_a_server_that_outgrows_its_allowance(autograd_hub):
    watch = autograd_hub.DiskWatch(limit=100, slack=10)
    assert watch.to_stop({"a": 50, "b": 150}) == []  # b started over the limit: may stay so
    assert watch.to_stop({"a": 111, "b": 158}) == ["a"]  # a past limit + slack; b in slack
    assert watch.to_stop({"b": 161}) == ["b"]  # b grew past what it started with + slack
    assert watch.to_stop({"a2": 500, "c": 300}) == []  # new containers: first looks
    assert watch.to_stop({"a2": 20, "c": 300}) == []  # a2's learner deleted files...
    assert watch.to_stop({"a2": 120, "c": 300}) == ["a2"]  # ...and may not refill past 110
    assert watch.to_stop({"c": 311}) == ["c"]


def test_a_learners_usage_is_volumes_plus_container_layer(autograd_hub):
    df = {
        "Volumes": [
            {"Name": "hub-work-alice", "UsageData": {"Size": 300}},
            {"Name": "hub-runs-alice", "UsageData": {"Size": 20}},
            {"Name": "hub-work-alice2", "UsageData": {"Size": 10**9}},
            {"Name": "hub-runs-bob", "UsageData": {"Size": -1}},  # not measured: nothing
        ],
        "Containers": [
            {"Id": "c1", "Names": ["/hub-alice"], "SizeRw": 5},
            {"Id": "c2", "Names": ["/hub-alice2"], "SizeRw": 7},
        ],
    }
    assert autograd_hub.learner_usage(df, "hub", "alice") == ("c1", 325)
    assert autograd_hub.learner_usage(df, "hub", "bob") == (None, 0)


def test_new_settings_have_defaults_and_say_what_is_wrong(autograd_hub):
    settings = autograd_hub.settings_from_env({})
    assert settings.pids_limit == 1024 and settings.disk_limit == 10 * 1024**3
    assert settings.max_age == 12 * 3600 and settings.login_attempts == 5
    assert settings.package_hosts == ("pypi.org", "files.pythonhosted.org")
    assert settings.activity_interval == 300  # 3600 s idle timeout
    quick = autograd_hub.settings_from_env({"HUB_IDLE_TIMEOUT": "30", "HUB_PACKAGE_HOSTS": ""})
    assert quick.activity_interval == 5 and quick.package_hosts == ()
    for name, value in [
        ("HUB_DISK_LIMIT", "lots"),
        ("HUB_PIDS_LIMIT", "10"),
        ("HUB_LEARNER_SUBNETS", "10.0.0.0/30"),
        ("HUB_PACKAGE_HOSTS", "https://pypi.org/simple"),
        ("HUB_ADMINS", "Teacher One"),
    ]:
        with pytest.raises(autograd_hub.HubConfigError) as caught:
            autograd_hub.settings_from_env({name: value})
        assert str(caught.value).startswith(name) and "\n" not in str(caught.value)


async def connect(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


@pytest.mark.parametrize(
    "address, refused",
    [
        ("127.0.0.1", True),
        ("10.213.0.2", True),
        ("172.17.0.1", True),
        ("192.168.1.10", True),
        ("169.254.169.254", True),  # a cloud's metadata service
        ("::1", True),
        ("fd00::1", True),
        ("151.101.0.223", False),  # pypi.org (Fastly)
        ("2a04:4e42::223", False),
    ],
)
def test_the_package_proxy_never_tunnels_to_the_lan_or_this_machine(
    package_proxy, address, refused
):
    assert package_proxy.inward(address) is refused


@pytest.mark.parametrize(
    "request_line, why",
    [
        (b"CONNECT example.org:443 HTTP/1.1", b"not a package index"),
        (b"CONNECT localhost:22 HTTP/1.1", b"only port 443"),
        # an allowed name that resolves to this machine does not open a way to its services
        (b"CONNECT localhost:443 HTTP/1.1", b"no public address"),
        (b"GET http://localhost/ HTTP/1.1", b"only CONNECT"),
    ],
)
def test_the_package_proxy_refuses_everything_but_the_index(package_proxy, request_line, why):
    async def run() -> bytes:
        server = await package_proxy.serve(0, frozenset({"localhost"}), host="127.0.0.1")
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await connect(port, request_line + b"\r\nHost: x\r\n\r\n")

    answer = asyncio.run(run())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden") and why in answer


def test_slow_checks_run_beside_the_event_loop_and_the_least_failed_go_first(autograd_hub):
    async def run() -> tuple[list[str], int]:
        turns = autograd_hub.Turns(workers=1)
        gate, order = threading.Event(), []

        def check(name: str) -> None:
            gate.wait(10)  # the first one holds the only thread until released
            order.append(name)

        first = asyncio.create_task(turns.run(0, check, "first"))
        await asyncio.sleep(0.05)
        queued = [  # arrival order, with the failed logins of each name / address
            asyncio.create_task(turns.run(rank, check, name))
            for name, rank in [("guesser-a", 7), ("learner", 0), ("guesser-b", 3), ("typo", 1)]
        ]
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert order == []  # the loop turned while the first check was still running
        gate.set()
        await asyncio.gather(first, *queued)
        return order, turns.free

    order, free = asyncio.run(run())
    assert order == ["first", "learner", "typo", "guesser-b", "guesser-a"]
    assert free == 1  # the thread is free again
