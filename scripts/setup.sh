#!/usr/bin/env bash
# Set-up shared by scripts/demo.sh and scripts/test.sh; safe to run again (it only does what is missing).
#   - Debian/Ubuntu packages: PostgreSQL + PostGIS (the embedded database), GDAL's tools (tests);
#     installed when run as root, otherwise the exact command is printed.
#   - A virtual environment in .venv (or $TWIN_VENV) with the project installed in editable mode.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TWIN_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"   # "test" also installs what the tests need

packages=()
# Debian's own python3 needs python3-venv for `python3 -m venv`; other Pythons bring ensurepip.
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  major="$(ls /usr/lib/postgresql | sort -n | tail -n 1)"
  packages+=("postgresql-$major-postgis-3")
else
  packages+=(postgresql postgresql-postgis)
fi
# Tests open exports with GDAL's ogrinfo, talk to a real MQTT broker, keep the residents' rate
# limits in a real Redis, open the maps in a real browser, open the layers and styled tiles in a
# headless QGIS (Debian's PyQGIS), and run a local cluster behind HAProxy and nginx.
[ "$EXTRAS" = test ] && packages+=(gdal-bin mosquitto chromium redis-server qgis python3-qgis haproxy nginx)
# The twin speaks Chinese first: its plots (the backtest report, drawn by matplotlib) and, in the
# tests, its pages in a headless browser need a font with Chinese glyphs.
packages+=(fonts-noto-cjk)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "==> Installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "These Debian/Ubuntu packages are missing; install them, then run this again:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "Python 3.11 or newer is needed; python3 is $(python3 --version 2>&1)." >&2
  exit 1
}

[ -x "$VENV/bin/python" ] || { echo "==> Creating the virtual environment $VENV"; python3 -m venv "$VENV"; }
# Reinstall only when the project's dependencies changed (an install with the test extras
# serves a plain run too).
stamp="$VENV/.twin-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) $EXTRAS"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$have" != "$want" ] && { [ -n "$EXTRAS" ] || [ "${have%% *}" != "${want%% *}" ]; }; then
  echo "==> Installing the project into $VENV"
  target="$ROOT"
  [ -n "$EXTRAS" ] && target="$ROOT[$EXTRAS]"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target" 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import geo, ingest, service.cli" # fail here, not later, if it did not install
  echo "$want" > "$stamp"
fi
