#!/usr/bin/env bash
# The README's second command: set up (with test tools), then run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh test
python="${TWIN_VENV:-.venv}/bin/python"

# The sensor-feed tests use the MQTT broker on 127.0.0.1:1883; start one if none listens.
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  broker_dir="${TMPDIR:-/tmp}/twin-test-mosquitto"
  mkdir -p "$broker_dir"
  printf 'listener 1883 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n' \
    "$broker_dir" > "$broker_dir/mosquitto.conf"
  [ "$(id -u)" -eq 0 ] && chown -R mosquitto: "$broker_dir" 2>/dev/null || true
  mosquitto -d -c "$broker_dir/mosquitto.conf"
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.1; done
fi
exec "$python" -m pytest "$@"
