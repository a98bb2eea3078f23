"""The learners' one way out of their internal networks: an HTTPS proxy that only opens
tunnels (CONNECT) to the package index hosts in HUB_PACKAGE_HOSTS, on port 443, at public
addresses. pip and uv in a learner's server use it through HTTPS_PROXY=http://hub:3128; the
host's services, the LAN and the rest of the internet stay out of reach.

A hub-managed service (jupyterhub_config.py starts it; the hub restarts it if it dies):
    python -m package_proxy --port 3128 pypi.org files.pythonhosted.org
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import socket

log = logging.getLogger("package-proxy")
IDLE = 300  # seconds a tunnel may carry nothing before it is closed
MAX_TUNNELS = 256


def refusal(target: str, allowed: frozenset[str]) -> str | None:
    """Why a CONNECT to ``target`` ("host:port") is refused by name; None if it may go on."""
    host, _, port = target.rpartition(":")
    if port != "443":
        return f"{target}: only port 443 (HTTPS) is open"
    if host.lower() not in allowed:
        return f"{host} is not a package index this hub lets learners reach"
    return None


# The LAN, this machine and the container networks: a package index never lives there.
INWARD = [
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
]


def inward(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return True
    return ip.is_reserved or any(ip in net for net in INWARD if net.version == ip.version)


async def public_addresses(host: str) -> list[str]:
    """The host's addresses, less any on the LAN or this machine: a name that resolves
    there does not become a way in."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos if not inward(info[4][0])]


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await asyncio.wait_for(reader.read(1 << 16), IDLE):
            writer.write(data)
            await writer.drain()
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()


class Proxy:
    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed
        self.slots = asyncio.Semaphore(MAX_TUNNELS)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            async with self.slots:
                await self._tunnel(reader, writer, peer)
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            writer.close()

    async def _tunnel(self, reader, writer, peer) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        method, target, *_ = head.decode("latin-1").split(" ", 2)
        why = (
            refusal(target, self.allowed)
            if method == "CONNECT"
            else "only CONNECT (HTTPS) is proxied"
        )
        addresses = [] if why else await public_addresses(target.rpartition(":")[0])
        if not why and not addresses:
            why = f"{target} has no public address"
        if why:
            log.warning("refused %s from %s: %s", target, peer, why)
            body = f"{why}\n".encode()
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(addresses[0], 443), 15
        )
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def serve(port: int, allowed: frozenset[str], host: str = "0.0.0.0") -> asyncio.Server:
    return await asyncio.start_server(Proxy(allowed).handle, host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m package_proxy")
    parser.add_argument("--port", type=int, default=3128)
    parser.add_argument("hosts", nargs="*", help="the package index hosts learners may reach")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s %(asctime)s] %(message)s")
    allowed = frozenset(host.lower() for host in args.hosts)

    async def run() -> None:
        server = await serve(args.port, allowed)
        log.info("tunnels to %s on port %d", ", ".join(sorted(allowed)) or "nowhere", args.port)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
