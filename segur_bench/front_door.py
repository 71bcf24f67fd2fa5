"""The HTTPS front door: one port (443 by default) for every simulator, routed by the TLS server name (SNI).

The real services all answer on port 443 under their own host names. A vendor who maps those names to the bench
in a hosts file (`segur-bench hosts`) needs one port 443 that leads each name to its simulator. The front door
reads the ClientHello's server name and splices the TCP connection, unchanged, to that simulator's TLS port:
it never terminates TLS, so the client certificate reaches the simulator end to end and the simulator is the
one that accepts or refuses it.

Routes live in a JSON file (`{"names": {host name: service}, "targets": {service: [host, port]}}`) re-read when
it changes: a scenario run points the targets at its network layer for as long as it lasts, so a vendor's LGC
using the real host names gets the run's network conditions too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("segur_bench.front_door")

HELLO_TIMEOUT_S = 10.0
MAX_RECORD = 16384 + 2048  # TLSPlaintext length limit (RFC 8446 §5.1) plus slack


def server_name(record: bytes) -> str | None:
    """The host_name of the server_name extension of a TLS ClientHello record (header included), or None."""
    try:
        if record[0] != 0x16 or record[5] != 0x01:  # handshake record, ClientHello
            return None
        pos = 5 + 4 + 2 + 32  # record header, handshake header, legacy_version, random
        pos += 1 + record[pos]  # legacy_session_id
        pos += 2 + int.from_bytes(record[pos:pos + 2], "big")  # cipher_suites
        pos += 1 + record[pos]  # legacy_compression_methods
        end = pos + 2 + int.from_bytes(record[pos:pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            ext_type = int.from_bytes(record[pos:pos + 2], "big")
            ext_len = int.from_bytes(record[pos + 2:pos + 4], "big")
            body = record[pos + 4:pos + 4 + ext_len]
            if ext_type == 0:  # server_name: list length, then (type, length, name)
                item = 2
                while item + 3 <= len(body):
                    kind, size = body[item], int.from_bytes(body[item + 1:item + 3], "big")
                    if kind == 0:
                        return body[item + 3:item + 3 + size].decode("ascii").lower().rstrip(".")
                    item += 3 + size
                return None
            pos += 4 + ext_len
    except (IndexError, UnicodeDecodeError):
        return None
    return None


class Routes:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int] | None = None
        self.names: dict[str, str] = {}
        self.targets: dict[str, tuple[str, int]] = {}

    def lookup(self, name: str | None) -> tuple[str, tuple[str, int]] | None:
        self._reload()
        service = self.names.get(name or "")
        if service is None or service not in self.targets:
            return None
        return service, self.targets[service]

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return
        key = (st.st_mtime_ns, st.st_size)
        if key == self._key:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.names = {str(k).lower(): str(v) for k, v in data.get("names", {}).items()}
            self.targets = {str(k): (str(v[0]), int(v[1])) for k, v in data.get("targets", {}).items()}
            self._key = key
        except (OSError, ValueError, TypeError, IndexError) as exc:  # keep the previous routes
            log.warning("front door: unreadable routes file %s: %s", self.path, exc)


def write_routes(path: Path, names: dict[str, str], targets: dict[str, tuple[str, int]]) -> None:
    """Write the routes atomically (the front door never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"names": names, "targets": {k: list(v) for k, v in targets.items()}}, indent=1),
                   encoding="utf-8")
    os.replace(tmp, path)


def read_routes(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class FrontDoor:
    """The front door on its own thread and event loop (in `segur-bench up`), or in the foreground."""

    def __init__(self, host: str, port: int, routes: Path) -> None:
        self.host, self.port = host, port
        self.routes = Routes(routes)
        self.sock: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def bind(self) -> None:
        """Bind now (errors such as PermissionError on port 443 surface to the caller)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.listen(512)
        self.sock = sock
        self.port = sock.getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._route(reader, writer)
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

    async def _route(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            head = await asyncio.wait_for(reader.readexactly(5), HELLO_TIMEOUT_S)
            size = int.from_bytes(head[3:5], "big")
            if head[0] != 0x16 or size > MAX_RECORD:
                log.info("front door: %s did not start a TLS handshake; closed", peer)
                return
            record = head + await asyncio.wait_for(reader.readexactly(size), HELLO_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            return
        name = server_name(record)
        route = self.routes.lookup(name)
        if route is None:
            log.warning("front door: %s asked for %r, a name no simulator answers to; closed", peer, name)
            return
        service, (host, port) = route
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), HELLO_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            log.warning("front door: %s (%s) unreachable at %s:%s: %s", service, name, host, port, exc)
            return
        sock = up_writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            up_writer.write(record)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                up_writer.close()

    async def _serve(self, started: threading.Event | None = None) -> None:
        if self.sock is None:
            self.bind()
        server = await asyncio.start_server(self._handle, sock=self.sock)
        if started is not None:
            started.set()
        async with server:
            while not self._stopped.is_set():
                await asyncio.sleep(0.2)

    def serve_forever(self) -> None:
        asyncio.run(self._serve())

    def start(self) -> FrontDoor:
        if self.sock is None:
            self.bind()
        started = threading.Event()

        def run() -> None:
            with contextlib.suppress(Exception):
                asyncio.run(self._serve(started))

        self.thread = threading.Thread(target=run, name="front-door", daemon=True)
        self.thread.start()
        started.wait(5)
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.sock is not None:
            self.sock.close()
