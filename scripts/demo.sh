#!/usr/bin/env bash
# The README's first command: the whole twin on this machine. Sets up (packages, .venv), starts
# the embedded PostGIS, loads the committed sample through the real ingest, trains the
# road-wear model, forecasts every street, raises alerts, then serves the API and the maps on
# http://127.0.0.1:8000 (override with --host H --port P). Run again, it reuses all of that
# and starts in seconds. --prepare-only stops before serving.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec "${TWIN_VENV:-$ROOT/.venv}/bin/twin" demo "$@"
