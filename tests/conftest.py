"""Fixtures shared by every test folder."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator

import pytest

from segur_bench.browser import CHROMIUM_FLAGS, chromium_path


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: ./scripts/setup.sh installs the Debian package 'chromium'")
        pytest.skip("Chromium is not installed (run ./scripts/setup.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
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
