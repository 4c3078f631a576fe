#!/usr/bin/env bash
# A local cluster of the twin, from Debian's packages, for tests and for people to try:
#   scripts/cluster.sh up|down|status
#
# In one directory of its own (TWIN_CLUSTER_DIR, default .cluster) and on ports from
# TWIN_CLUSTER_PORT (default 18700) up:
#   +0  HAProxy in front of the two service nodes (health checks on /readyz) <- the address
#   +1  PostgreSQL primary          +2  its streaming replica (pg_basebackup -R)
#   +3  mosquitto (sensor feed: topic twin/readings/#)
#   +5  Redis: the tile cache every node shares (TWIN_REDIS_URL)
#   +6  nginx with proxy_cache in front of HAProxy: versioned (immutable) tiles at file speed
#   +11 twin serve node A           +12 twin serve node B   (reads from the replica)
#   two `twin worker`s, and two `twin ingest watch` in one shared subscription (group
#   "cluster"), each restarted under its own client id if it dies.
# Needs: bash scripts/setup.sh test (the .venv, PostgreSQL + PostGIS, mosquitto, haproxy,
# redis-server, nginx).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$(realpath -m "${TWIN_CLUSTER_DIR:-$REPO/.cluster}")"
BASE="${TWIN_CLUSTER_PORT:-18700}"
LB=$BASE PRIMARY=$((BASE + 1)) REPLICA=$((BASE + 2)) MQTT=$((BASE + 3))
NODE_A=$((BASE + 11)) NODE_B=$((BASE + 12))
TWIN="$REPO/.venv/bin/twin"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
PRIMARY_URL="postgresql://twin@127.0.0.1:$PRIMARY/twin"
REPLICA_URL="postgresql://twin@127.0.0.1:$REPLICA/twin"
PROCESSES=(node-a node-b worker-1 worker-2 watcher-1 watcher-2 mosquitto haproxy)
# --- tiles: the shared tile cache and the HTTP cache in front (issue 14) ---
REDIS=$((BASE + 5)) NGINX=$((BASE + 6))
PROCESSES+=(redis nginx)
# --- end tiles ---

# PostgreSQL refuses to run as root: as root, its programs run as the postgres account.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
say() { echo "==> $*"; }
die() { echo "cluster.sh: $*" >&2; exit 1; }
alive() { [ -f "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

wait_for() {  # what, seconds, command...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up within $seconds s (logs in $DIR/log)"
}

# Run a twin command in the background under a small supervisor that restarts it when it
# dies (as systemd's Restart=always would), logging to log/NAME.log.
supervise() {  # name, environment and command...
  local name=$1; shift
  (
    trap 'kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM INT
    while true; do
      env "$@" >>"$DIR/log/$name.log" 2>&1 </dev/null & child=$!
      echo "$child" >"$DIR/run/$name.child"
      wait "$child" || true
      sleep 1
    done
  ) >/dev/null 2>&1 &
  echo $! >"$DIR/run/$name.pid"
}

start_postgres() {
  local data=$1 port=$2
  as_pg "$PGBIN/pg_ctl" -D "$data" -l "$DIR/log/$(basename "$data").log" -w -t 60 \
    -o "-p $port -k $DIR/pgrun" start >/dev/null
}

# --- tiles: Redis, the tile cache every node shares ---
# Tiles are keyed by the layer versions, so nothing is ever purged: old versions' entries fall
# out under maxmemory (LRU). A cache, not a store: no snapshots, no append-only file. The
# config stays in redis/redis.conf: `redis-server $DIR/redis/redis.conf` starts it again.
start_redis() {
  say "Redis on 127.0.0.1:$REDIS (the shared tile cache)"
  mkdir -p "$DIR/redis"
  cat >"$DIR/redis/redis.conf" <<EOF
port $REDIS
bind 127.0.0.1
daemonize yes
pidfile $DIR/run/redis.pid
logfile $DIR/log/redis.log
dir $DIR/redis
save ""
appendonly no
maxmemory 256mb
maxmemory-policy allkeys-lru
EOF
  redis-server "$DIR/redis/redis.conf" >/dev/null
  wait_for "Redis" 30 redis-cli -p "$REDIS" ping
}

# nginx's proxy_cache in front of HAProxy. Versioned tile URLs (from TileJSON) answer
# "public, max-age=31536000, immutable": nginx keeps them and serves repeats from its cache
# without asking a node. Unversioned tiles say "no-cache" and are not kept; everything else
# (the alert stream included) passes through unbuffered.
start_nginx() {
  say "nginx on 127.0.0.1:$NGINX (proxy_cache in front of HAProxy)"
  mkdir -p "$DIR/nginx"/{cache,tmp}
  local user=""
  [ "$(id -u)" = 0 ] && user="user root;"
  cat >"$DIR/nginx/nginx.conf" <<EOF
$user
worker_processes auto;
pid $DIR/run/nginx.pid;
error_log $DIR/log/nginx.log warn;
events { worker_connections 2048; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $DIR/nginx/tmp/body;
  proxy_temp_path $DIR/nginx/tmp/proxy;
  fastcgi_temp_path $DIR/nginx/tmp/fastcgi;
  uwsgi_temp_path $DIR/nginx/tmp/uwsgi;
  scgi_temp_path $DIR/nginx/tmp/scgi;
  proxy_cache_path $DIR/nginx/cache levels=1:2 keys_zone=twin_tiles:16m max_size=1g
                   inactive=7d use_temp_path=off;
  upstream twin {
    server 127.0.0.1:$LB;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$NGINX;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    # TileJSON and styles hand out URLs of the address the client used: this one.
    proxy_set_header Host \$http_host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    location / {
      proxy_pass http://twin;
      proxy_buffering off;
      proxy_read_timeout 1h;
    }
    location /tiles/ {
      proxy_pass http://twin;
      proxy_cache twin_tiles;
      proxy_cache_key \$request_uri;
      # One request per missing tile goes to the twin; the others wait for it.
      proxy_cache_lock on;
      add_header X-Cache-Status \$upstream_cache_status always;
    }
  }
}
EOF
  nginx -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" -e "$DIR/log/nginx.log"
  wait_for "nginx" 30 curl -sf "http://127.0.0.1:$NGINX/readyz"
}
# --- end tiles ---

up() {
  [ -x "$TWIN" ] || die "no $TWIN: run bash scripts/setup.sh test first"
  [ -n "$PGBIN" ] || die "PostgreSQL is not installed (bash scripts/setup.sh)"
  command -v haproxy >/dev/null || die "haproxy is not installed (apt-get install -y haproxy)"
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] \
    || die "mosquitto is not installed (apt-get install -y mosquitto)"
  # --- tiles ---
  command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install -y redis-server)"
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] \
    || die "nginx is not installed (apt-get install -y nginx)"
  # --- end tiles ---
  alive haproxy && die "a cluster is already up in $DIR (scripts/cluster.sh down first)"
  mkdir -p "$DIR"/{log,run,pgrun,mosquitto,node-a,node-b,workers}
  if [ "$(id -u)" = 0 ]; then chown postgres "$DIR" "$DIR/log" "$DIR/pgrun"; fi

  if [ ! -f "$DIR/primary/PG_VERSION" ]; then
    say "PostgreSQL primary on 127.0.0.1:$PRIMARY"
    as_pg "$PGBIN/initdb" -D "$DIR/primary" -U twin --auth=trust --encoding=UTF8 \
      --locale=C.UTF-8 >"$DIR/log/initdb.log"
    cat >>"$DIR/primary/postgresql.conf" <<EOF
# set by scripts/cluster.sh
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 5
hot_standby = on
# Readers on the replica may hold a snapshot a while; replaying cleanup under them would
# cancel their queries. The primary keeps what they still see instead.
hot_standby_feedback = on
EOF
    start_postgres "$DIR/primary" "$PRIMARY"
    as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PRIMARY" -U twin -d postgres -qc "CREATE DATABASE twin"
    as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PRIMARY" -U twin -d twin -qc "CREATE EXTENSION postgis"
    say "Migrating and loading the sample"
    TWIN_DATABASE_URL="$PRIMARY_URL" TWIN_HOME="$DIR/workers" "$TWIN" sample load \
      >"$DIR/log/sample.log" 2>&1 || die "loading the sample failed (see $DIR/log/sample.log)"
  else
    start_postgres "$DIR/primary" "$PRIMARY"
  fi
  if [ ! -f "$DIR/replica/PG_VERSION" ]; then
    say "Streaming replica on 127.0.0.1:$REPLICA (pg_basebackup -R)"
    as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY" -U twin -D "$DIR/replica" -R \
      -X stream -c fast
  fi
  start_postgres "$DIR/replica" "$REPLICA"

  say "mosquitto on 127.0.0.1:$MQTT"
  cat >"$DIR/mosquitto/mosquitto.conf" <<EOF
listener $MQTT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $DIR/mosquitto/
max_queued_messages 0
sys_interval 10
user $(id -un)
EOF
  "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$DIR/mosquitto/mosquitto.conf" \
    >>"$DIR/log/mosquitto.log" 2>&1 </dev/null &
  echo $! >"$DIR/run/mosquitto.pid"

  local common=(TWIN_DATABASE_URL="$PRIMARY_URL" TWIN_REPLICA_URLS="$REPLICA_URL")
  start_redis  # tiles
  common+=(TWIN_REDIS_URL="redis://127.0.0.1:$REDIS/0")  # tiles
  # What every node must share beyond the database: residents' and crews' photos (one folder;
  # on several machines a shared mount) and the residents' rate limits (in Redis, or each
  # process would count on its own).
  mkdir -p "$DIR/photos"
  common+=(TWIN_PHOTO_DIR="$DIR/photos" TWIN_RATE_LIMIT_STORAGE="redis://127.0.0.1:$REDIS/1")
  say "Two service nodes, two workers, two watchers"
  supervise node-a "${common[@]}" TWIN_HOME="$DIR/node-a" "$TWIN" serve --host 127.0.0.1 \
    --port "$NODE_A" --no-worker
  supervise node-b "${common[@]}" TWIN_HOME="$DIR/node-b" "$TWIN" serve --host 127.0.0.1 \
    --port "$NODE_B" --no-worker
  for n in 1 2; do
    supervise "worker-$n" "${common[@]}" TWIN_HOME="$DIR/workers" "$TWIN" worker
    supervise "watcher-$n" "${common[@]}" TWIN_HOME="$DIR/workers" "$TWIN" ingest watch \
      "mqtt://127.0.0.1:$MQTT/twin/readings/#" --group cluster --client-id "cluster-watcher-$n" \
      --source cluster-mqtt
  done

  cat >"$DIR/haproxy.cfg" <<EOF
global
  maxconn 2000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  # A node that is lost mid-request, or answers 503 (its database went away), is retried on
  # the other: only idempotent requests are retried (HAProxy's rule for retry-on).
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout 502 503 504
  # The client's address for the nodes (uvicorn trusts it from 127.0.0.1): the residents'
  # rate limit per address would otherwise count everyone as the balancer.
  option forwardfor
frontend twin
  bind 127.0.0.1:$LB
  default_backend nodes
backend nodes
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter 500ms fall 2 rise 2
  # Which node answered (a, b): for people following a request, and the SSE failover test.
  http-response set-header X-Twin-Node %s
  server a 127.0.0.1:$NODE_A check
  server b 127.0.0.1:$NODE_B check
EOF
  haproxy -f "$DIR/haproxy.cfg" -D -p "$DIR/run/haproxy.pid" >>"$DIR/log/haproxy.log" 2>&1
  wait_for "node A" 120 curl -sf "http://127.0.0.1:$NODE_A/readyz"
  wait_for "node B" 120 curl -sf "http://127.0.0.1:$NODE_B/readyz"
  wait_for "HAProxy" 30 curl -sf "http://127.0.0.1:$LB/readyz"
  start_nginx  # tiles
  say "The twin is up at http://127.0.0.1:$LB/ (sensor feed: mqtt://127.0.0.1:$MQTT/twin/readings/...)"
  say "Through nginx's tile cache: http://127.0.0.1:$NGINX/"  # tiles
}

down() {
  for name in "${PROCESSES[@]}"; do
    if alive "$name"; then
      kill "$(cat "$DIR/run/$name.pid")" 2>/dev/null || true
    fi
  done
  for name in "${PROCESSES[@]}"; do
    for _ in $(seq 100); do alive "$name" || break; sleep 0.1; done
    rm -f "$DIR/run/$name.pid" "$DIR/run/$name.child"
  done
  for data in replica primary; do
    if [ -f "$DIR/$data/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$DIR/$data" -m fast -w stop >/dev/null || true
    fi
  done
  say "Stopped (data kept in $DIR; remove it to start afresh)"
}

status() {
  for name in "${PROCESSES[@]}"; do
    if alive "$name"; then echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"
    else echo "$name: stopped"; fi
  done
  for data in primary replica; do
    if [ -d "$DIR/$data" ] && as_pg "$PGBIN/pg_ctl" -D "$DIR/$data" status >/dev/null 2>&1; then
      echo "postgres $data: running"
    else echo "postgres $data: stopped"; fi
  done
  if curl -sf "http://127.0.0.1:$LB/readyz" >/dev/null 2>&1; then
    echo "address: http://127.0.0.1:$LB/"
  else
    echo "address: http://127.0.0.1:$LB/ (not answering)"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: scripts/cluster.sh up|down|status" >&2; exit 2 ;;
esac
