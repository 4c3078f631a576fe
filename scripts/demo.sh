#!/usr/bin/env bash
# The README's first command: set up, start the embedded PostGIS, migrate, load the committed sample.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
twin=".venv/bin/twin"
[ -n "${TWIN_VENV:-}" ] && twin="$TWIN_VENV/bin/twin"
"$twin" db start
"$twin" db migrate
"$twin" sample load
"$twin" db status
