"""The network layer end to end: a real mitmdump (its own venv) in front of tiny upstream servers."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jsonschema
import pytest

from network_proxy import NetworkLayer, bench_targets, ensure_venv
from network_proxy.layer import NetworkLayerError

# the first test to run may create .venv-mitm (pip install mitmproxy): a generous timeout
pytestmark = pytest.mark.timeout(600)

HAR_SCHEMA = json.loads((Path(__file__).parents[1] / "core" / "har-1.2.schema.json").read_text(encoding="utf-8"))


def timed_get(url: str, **kwargs: object) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    resp = httpx.get(url, timeout=10, **kwargs)
    return resp, time.monotonic() - start


def read_har(path: Path, predicate, timeout: float = 5.0) -> dict:
    """The HAR as flushed by the running proxy, once `predicate(har)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        har = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        if har is not None and predicate(har):
            return har
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: condition not met within {timeout} s; last content: {har!r:.2000}")
        time.sleep(0.1)


def smtp_like(address: tuple[str, int]) -> tuple[bytes, bytes, float]:
    start = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock, sock.makefile("rb") as f:
        greeting = f.readline()
        sock.sendall(b"EHLO lgc\r\n")
        answer = f.readline()
        sock.sendall(b"QUIT\r\n")
        f.readline()
    return greeting, answer, time.monotonic() - start


# -- HTTP
def test_get_through_the_proxy_keeps_the_client_host(layer: NetworkLayer) -> None:
    url = layer.urls()["echo"]
    resp, _ = timed_get(url + "/lps?x=1")
    assert resp.status_code == 200
    assert resp.headers["x-upstream"] == "echo"
    assert resp.json() == {"method": "GET", "path": "/lps?x=1", "host": url.removeprefix("http://")}
    post = httpx.post(url + "/submit", content="<soap/>", headers={"Content-Type": "application/soap+xml"})
    assert post.json()["body"] == "<soap/>"


def test_urls_cover_http_targets_only(layer: NetworkLayer) -> None:
    assert set(layer.urls()) == {"echo", "other"}
    assert set(layer.addresses()) == {"echo", "other", "smtp"}
    assert len(set(layer.ports.values())) == 3


def test_latency_is_applied_once_per_request_then_removed(layer: NetworkLayer) -> None:
    url = layer.urls()["echo"] + "/slow"
    layer.set_condition(1000)
    resp, elapsed = timed_get(url)
    assert resp.status_code == 200
    assert 1.0 <= elapsed < 1.8
    layer.set_condition(0)
    resp, elapsed = timed_get(url)
    assert resp.status_code == 200
    assert elapsed < 0.5


def test_latency_does_not_serialize_concurrent_requests(layer: NetworkLayer) -> None:
    url = layer.urls()["echo"]
    clients = [httpx.Client(timeout=10) for _ in range(10)]  # made beforehand: each costs ~40 ms of CPU
    layer.set_condition(1000)
    start = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda i: clients[i].get(f"{url}/concurrent/{i}").status_code, range(10)))
    elapsed = time.monotonic() - start
    for client in clients:
        client.close()
    assert statuses == [200] * 10
    assert 1.0 <= elapsed < 2.5, f"10 concurrent requests with 1 s latency took {elapsed:.2f} s"


def test_per_service_override_and_jitter(layer: NetworkLayer) -> None:
    layer.set_condition(800, services=["other"])
    _, fast = timed_get(layer.urls()["echo"] + "/o")
    _, slow = timed_get(layer.urls()["other"] + "/o")
    assert fast < 0.5 <= 0.8 <= slow
    layer.set_condition(600, services=None, jitter_ms=200, seed=1)  # 400..800 ms, overrides dropped
    for name in ("echo", "other"):
        _, elapsed = timed_get(layer.urls()[name] + "/j")
        assert 0.4 <= elapsed < 1.3
    assert layer.condition()["overrides"] == {}


def test_down_answers_503_from_the_proxy_or_closes(layer: NetworkLayer) -> None:
    layer.set_condition(0, down=["echo"])
    resp, elapsed = timed_get(layer.urls()["echo"] + "/d")
    assert resp.status_code == 503
    assert resp.headers["x-segur-bench-network"] == "down"
    assert resp.headers["content-type"] == "application/problem+json"
    assert elapsed < 0.5
    assert timed_get(layer.urls()["other"] + "/d")[0].status_code == 200  # only the named service
    layer.set_condition(0, down=["echo"], down_action="close")
    with pytest.raises(httpx.TransportError):
        httpx.get(layer.urls()["echo"] + "/closed", timeout=5)
    layer.clear()
    assert timed_get(layer.urls()["echo"] + "/d")[0].status_code == 200


def test_har_is_flushed_while_running_and_shows_the_injected_delay(layer: NetworkLayer) -> None:
    url = layer.urls()["echo"]
    layer.set_condition(300)
    httpx.get(url + "/har-delayed?q=1", timeout=10)
    layer.set_condition(0)
    httpx.get(url + "/binary", timeout=10)
    httpx.post(url + "/har-post", content="é=1", headers={"Content-Type": "application/x-www-form-urlencoded"})

    def has_all(har: dict) -> bool:
        paths = {e["request"]["url"].split("?")[0].rsplit("/", 1)[-1] for e in har["log"]["entries"]}
        return {"har-delayed", "binary", "har-post"} <= paths

    har = read_har(layer.har_path, has_all)
    jsonschema.validate(har, HAR_SCHEMA)
    assert har["log"]["version"] == "1.2"
    entries = {e["request"]["url"].split("?")[0].rsplit("/", 1)[-1]: e for e in har["log"]["entries"]}
    delayed = entries["har-delayed"]
    assert delayed["request"]["url"] == url + "/har-delayed?q=1"  # as the client sent it
    assert delayed["_upstream"].startswith(layer.targets["echo"])
    assert delayed["_service"] == "echo"
    assert delayed["request"]["queryString"] == [{"name": "q", "value": "1"}]
    assert delayed["_injected_ms"] == 300
    assert delayed["timings"]["_injected_ms"] == 300
    assert delayed["timings"]["wait"] >= 300
    assert delayed["time"] >= 300
    assert delayed["response"]["status"] == 200
    assert json.loads(delayed["response"]["content"]["text"])["path"] == "/har-delayed?q=1"
    binary = entries["binary"]["response"]["content"]
    assert binary["encoding"] == "base64" and binary["size"] == 256
    post = entries["har-post"]["request"]["postData"]
    assert post == {"mimeType": "application/x-www-form-urlencoded", "text": "é=1"}
    assert entries["binary"]["_injected_ms"] == 0


def test_down_requests_are_in_the_har(layer: NetworkLayer) -> None:
    layer.set_condition(0, down=["other"])
    httpx.get(layer.urls()["other"] + "/har-down", timeout=5)

    def has_down(har: dict) -> bool:
        return any(e["request"]["url"].endswith("/har-down") for e in har["log"]["entries"])

    entry = next(e for e in read_har(layer.har_path, has_down)["log"]["entries"]
                 if e["request"]["url"].endswith("/har-down"))
    assert entry["_network"] == "down" and entry["response"]["status"] == 503


# -- raw TCP (SMTP/IMAP-like, server speaks first)
def test_raw_tcp_relays_server_first_protocols_with_latency_on_connect(layer: NetworkLayer) -> None:
    address = layer.addresses()["smtp"]
    greeting, answer, elapsed = smtp_like(address)
    assert (greeting, answer) == (b"220 upstream ready\r\n", b"250 EHLO lgc\r\n")
    assert elapsed < 0.5
    layer.set_condition(1000, services=["smtp"])
    greeting, _, elapsed = smtp_like(address)
    assert greeting == b"220 upstream ready\r\n"
    assert 1.0 <= elapsed < 1.8  # once per connection, not per line
    layer.set_condition(0, down=["smtp"])
    with pytest.raises(OSError):
        smtp_like(address)
    layer.clear()

    def has_connections(har: dict) -> bool:
        return sum(c["_service"] == "smtp" for c in har["log"]["_connections"]) >= 3

    connections = [c for c in read_har(layer.har_path, has_connections)["log"]["_connections"]
                   if c["_service"] == "smtp"]
    assert any(c.get("_injected_ms") == 1000 for c in connections)
    assert any(c.get("_network") == "down" for c in connections)
    assert any(c.get("bytes_from_client") == len(b"EHLO lgc\r\nQUIT\r\n") for c in connections)


# -- lifecycle
def test_stop_writes_the_final_har(mitmdump: Path, upstream: str, tmp_path: Path) -> None:
    net = NetworkLayer({"echo": upstream}, har_path=tmp_path / "final.har", control_dir=tmp_path / "ctl",
                       mitmdump=mitmdump, flush_s=3600)  # no periodic flush: only `done` writes it
    with net:
        for i in range(5):
            assert httpx.get(f"{net.urls()['echo']}/n/{i}", timeout=10).status_code == 200
    assert not net.running
    har = json.loads((tmp_path / "final.har").read_text(encoding="utf-8"))
    jsonschema.validate(har, HAR_SCHEMA)
    assert [e["request"]["url"].rsplit("/", 1)[-1] for e in har["log"]["entries"]] == ["0", "1", "2", "3", "4"]


def test_fixed_ports_and_start_failure(mitmdump: Path, upstream: str, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        net = NetworkLayer({"echo": upstream}, ports={"echo": port}, har_path=tmp_path / "x.har",
                           control_dir=tmp_path / "ctl", mitmdump=mitmdump)
        assert net.urls() == {"echo": f"http://127.0.0.1:{port}"}
        with pytest.raises(NetworkLayerError, match="mitmdump exited during start-up"):
            net.start(timeout=20)
    assert not net.running


# -- no mitmdump needed
def test_arguments_are_checked(tmp_path: Path) -> None:
    kw = {"har_path": tmp_path / "h.har", "control_dir": tmp_path / "c", "mitmdump": Path("/nonexistent")}
    with pytest.raises(ValueError, match="scheme"):
        NetworkLayer({"a": "ftp://127.0.0.1:21"}, **kw)
    with pytest.raises(ValueError, match="no path"):
        NetworkLayer({"a": "http://127.0.0.1:8101/lps"}, **kw)
    with pytest.raises(ValueError, match="unknown target"):
        NetworkLayer({"a": "http://127.0.0.1:8101"}, ports={"b": 1}, **kw)
    net = NetworkLayer({"a": "http://127.0.0.1:8101"}, **kw)
    with pytest.raises(ValueError, match="unknown service"):
        net.set_condition(10, services=["zzz"])
    with pytest.raises(ValueError, match="unknown service"):
        net.set_condition(0, down=["zzz"])
    net.set_condition(3000, down=["a"])
    control = json.loads(net.control_path.read_text(encoding="utf-8"))
    assert control["services"] == {str(net.ports["a"]): {"name": "a", "kind": "http"}}
    assert control["default"] == {"latency_ms": 3000, "jitter_ms": 0} and control["down"] == ["a"]


def test_bench_targets() -> None:
    from segur_bench.config import BenchConfig

    config = BenchConfig(host="0.0.0.0")
    config.ports["insi"] = 9101
    config.urls["insi"] = "http://127.0.0.1:9201"  # where the proxy will be: never a target
    config.settings["mss"] = {"smtp_port": 3587}
    targets = bench_targets(config)
    assert targets["insi"] == "http://127.0.0.1:9101"
    assert targets["mss"] == "http://127.0.0.1:8107"
    assert targets["mss-smtp"] == "tcp://127.0.0.1:3587"
    assert targets["mss-imap"] == "tcp://127.0.0.1:2143"
    assert targets["mss-imaps"] == "tcp://127.0.0.1:2993"  # implicit TLS: relayed as it is
    assert targets["insi-tls"] == "tls://127.0.0.1:8401"
    assert bench_targets(config, ["dmp"], tcp=False) == {"dmp": "http://127.0.0.1:8102",
                                                        "dmp-tls": "tls://127.0.0.1:8402"}
    config.tls = False
    assert bench_targets(config, ["dmp"], tcp=False) == {"dmp": "http://127.0.0.1:8102"}


def test_ensure_venv_is_instant_once_done(mitmdump: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = mitmdump.parent.parent
    start = time.monotonic()
    assert ensure_venv(venv) == mitmdump
    assert time.monotonic() - start < 0.1
    monkeypatch.setenv("SEGUR_BENCH_MITMDUMP", str(mitmdump))
    assert ensure_venv(Path("/nonexistent")) == mitmdump


def test_ensure_venv_explains_a_failed_install(tmp_path: Path) -> None:
    bad = str(tmp_path / "no-such-project")  # fails inside pip, without asking any registry
    with pytest.raises(NetworkLayerError, match=r"could not prepare mitmproxy's virtual environment(.|\n)*pip install"):
        ensure_venv(tmp_path / "venv", requirement=bad)
    assert not (tmp_path / "venv" / ".segur-bench-mitm").exists()
