#!/usr/bin/env bash
# The README's second command: set up (with test tools), then run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh test
python="${TWIN_VENV:-.venv}/bin/python"
exec "$python" -m pytest "$@"
