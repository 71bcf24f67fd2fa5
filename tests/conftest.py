"""Fixtures shared by every test folder."""

from __future__ import annotations

import io
import os
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from segur_bench.browser import CHROMIUM_FLAGS, chromium_path


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[object]:
    """The one Playwright of the session (the sync API allows one per thread): tests that need a browser with
    other flags launch it from here."""
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: ./scripts/setup.sh installs the Debian package 'chromium'")
        pytest.skip("Chromium is not installed (run ./scripts/setup.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_session: object) -> Iterator[object]:
    browser = playwright_session.chromium.launch(  # type: ignore[attr-defined]
        executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def decode_qr() -> Callable[[bytes], list[str]]:
    """Texts of the QR codes in a PNG, read as an LGC's scanner would (zxing-cpp), independently of segno."""
    import zxingcpp
    from PIL import Image

    def decode(png: bytes) -> list[str]:
        image = Image.open(io.BytesIO(png)).convert("L")
        return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]

    return decode


class TestPki:
    """A bench PKI made once per test session, with the client certificates the TLS tests use, each kind of
    refusal included (foreign CA, expired, revoked)."""

    __test__ = False  # not a test class

    def __init__(self, directory: Path) -> None:
        import datetime as dt

        from simulators.core.pki import BenchPki

        self.dir = directory
        self.pki = BenchPki.open(directory / "bench")
        out = directory / "clients"
        self.clients = {
            "software": self.pki.issue_client("insi-auto", out, kind="software", password="test"),
            "structure": self.pki.issue_client("cabinet", out, kind="structure", password="test"),
            "person": self.pki.issue_client("doc0036624", out, kind="person", cn="DOC0036624 KIT", password="test"),
            "expired": self.pki.issue_client("expired", out, kind="software", password="test",
                                             not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                                             not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC)),
            "revoked": self.pki.issue_client("revoked", out, kind="software", password="test"),
        }
        self.pki.revoke("revoked", "keyCompromise")
        # A certificate of another CA shaped exactly like the bench's (same subject names): only the keys differ.
        foreign = BenchPki.open(directory / "foreign")
        self.clients["foreign"] = foreign.issue_client("foreign", directory / "foreign-clients", kind="software",
                                                       password="test")

    @property
    def ca(self) -> Path:
        return self.pki.chain_path

    def cert(self, name: str) -> tuple[str, str]:
        bundle = self.clients[name]
        return str(bundle.crt_path), str(bundle.key_path)

    def context(self, client: str | None = None) -> ssl.SSLContext:
        """A client context trusting the bench CA, presenting `client`'s certificate when given."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if client is not None:
            ctx.load_cert_chain(*self.cert(client))
        return ctx


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def echo_with_rule() -> Iterator[object]:
    """The core's echo service, in a thread, with one fault rule stored (what a hostile request would wipe)."""
    import httpx

    from simulators.core.server import serve_in_thread
    from simulators.core.simulator import build_simulator
    from simulators.core.testing import echo_spec

    with serve_in_thread(build_simulator(echo_spec())) as server:
        rule = {"service": "echo", "operation": "*", "effect": {"type": "latency", "ms": 1}}
        assert httpx.post(server.url + "/_bench/faults", json=rule).status_code == 201
        yield server
