"""A real HTTP server on 127.0.0.1 (or another local address) for download tests and the
download benchmark.

Files are served at ``/<mirror>/<name>`` for any mirror prefix; each (mirror, name) can be told
to misbehave: throttle each connection, drop the connection after N body bytes, serve wrong
bytes, answer an error status, or ignore Range. It counts requests and body bytes served.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
SEND_BLOCK = 16 << 10


@dataclass
class Behaviour:
    throttle: float | None = None  # bytes per second, per connection...
    throttle_times: int | None = None  # ...for this many responses (None: all)
    drop_after: int | None = None  # close the connection after this many body bytes...
    drops: int = 1  # ...this many times (then behave)
    corrupt: bool = False  # same length, wrong bytes
    status: int | None = None  # answer this status instead of the file...
    status_times: int | None = None  # ...this many times (None: always)
    ignore_range: bool = False  # always 200 with the whole file, no Accept-Ranges


@dataclass
class Stats:
    requests: int = 0
    bytes: int = 0
    log: list = field(default_factory=list)  # [path, Range header, status, body bytes]


class FileServer:
    def __init__(self, files: dict[str, bytes | Path] | None = None, host: str = "127.0.0.1"):
        self.files: dict[str, bytes | Path] = dict(files or {})
        self.rules: dict[tuple[str, str], Behaviour] = {}
        self.stats = Stats()
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"owner": self})
        self.httpd = ThreadingHTTPServer((host, 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, mirror: str = "a") -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{mirror}/"

    def behave(self, mirror: str, name: str = "*", **settings) -> Behaviour:
        rule = Behaviour(**settings)
        self.rules[(mirror, name)] = rule
        return rule

    def reset_stats(self) -> Stats:
        with self.lock:
            old, self.stats = self.stats, Stats()
        return old

    def served(self, name: str) -> int:
        """Body bytes served for ``name`` (any mirror) since the last reset."""
        with self.lock:
            return sum(n for path, _, _, n in self.stats.log if path.endswith("/" + name))

    def _rule(self, mirror: str, name: str) -> Behaviour:
        return self.rules.get((mirror, name)) or self.rules.get((mirror, "*")) or Behaviour()


class _Handler(BaseHTTPRequestHandler):
    owner: FileServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        server = self.owner
        parts = self.path.lstrip("/").split("/", 1)
        mirror, name = (parts + [""])[:2] if len(parts) == 2 else ("", parts[0])
        rule = server._rule(mirror, name)
        with server.lock:
            server.stats.requests += 1
            entry = [self.path, self.headers.get("Range"), None, 0]
            server.stats.log.append(entry)
            status_now = rule.status is not None and (
                rule.status_times is None or rule.status_times > 0
            )
            if status_now and rule.status_times is not None:
                rule.status_times -= 1
            throttle = (
                rule.throttle if rule.throttle_times is None or (rule.throttle_times > 0) else None
            )
            if throttle and rule.throttle_times is not None and not status_now:
                rule.throttle_times -= 1
        source = server.files.get(name)
        if status_now or source is None:
            entry[2] = rule.status if status_now else 404
            self.send_response(entry[2])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = source.stat().st_size if isinstance(source, Path) else len(source)
        # a new object (or a rewritten file) gets a new ETag, so If-Range notices a change
        version = source.stat().st_mtime_ns if isinstance(source, Path) else id(source)
        etag = '"{}"'.format(hashlib.md5(f"{name}:{size}:{version}".encode()).hexdigest())
        start, end, status = 0, size, 200
        match = RANGE.match(self.headers.get("Range", "") or "")
        if_range = self.headers.get("If-Range")
        if match and not rule.ignore_range and (if_range is None or if_range == etag):
            start = int(match.group(1))
            end = min(size, int(match.group(2)) + 1) if match.group(2) else size
            if start >= size:
                entry[2] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        entry[2] = status
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", etag)
        if not rule.ignore_range:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        self._send_body(source, start, end, rule, entry, throttle)

    def _send_body(
        self, source, start: int, end: int, rule: Behaviour, entry: list, throttle: float | None
    ) -> None:
        server = self.owner
        began, sent, pos = time.monotonic(), 0, start
        handle = open(source, "rb") if isinstance(source, Path) else None
        try:
            while pos < end:
                n = min(SEND_BLOCK, end - pos)
                if handle is not None:
                    handle.seek(pos)
                    data = handle.read(n)
                else:
                    data = bytes(source[pos : pos + n])
                with server.lock:
                    drop = (
                        rule.drop_after is not None
                        and rule.drops > 0
                        and (sent + n > rule.drop_after)
                    )
                    if drop:
                        rule.drops -= 1
                if drop:
                    data = data[: max(0, rule.drop_after - sent)]
                if rule.corrupt:
                    data = bytes(b ^ 0x5A for b in data)
                self.wfile.write(data)
                self.wfile.flush()
                sent += len(data)
                pos += len(data)
                with server.lock:
                    server.stats.bytes += len(data)
                    entry[3] += len(data)
                if drop:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if throttle:
                    delay = began + sent / throttle - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if handle is not None:
                handle.close()
