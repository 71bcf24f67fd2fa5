#!/usr/bin/env bash
# Quickstart (a): set everything up, then run the bench's main job: the flagship scenario LGC.DMP/UX.10.01
# (3 s of network latency on every service) against the reference LGC, leaving its proof bundles under
# out/scenarios/bundles/ (the last lines say where).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
exec .venv/bin/segur-bench run LGC.DMP/UX.10.01 "$@"
