"""Keeps each learner within HUB_DISK_LIMIT: every HUB_DISK_CHECK_EVERY seconds it reads
what every learner's files take (their work and runs volumes and their container's own layer,
from Docker's disk usage report) and stops the server of a learner over the limit (see
autograd_hub.DiskWatch). Their files stay as they are; started again over the limit, the
server runs as long as they do not grow, so the learner can delete some.

Docker's storage here (overlay2 on ext4, local volumes) has no per-container or per-volume
quota, hence a watch: a learner can overshoot by what they write between two checks.

A hub-managed service (jupyterhub_config.py starts it with a token that may stop servers):
    python -m disk_watch --prefix autograd-hub --limit 10737418240 --every 20
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import autograd_hub as hub
import requests

import docker

log = logging.getLogger("disk-watch")


class Hub:
    def __init__(self) -> None:
        self.url = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {os.environ['JUPYTERHUB_API_TOKEN']}"

    def running(self) -> list[str]:
        users = self.session.get(f"{self.url}/users", params={"state": "active"}, timeout=30)
        users.raise_for_status()
        return [user["name"] for user in users.json() if user.get("servers")]

    def stop(self, name: str) -> None:
        self.session.delete(f"{self.url}/users/{name}/server", timeout=60).raise_for_status()


def check(api: Hub, client: docker.APIClient, watch: hub.DiskWatch, prefix: str) -> None:
    df = client.df()
    owners, usage = {}, {}
    for name in api.running():
        container, size = hub.learner_usage(df, prefix, hub.safe_name(name))
        if container:
            owners[container], usage[container] = name, size
    for container in watch.to_stop(usage):
        name = owners[container]
        log.warning(
            "stopping %s's server: their files take %.2f GiB, over HUB_DISK_LIMIT (%.2f GiB); "
            "the files are kept",
            name,
            usage[container] / 1024**3,
            watch.limit / 1024**3,
        )
        api.stop(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m disk_watch")
    parser.add_argument("--prefix", required=True, help="HUB_PREFIX")
    parser.add_argument("--limit", type=int, required=True, help="bytes per learner")
    parser.add_argument("--every", type=float, required=True, help="seconds between checks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s %(asctime)s] %(message)s")
    api, client = Hub(), docker.APIClient(version="auto")
    watch = hub.DiskWatch(args.limit)
    log.info("each learner may use %.2f GiB; checked every %gs", args.limit / 1024**3, args.every)
    while True:
        started = time.monotonic()
        try:
            check(api, client, watch, args.prefix)
        except (requests.RequestException, docker.errors.DockerException) as problem:
            log.warning("check skipped: %s", problem)  # the hub restarting, Docker busy
        time.sleep(max(0.0, args.every - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
