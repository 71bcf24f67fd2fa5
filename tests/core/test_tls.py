"""TLS ports of the simulator core, judged by clients that are not ours: the stdlib `ssl` module on a raw socket,
httpx, `openssl s_client` and `curl`. Each kind of refused client certificate gets the TLS alert the module
docstring of simulators/core/tls.py promises, and every exchange (refused handshakes included) is journaled with
the certificate's subject, serial and SHA-256 fingerprint."""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from simulators.core.server import ThreadedServer, serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.core.testing import echo_spec

REQUEST = b"POST /fast-echo HTTP/1.1\r\nHost: bench\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"


def _sim(test_pki, mode: str, names: list[str] | None = None):
    config = SimConfig(tls_port=0, pki_dir=test_pki.pki.directory, settings={"client_cert": mode},
                       tls_names=names or ["localhost", "127.0.0.1", "qualiflps-services-ps-tlsm.ameli.fr"])
    return build_simulator(echo_spec(), config)


@pytest.fixture(scope="module")
def required(test_pki) -> Iterator[ThreadedServer]:
    with serve_in_thread(_sim(test_pki, "required")) as server:
        yield server


@pytest.fixture(scope="module")
def optional(test_pki) -> Iterator[ThreadedServer]:
    with serve_in_thread(_sim(test_pki, "optional")) as server:
        yield server


@pytest.fixture(scope="module")
def off(test_pki) -> Iterator[ThreadedServer]:
    with serve_in_thread(_sim(test_pki, "off")) as server:
        yield server


def _exchange(server: ThreadedServer, ctx: ssl.SSLContext, sni: str | None = None) -> bytes:
    """One HTTP/1.1 request over a raw TLS socket (stdlib only); returns what the server sent back."""
    with socket.create_connection((server.host, server.tls_port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni or server.host) as tls:
        tls.sendall(REQUEST)
        chunks = []
        while data := tls.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def _refusal(server: ThreadedServer, ctx: ssl.SSLContext) -> str:
    with pytest.raises((ssl.SSLError, ConnectionError)) as err:
        _exchange(server, ctx)
    return str(err.value)


def _journal(server: ThreadedServer) -> list:
    return server.sim.ctx.journal.query()


def _der_sha256(path: str) -> str:
    with open(path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_handshake_with_a_bench_client_certificate_is_journaled_with_its_fingerprint(required, test_pki):
    required.sim.ctx.journal.clear()
    answer = _exchange(required, test_pki.context("structure"), sni="localhost")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hi")
    entry = _journal(required)[-1]
    cert = entry.tls["client_cert"]
    assert entry.tls["version"] in ("TLSv1.3", "TLSv1.2") and entry.tls["sni"] == "localhost"
    assert cert["sha256"].replace(":", "").lower() == _der_sha256(test_pki.cert("structure")[0])
    bundle = test_pki.clients["structure"]
    assert cert["serial"] == f"{bundle.cert.serial_number:X}"
    assert cert["subject"] == bundle.cert.subject.rfc4514_string() and "OU=499700366240007" in cert["subject"]
    assert "TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS SEGUR-BENCH" in cert["issuer"]
    assert entry.as_dict()["tls"]["client_cert"]["sha256"] == cert["sha256"]  # exported with the entry


@pytest.mark.parametrize(("client", "alert", "words"), [
    (None, "certificate_required", "certificate required"),
    ("foreign", "unknown_ca", "unknown ca"),
    ("expired", "certificate_expired", "certificate expired"),
    ("revoked", "certificate_revoked", "certificate revoked"),
])
def test_refused_client_certificates_get_their_tls_alert_and_a_journal_entry(required, test_pki, client, alert,
                                                                             words):
    required.sim.ctx.journal.clear()
    message = _refusal(required, test_pki.context(client))
    assert words in message.lower().replace("_", " "), message
    deadline = time.monotonic() + 2
    while not (entries := [e for e in _journal(required) if e.protocol == "tls"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert entries, "the refused handshake is journaled"
    assert entries[-1].tls["alert"] == alert and "refusée" in entries[-1].error
    if client is not None:
        assert entries[-1].tls["client_cert"]["serial"] == f"{test_pki.clients[client].cert.serial_number:X}"


def test_tls_1_2_is_served_too(required, test_pki):
    ctx = test_pki.context("software")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _exchange(required, ctx).startswith(b"HTTP/1.1 200")
    assert _journal(required)[-1].tls["version"] == "TLSv1.2"


def test_tls_1_2_refusals_happen_in_the_handshake(required, test_pki):
    ctx = test_pki.context("revoked")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((required.host, required.tls_port), timeout=5) as raw, \
            pytest.raises(ssl.SSLError, match=r"(?i)revoked"):
        ctx.wrap_socket(raw, server_hostname=required.host)


def test_server_certificate_covers_the_real_qualification_name(required, test_pki):
    answer = _exchange(required, test_pki.context("software"), sni="qualiflps-services-ps-tlsm.ameli.fr")
    assert answer.startswith(b"HTTP/1.1 200")
    assert _journal(required)[-1].tls["sni"] == "qualiflps-services-ps-tlsm.ameli.fr"
    with pytest.raises(ssl.SSLCertVerificationError, match=r"(?i)hostname"):
        _exchange(required, test_pki.context("software"), sni="services-ps-tlsm.ameli.fr")  # production: not ours


def test_optional_mode_accepts_no_certificate_but_refuses_a_bad_one(optional, test_pki):
    optional.sim.ctx.journal.clear()
    assert _exchange(optional, test_pki.context()).startswith(b"HTTP/1.1 200")
    assert _journal(optional)[-1].tls["client_cert"] is None
    assert "unknown ca" in _refusal(optional, test_pki.context("foreign")).lower().replace("_", " ")
    assert _exchange(optional, test_pki.context("person")).startswith(b"HTTP/1.1 200")
    assert _journal(optional)[-1].tls["client_cert"]["profile"] == "person"


def test_off_mode_asks_for_no_certificate(off, test_pki):
    off.sim.ctx.journal.clear()
    assert _exchange(off, test_pki.context("foreign")).startswith(b"HTTP/1.1 200")  # not even looked at
    assert _journal(off)[-1].tls["client_cert"] is None


def test_flask_routes_see_the_certificate_and_cannot_be_told_one_by_a_header(required, test_pki):
    client = httpx.Client(verify=test_pki.context("software"))
    resp = client.post(required.tls_url + "/echo", content=b"x",
                       headers={"X-Segur-Bench-Tls": '{"client_cert": {"cn": "forged"}}'})
    assert resp.status_code == 200
    entry = _journal(required)[-1]
    assert entry.tls["client_cert"]["cn"] == "INSI-AUTO"
    assert not any(k.lower() == "x-segur-bench-tls" for k, _ in entry.request.headers)
    plain = httpx.post(required.url + "/echo", content=b"x", headers={"X-Segur-Bench-Tls": '{"client_cert": {}}'})
    assert plain.status_code == 200 and _journal(required)[-1].tls is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_s_client(required, test_pki):
    ca = str(test_pki.ca)
    crt, key = test_pki.cert("software")
    base = ["openssl", "s_client", "-connect", f"127.0.0.1:{required.tls_port}", "-CAfile", ca,
            "-servername", "localhost", "-quiet", "-verify_return_error"]
    ok = subprocess.run([*base, "-cert", crt, "-key", key], input=REQUEST, capture_output=True, timeout=20)
    assert b"HTTP/1.1 200" in ok.stdout, ok.stderr
    refused = subprocess.run(base, input=REQUEST, capture_output=True, timeout=20)
    assert b"HTTP/1.1 200" not in refused.stdout
    assert b"certificate required" in refused.stderr, refused.stderr
    crt, key = test_pki.cert("revoked")
    revoked = subprocess.run([*base, "-cert", crt, "-key", key], input=REQUEST, capture_output=True, timeout=20)
    assert b"certificate revoked" in revoked.stderr, revoked.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_a_client_certificate(required, test_pki):
    ca = str(test_pki.ca)
    crt, key = test_pki.cert("structure")
    url = f"https://localhost:{required.tls_port}/fast-echo"
    ok = subprocess.run(["curl", "-sS", "--cacert", ca, "--cert", crt, "--key", key, "--data-binary", "hello", url],
                        capture_output=True, timeout=20)
    assert ok.returncode == 0 and ok.stdout == b"hello", ok.stderr
    p12 = str(test_pki.clients["structure"].p12_path)
    via_p12 = subprocess.run(["curl", "-sS", "--cacert", ca, "--cert-type", "P12", "--cert", f"{p12}:test",
                              "--data-binary", "p12", url], capture_output=True, timeout=20)
    assert via_p12.returncode == 0 and via_p12.stdout == b"p12", via_p12.stderr
    crt, key = test_pki.cert("expired")
    expired = subprocess.run(["curl", "-sS", "--cacert", ca, "--cert", crt, "--key", key, "--data-binary", "x", url],
                             capture_output=True, timeout=20)
    assert expired.returncode != 0 and b"expired" in expired.stderr, expired.stderr


def test_revocation_takes_effect_without_a_restart(required, test_pki, tmp_path):
    bundle = test_pki.pki.issue_client("revoked-live", tmp_path, kind="software")
    ctx = test_pki.context()
    ctx.load_cert_chain(bundle.crt_path, bundle.key_path)
    assert _exchange(required, ctx).startswith(b"HTTP/1.1 200")
    test_pki.pki.revoke("revoked-live")
    time.sleep(0.6)  # the CRL's file is looked at no more than twice a second
    assert "revoked" in _refusal(required, ctx).lower()
