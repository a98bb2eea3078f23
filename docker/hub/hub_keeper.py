"""Brings the hub back after `docker kill`. Docker's restart policy restarts it after a crash
or an out-of-memory kill, but takes `docker kill` for a manual stop, under every policy: the
class would be cut off until someone ran `compose up`.

Runs in a small container of its own (compose.hub.yaml's `keeper`) and follows the Docker
events of its project's hub: a hub container that died without being stopped (`docker stop`
and compose send a "stop" event right after "die") and that Docker is not restarting is
started again. `invoke hub-down` and `docker compose stop` stop the keeper first.
"""

from __future__ import annotations

import logging
import socket
import time

import docker

log = logging.getLogger("hub-keeper")
WINDOW = 2  # seconds of events read at a time
GRACE = 3  # seconds after "die" for a "stop", or Docker's own restart


def hub_filters(client: docker.APIClient) -> dict:
    me = client.inspect_container(socket.gethostname())
    project = me["Config"]["Labels"]["com.docker.compose.project"]
    labels = [f"com.docker.compose.project={project}", "com.docker.compose.service=hub"]
    return {"type": ["container"], "label": labels}


def revive(client: docker.APIClient, container: str) -> None:
    try:
        state = client.inspect_container(container)["State"]
    except docker.errors.NotFound:
        return  # removed: compose recreated it, or `hub-down`
    if not (state["Running"] or state["Restarting"]):
        log.warning("the hub was killed (exit %s): starting it again", state["ExitCode"])
        client.start(container)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s %(asctime)s] %(message)s")
    client = docker.APIClient(version="auto")
    filters = hub_filters(client)
    died: dict[str, float] = {}  # container id -> when it died
    since = int(time.time())
    log.info("watching %s", filters["label"])
    while True:
        until = since + WINDOW
        for event in client.events(since=since, until=until, filters=filters, decode=True):
            container, action = event.get("id", ""), event.get("Action", "")
            if action == "die":
                died[container] = time.monotonic()
            elif action in ("stop", "start", "destroy"):
                died.pop(container, None)
        since = until
        for container, when in list(died.items()):
            if time.monotonic() - when >= GRACE:
                del died[container]
                try:
                    revive(client, container)
                except docker.errors.APIError as problem:
                    log.warning("could not start the hub: %s", problem)


if __name__ == "__main__":
    main()
