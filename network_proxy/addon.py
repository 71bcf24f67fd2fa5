"""mitmdump addon of the network layer: live network conditions and a HAR 1.2 recording.

Runs INSIDE mitmdump (its own virtual environment): imports nothing but the standard library and mitmproxy.
`layer.py` starts it with `-s addon.py` and these options:

- `netlayer_control`: JSON file written by `NetworkLayer` (listen port → service, latency, jitter, down
  services); re-read whenever its identity or mtime changes, so conditions change live without a restart.
- `netlayer_har`: HAR file, written atomically every `netlayer_flush_ms` milliseconds when something changed, and
  at shutdown (`done`).
- `netlayer_ready`: written with mitmdump's pid once it runs (the layer waits for it).
- `netlayer_har_max_body`: bodies longer than this many bytes are truncated in the HAR (a `comment` says so).

Semantics (see README.md):

- HTTP: the latency is applied once per request, after the whole request is received and before it is
  forwarded upstream; it is awaited on the event loop, so concurrent requests are delayed side by side.
- raw TCP (SMTP, IMAP, and their implicit-TLS ports): the latency is applied once per connection, before
  mitmproxy connects upstream (the client waits that much longer for the server's greeting); later bytes are not
  delayed. The bytes pass unchanged (TLS included: never terminated here).
- TLS passthrough (an HTTPS service's TLS port): the TLS session stays end to end between the LGC and the
  simulator, client certificate included: mitmproxy cannot ask a client for a certificate and forward it, so it
  does not terminate TLS. The latency applies per request instead, read from the TLS records: each client "turn"
  (bytes the client sends after the server last spoke) that carries application data is forwarded that much
  later, chunk by chunk in order (a delay line, not a pause: the server's bytes are never held). Handshake turns
  without application data are not delayed (TLS 1.2); in TLS 1.3 the client's Finished travels with its first
  request, in the same delayed turn. A new connection per request thus costs one delay, like a plain request.
  The HAR records each connection with its turns, the injected delay of each, and the local port of the
  upstream connection, which the simulator journals as the client's port: the two are joined on it.
- down: HTTP requests get a 503 answered by the proxy (header `X-Segur-Bench-Network: down`), or a closed
  connection with no answer when `down_action` is "close"; raw TCP connections are closed at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mitmproxy import connection, http, tcp
from mitmproxy import version as mitm_version
from mitmproxy.proxy import layers

log = logging.getLogger("segur_bench.network_proxy")

DOWN_HEADER = "X-Segur-Bench-Network"
TEXT_HINTS = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "html", "multipart/")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def _ms(start: float | None, end: float | None) -> float:
    if start is None or end is None:
        return -1
    return round(max(0.0, end - start) * 1000, 3)


class Conditions:
    """The control file's content, plus the random source for jitter."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self.services: dict[int, dict[str, Any]] = {int(p): s for p, s in data.get("services", {}).items()}
        self.default: dict[str, Any] = data.get("default", {})
        self.overrides: dict[str, dict[str, Any]] = data.get("overrides", {})
        self.down: set[str] = set(data.get("down", ()))
        self.down_action: str = data.get("down_action", "503")
        self.rng = random.Random(data.get("seed"))

    def service(self, port: int | None) -> str:
        entry = self.services.get(port or -1)
        return entry["name"] if entry else f"port-{port}"

    def delay_ms(self, service: str) -> float:
        rule = self.overrides.get(service, self.default)
        latency = float(rule.get("latency_ms", 0) or 0)
        jitter = float(rule.get("jitter_ms", 0) or 0)
        if jitter > 0:
            latency += self.rng.uniform(-jitter, jitter)
        return max(0.0, latency)


class DelayLine:
    """The client→server direction of one TLS-passthrough connection: which bytes to hold and for how long.

    A turn is what the client sends after the server last spoke. A turn carrying a TLS application_data record
    (content type 23: requests, and TLS 1.3's encrypted Finished that precedes the first one) is delayed once,
    each of its chunks released at its own arrival + the delay, never before an earlier chunk (FIFO)."""

    def __init__(self) -> None:
        self.turn_open = False
        self.turn_delay: float | None = None  # seconds, once this turn is known to carry application data
        self.released_at = 0.0  # loop time of the last release scheduled
        self.pending_record = 0  # bytes of a TLS record still to come in later chunks
        self.header = b""  # a record header split across chunks
        self.reinjected: list[bytes] = []
        self.turns: list[dict[str, Any]] = []
        self.sni: str | None = None
        self.first = True

    def server_spoke(self) -> None:
        self.turn_open = False
        self.turn_delay = None

    def expect(self, data: bytes) -> None:
        self.reinjected.append(data)

    def is_reinjected(self, message: tcp.TCPMessage) -> bool:
        if self.reinjected and message.content is self.reinjected[0]:
            self.reinjected.pop(0)
            return True
        return False

    def _content_types(self, data: bytes) -> set[int]:
        """Content types of the TLS records that start in this chunk (records may span chunks)."""
        types: set[int] = set()
        pos = 0
        data = self.header + data
        self.header = b""
        if self.pending_record:
            skip = min(self.pending_record, len(data))
            self.pending_record -= skip
            pos = skip
        while pos < len(data):
            if len(data) - pos < 5:
                self.header = data[pos:]
                break
            types.add(data[pos])
            size = int.from_bytes(data[pos + 3:pos + 5], "big")
            end = pos + 5 + size
            if end > len(data):
                self.pending_record = end - len(data)
                break
            pos = end
        return types

    def delay_for(self, data: bytes, delay_s: Any) -> float | None:
        """Seconds to hold this client chunk (None: forward now)."""
        if self.first:
            self.first = False
            self.sni = _client_hello_sni(data)
        loop = asyncio.get_running_loop()
        now = loop.time()
        types = self._content_types(data)
        if not self.turn_open:
            self.turn_open = True
            self.turn_delay = None
        if self.turn_delay is None and 23 in types:
            self.turn_delay = max(0.0, float(delay_s()))
            self.turns.append({"startedDateTime": _iso(time.time()), "_injected_ms": round(self.turn_delay * 1000, 3),
                               "bytes": 0})
        if self.turns and self.turn_open and self.turn_delay is not None:
            self.turns[-1]["bytes"] += len(data)
        if self.turn_delay is None and self.released_at <= now:
            return None
        # strictly after the previous release: timers due at the same instant may run in any order
        release = max(now + (self.turn_delay or 0.0), self.released_at + 1e-6)
        self.released_at = release
        return release - now


def _client_hello_sni(record: bytes) -> str | None:
    """The server name of a TLS ClientHello (first record of the connection), for the HAR."""
    try:
        if record[0] != 0x16 or record[5] != 0x01:
            return None
        pos = 5 + 4 + 2 + 32
        pos += 1 + record[pos]
        pos += 2 + int.from_bytes(record[pos:pos + 2], "big")
        pos += 1 + record[pos]
        end = pos + 2 + int.from_bytes(record[pos:pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            kind, size = int.from_bytes(record[pos:pos + 2], "big"), int.from_bytes(record[pos + 2:pos + 4], "big")
            if kind == 0:
                body = record[pos + 4:pos + 4 + size]
                return body[5:5 + int.from_bytes(body[3:5], "big")].decode("ascii")
            pos += 4 + size
    except (IndexError, UnicodeDecodeError):
        return None
    return None


class NetworkLayerAddon:
    def __init__(self) -> None:
        self.conditions = Conditions()
        self._control_key: tuple | None = None
        # serialized once when recorded: a flush only joins strings (no re-encoding of every body, every time)
        self.entries: list[str] = []
        self.connections: list[str] = []
        self._dirty = False
        self._flusher: asyncio.Task | None = None

    # -- options and lifecycle
    def load(self, loader) -> None:
        loader.add_option("netlayer_control", str, "", "Network layer: JSON control file (conditions).")
        loader.add_option("netlayer_har", str, "", "Network layer: HAR 1.2 file written periodically and at exit.")
        loader.add_option("netlayer_flush_ms", int, 2000, "Network layer: milliseconds between HAR flushes.")
        loader.add_option("netlayer_ready", str, "", "Network layer: file written (our pid) once running.")
        loader.add_option("netlayer_har_max_body", int, 1 << 20, "Network layer: longest body kept in the HAR.")

    def configure(self, updated) -> None:
        if "netlayer_control" in updated:
            self._control_key = None
            self._reload()

    def running(self) -> None:
        from mitmproxy import ctx

        if ctx.options.netlayer_har and self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        if ctx.options.netlayer_ready:
            Path(ctx.options.netlayer_ready).write_text(str(os.getpid()), encoding="utf-8")

    def done(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        self.write_har()

    async def _flush_loop(self) -> None:
        from mitmproxy import ctx

        while True:
            await asyncio.sleep(max(100, ctx.options.netlayer_flush_ms) / 1000)
            if self._dirty:
                try:
                    self.write_har()
                except OSError as exc:  # keep serving: the next flush or `done` tries again
                    log.warning("network layer: could not write the HAR: %s", exc)

    # -- conditions
    def _reload(self) -> Conditions:
        from mitmproxy import ctx

        path = ctx.options.netlayer_control
        if not path:
            return self.conditions
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return self.conditions
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._control_key:
            try:
                self.conditions = Conditions(json.loads(Path(path).read_text(encoding="utf-8")))
                self._control_key = key
            except (OSError, ValueError) as exc:  # half-written by hand: keep the previous conditions
                log.warning("network layer: ignoring unreadable control file %s: %s", path, exc)
        return self.conditions

    @staticmethod
    def _port(client: connection.Client) -> int | None:
        sockname = client.sockname
        return sockname[1] if sockname else None

    # -- HTTP
    async def request(self, flow: http.HTTPFlow) -> None:
        cond = self._reload()
        service = cond.service(self._port(flow.client_conn))
        flow.metadata["netlayer_service"] = service
        if service in cond.down:
            flow.metadata["netlayer_network"] = "down"
            if cond.down_action == "close":
                flow.kill()
                return
            body = json.dumps({"type": "about:blank", "title": "Service Unavailable", "status": 503,
                               "detail": f"network layer: {service} is down"})
            flow.response = http.Response.make(
                503, body, {"Content-Type": "application/problem+json", DOWN_HEADER: "down", "Connection": "close"})
            return
        delay = cond.delay_ms(service)
        flow.metadata["netlayer_injected_ms"] = round(delay, 3)
        if delay > 0:
            await asyncio.sleep(delay / 1000)

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def _record(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get("netlayer_recorded"):
            return
        flow.metadata["netlayer_recorded"] = True
        try:
            self.entries.append(json.dumps(self._har_entry(flow), ensure_ascii=False))
            self._dirty = True
        except Exception:  # never break the traffic because of the recording
            log.exception("network layer: could not record %s", flow.request.url)

    def _content(self, message: http.Message, max_body: int) -> dict[str, Any]:
        raw = message.get_content(strict=False) or b""
        mime = message.headers.get("content-type", "")
        out: dict[str, Any] = {"size": len(raw), "mimeType": mime}
        data = raw[:max_body]
        if len(raw) > max_body:
            out["comment"] = f"truncated to {max_body} of {len(raw)} bytes"
        if not data:
            out["text"] = ""
            return out
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and ("\x00" not in text or any(h in mime.lower() for h in TEXT_HINTS)):
            out["text"] = text
            return out
        out["text"] = base64.b64encode(data).decode("ascii")
        out["encoding"] = "base64"
        return out

    def _har_entry(self, flow: http.HTTPFlow) -> dict[str, Any]:
        from mitmproxy import ctx

        max_body = ctx.options.netlayer_har_max_body
        req, resp, server = flow.request, flow.response, flow.server_conn
        injected = float(flow.metadata.get("netlayer_injected_ms", 0.0))
        req_end = req.timestamp_end or req.timestamp_start
        connect = -1.0
        # lazy strategy: the upstream connection is opened for a request after its injected delay
        if server.timestamp_tcp_setup and server.timestamp_start and server.timestamp_start >= req_end:
            connect = _ms(server.timestamp_start, server.timestamp_tcp_setup)
        ssl = _ms(server.timestamp_tcp_setup, server.timestamp_tls_setup) if server.timestamp_tls_setup else -1.0
        send = _ms(req.timestamp_start, req_end)
        if resp is not None and resp.timestamp_start:
            wait = _ms(req_end, resp.timestamp_start) - max(connect, 0) - max(ssl, 0)
            receive = _ms(resp.timestamp_start, resp.timestamp_end or resp.timestamp_start)
        else:
            wait, receive = _ms(req_end, time.time()), 0.0
        wait = round(max(wait, 0.0), 3)
        timings = {"blocked": -1, "dns": -1, "connect": connect, "send": send, "wait": wait, "receive": receive,
                   "ssl": ssl, "_injected_ms": injected}
        total = sum(v for k, v in timings.items() if k not in ("ssl", "_injected_ms") and v > 0)
        request: dict[str, Any] = {
            "method": req.method,
            "url": req.pretty_url,
            "httpVersion": req.http_version,
            "cookies": [],
            "headers": [{"name": k, "value": v} for k, v in req.headers.items(multi=True)],
            "queryString": [{"name": k, "value": v} for k, v in req.query.items(multi=True)],
            "headersSize": -1,
            "bodySize": len(req.raw_content or b""),
        }
        if req.raw_content:
            content = self._content(req, max_body)
            request["postData"] = {"mimeType": content["mimeType"], "text": content.get("text", ""),
                                   **{k: content[k] for k in ("encoding", "comment") if k in content}}
        if resp is not None:
            response: dict[str, Any] = {
                "status": resp.status_code,
                "statusText": resp.reason,
                "httpVersion": resp.http_version,
                "cookies": [],
                "headers": [{"name": k, "value": v} for k, v in resp.headers.items(multi=True)],
                "content": self._content(resp, max_body),
                "redirectURL": resp.headers.get("location", ""),
                "headersSize": -1,
                "bodySize": len(resp.raw_content or b""),
            }
        else:
            response = {"status": 0, "statusText": "", "httpVersion": req.http_version, "cookies": [],
                        "headers": [], "content": {"size": 0, "mimeType": ""}, "redirectURL": "",
                        "headersSize": -1, "bodySize": -1}
        entry: dict[str, Any] = {
            "startedDateTime": _iso(req.timestamp_start),
            "time": round(total, 3),
            "request": request,
            "response": response,
            "cache": {},
            "timings": timings,
            "_service": flow.metadata.get("netlayer_service", ""),
            "_injected_ms": injected,
            "_upstream": req.url,
        }
        if server.peername:
            entry["serverIPAddress"] = str(server.peername[0])
            entry["connection"] = str(server.peername[1])
        if flow.metadata.get("netlayer_network"):
            entry["_network"] = flow.metadata["netlayer_network"]
        if flow.error:
            entry["_error"] = flow.error.msg
        return entry

    # -- raw TCP (SMTP, IMAP) and TLS passthrough
    def next_layer(self, nextlayer) -> None:
        # Raw TCP and TLS-passthrough ports relay bytes as they are: mitmproxy would otherwise answer a ClientHello
        # with its own certificate (reverse tcp mode intercepts TLS it sees).
        entry = self.conditions.services.get(self._port(nextlayer.context.client) or -1)
        if entry and entry.get("kind") in ("tcp", "tls"):
            nextlayer.layer = layers.TCPLayer(nextlayer.context)

    def client_connected(self, client: connection.Client) -> None:
        cond = self._reload()
        entry = cond.services.get(self._port(client) or -1)
        if entry and entry.get("kind") in ("tcp", "tls") and entry["name"] in cond.down:
            client.error = f"network layer: {entry['name']} is down"
            self.connections.append(json.dumps({"_service": entry["name"], "startedDateTime": _iso(time.time()),
                                                "_network": "down", "time": 0}))
            self._dirty = True

    async def tcp_start(self, flow: tcp.TCPFlow) -> None:
        cond = self._reload()
        service = cond.service(self._port(flow.client_conn))
        entry = cond.services.get(self._port(flow.client_conn) or -1) or {}
        if entry.get("kind") == "tls":
            flow.metadata.update(netlayer_service=service, netlayer_start=time.time(), netlayer_kind="tls",
                                 netlayer_line=DelayLine())
            return
        delay = cond.delay_ms(service)
        flow.metadata["netlayer_service"] = service
        flow.metadata["netlayer_injected_ms"] = round(delay, 3)
        flow.metadata["netlayer_start"] = time.time()
        if delay > 0:
            await asyncio.sleep(delay / 1000)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        line: DelayLine | None = flow.metadata.get("netlayer_line")
        if line is None:
            return
        message = flow.messages[-1]
        if not message.from_client:
            line.server_spoke()
            return
        if line.is_reinjected(message):
            return
        service = flow.metadata.get("netlayer_service", "")
        delay_s = line.delay_for(message.content, lambda: self._reload().delay_ms(service) / 1000.0)
        if delay_s is None:
            return
        data, message.content = message.content, b""  # held: sent upstream when its time comes
        loop = asyncio.get_running_loop()
        loop.call_at(loop.time() + delay_s, self._release, flow, line, data)

    @staticmethod
    def _release(flow: tcp.TCPFlow, line: DelayLine, data: bytes) -> None:
        from mitmproxy import ctx

        if not flow.live:
            return
        line.expect(data)  # the injected bytes come back through tcp_message: let them pass
        ctx.master.commands.call("inject.tcp", flow, False, data)

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._record_tcp(flow)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._record_tcp(flow)

    def _record_tcp(self, flow: tcp.TCPFlow) -> None:
        if flow.metadata.get("netlayer_recorded"):
            return
        flow.metadata["netlayer_recorded"] = True
        start = flow.metadata.get("netlayer_start", flow.timestamp_created)
        entry = {
            "_service": flow.metadata.get("netlayer_service", ""),
            "startedDateTime": _iso(start),
            "time": _ms(start, time.time()),
            "_injected_ms": flow.metadata.get("netlayer_injected_ms", 0.0),
            "connect": _ms(flow.server_conn.timestamp_start, flow.server_conn.timestamp_tcp_setup),
            "bytes_from_client": sum(len(m.content) for m in flow.messages if m.from_client),
            "bytes_from_server": sum(len(m.content) for m in flow.messages if not m.from_client),
        }
        line: DelayLine | None = flow.metadata.get("netlayer_line")
        if line is not None:  # TLS passthrough: per-turn delays, and the upstream port the simulator journals
            entry.update(kind="tls", sni=line.sni, turns=line.turns, _injected_ms=max(
                (t["_injected_ms"] for t in line.turns), default=0.0))
            if flow.server_conn.sockname:
                entry["upstream_port"] = flow.server_conn.sockname[1]
        if flow.error:
            entry["_error"] = flow.error.msg
        self.connections.append(json.dumps(entry, ensure_ascii=False))
        flow.messages.clear()  # a long IMAP session would otherwise keep every byte in memory
        self._dirty = True

    # -- HAR file
    def har_text(self) -> str:
        creator = json.dumps({"name": "segur-bench network_proxy", "version": mitm_version.VERSION,
                              "comment": "mitmdump reverse proxy; _injected_ms is the latency the network layer added"})
        return (f'{{"log": {{"version": "1.2", "creator": {creator}, "pages": [], '
                f'"entries": [{", ".join(self.entries)}], "_connections": [{", ".join(self.connections)}]}}}}')

    def write_har(self) -> None:
        from mitmproxy import ctx

        path = ctx.options.netlayer_har
        if not path:
            return
        self._dirty = False
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self.har_text(), encoding="utf-8")
            os.replace(tmp, target)
        except OSError:
            self._dirty = True
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


addons = [NetworkLayerAddon()]
