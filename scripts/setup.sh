#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine (or refresh this one): Python virtual environment with
# segur-bench and its test tools, plus the Debian packages the bench needs. Idempotent and quick
# when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages needed by the bench: Chromium for the browser tests (Playwright drives Debian's
# build: its own browser download is not available everywhere); ffmpeg for the proof videos; poppler-utils
# (pdftoppm) to check the rendered prescription page in the tests; Pango for
# WeasyPrint (the reference LGC's PDF/A prescriptions) and fonts with French glyphs; libnss3-tools (certutil)
# so the scenarios' Chromium trusts the bench CA as a tester's browser would; openssl and curl, third-party TLS
# clients the tests judge the TLS ports with.
APT_PACKAGES=(chromium ffmpeg poppler-utils libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core libnss3-tools
              openssl curl)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON=$candidate; break
    fi
  done
fi
[ -n "$PYTHON" ] || die "Python 3.11 or newer is required (apt-get install python3)"

apt_install() {
  [ $# -gt 0 ] || return 0
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  command -v apt-get >/dev/null || die "missing Debian packages: ${missing[*]} (no apt-get here: install them by hand)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_install "python3-venv"
fi
apt_install "${APT_PACKAGES[@]}"

if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment in .venv"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.segur-bench-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import segur_bench' 2>/dev/null; then
  say "installing segur-bench and its dependencies"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  echo "$want" > "$stamp"
fi

# mitmproxy lives in its own virtual environment (its pins conflict with authlib/cryptography): the network
# layer of the scenario runs (segur-bench run) starts mitmdump from there. Instant when already present.
if ! .venv/bin/python -c 'from network_proxy import ensure_venv; ensure_venv()' >/dev/null 2>&1; then
  say "installing mitmproxy in .venv-mitm (network layer)"
  .venv/bin/python -c 'from network_proxy import ensure_venv; ensure_venv()' \
    || say "warning: mitmproxy could not be installed; scenario runs will inject latency in the simulators"
fi
