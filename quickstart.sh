#!/usr/bin/env bash
# Quickstart (a): set everything up, then run the bench's main job.
# Until the flagship scenario LGC.DMP/UX.10.01 lands, the main job starts every simulator,
# checks it end to end over HTTP (health, incident, 3 s latency without serialization,
# journal) and writes the journal as JSONL and HAR under out/smoke/.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
exec .venv/bin/segur-bench smoke "$@"
