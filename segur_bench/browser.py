"""Debian's Chromium for Playwright (its own browser download is not available everywhere): where it is and how
to launch it headless in a container."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("SEGUR_BENCH_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def trusting_env(ca_file: str | Path, home: Path) -> dict[str, str] | None:
    """An environment for Chromium whose certificate store trusts `ca_file` (the bench CA), as a tester's browser
    does once the CA is installed: an NSS database in `home`/.pki/nssdb made with certutil (Debian's
    libnss3-tools). None when certutil is missing."""
    certutil = shutil.which("certutil")
    if certutil is None:
        return None
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True, exist_ok=True)
    run = lambda *args: subprocess.run([certutil, "-d", f"sql:{db}", *args], capture_output=True,  # noqa: E731
                                       text=True, timeout=30, check=True)
    if not (db / "cert9.db").exists():
        run("-N", "--empty-password")
    # every certificate of the bundle (root and intermediate), the root as a trusted issuer of servers
    pems = Path(ca_file).read_text(encoding="ascii").split("-----END CERTIFICATE-----")
    for n, pem in enumerate(p for p in pems if "BEGIN CERTIFICATE" in p):
        part = home / f"ca-{n}.pem"
        part.write_text(pem.strip() + "\n-----END CERTIFICATE-----\n", encoding="ascii")
        run("-A", "-t", "C,,", "-n", f"segur-bench-{n}", "-i", str(part))
    return {**os.environ, "HOME": str(home)}
