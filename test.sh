#!/usr/bin/env bash
# Quickstart (b): set everything up, then run the linter and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
.venv/bin/ruff check .
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no test" >&2
  exit 1
fi
exit "$status"
