#!/usr/bin/env bash
# Set-up, build, local cluster and tests on a Debian 12 machine.
#
#   deploy/dsync-dev.sh up      install what is missing, build, start redis-server and a
#                               3-node cluster (config/cluster-3.ini), show it answering
#   deploy/dsync-dev.sh down    stop that cluster and its redis-server
#   deploy/dsync-dev.sh test    install what is missing, build, run unit, sim and
#                               integration tests (what CI runs)
#   deploy/dsync-dev.sh build   install what is missing and build only
#
# BUILD_DIR (default ./build) and JOBS (default 2) can be set in the environment.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build}
jobs=${JOBS:-2}
run_dir=$build_dir/local-cluster

packages=(g++ cmake ninja-build pkg-config libcaf-dev libhiredis-dev libjemalloc-dev libfmt-dev doctest-dev
          nlohmann-json3-dev libssl-dev redis-server prometheus python3 curl
          procps iproute2 iptables)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

install_missing() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() {
  say "building in $build_dir"
  cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build_dir" -j "$jobs"
}

wait_http() {  # port, what
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$1/v1/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$2 did not answer on port $1; see $run_dir/*.log" >&2
  return 1
}

stop_cluster() {
  [ -d "$run_dir" ] || return 0
  for pidfile in "$run_dir"/*.pid; do
    [ -e "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

up() {
  install_missing
  build
  stop_cluster
  mkdir -p "$run_dir"
  say "starting redis-server on 127.0.0.1:6379"
  if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
    setsid redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
      >"$run_dir/redis.log" 2>&1 &
    echo $! >"$run_dir/redis.pid"
  fi
  say "starting node-1, node-2, node-3 from config/cluster-3.ini"
  for i in 1 2 3; do
    (cd "$run_dir" && NODE_ID=node-$i exec setsid "$build_dir/app/dsync-node" \
       --config-file="$repo/config/cluster-3.ini" >"node-$i.log" 2>&1) &
    echo $! >"$run_dir/node-$i.pid"
  done
  for i in 1 2 3; do wait_http $((5999 + i)) "node-$i"; done
  sleep 0.5  # let the peer links finish their handshakes
  say "GET http://127.0.0.1:6000/v1/cluster"
  curl -fsS http://127.0.0.1:6000/v1/cluster | python3 -m json.tool
  say "dsyncctl --node 127.0.0.1:5001 cluster status"
  "$build_dir/app/dsyncctl" --node 127.0.0.1:5001 cluster status
  say "a replicated write through node-3, read back through node-2"
  curl -fsS -X PUT http://127.0.0.1:6002/v1/kv/hello -d '{"value": "world"}'; echo
  curl -fsS http://127.0.0.1:6001/v1/kv/hello; echo
  say "a lock taken through node-1 (with its fencing token), seen from node-3, released"
  curl -fsS -X POST http://127.0.0.1:6000/v1/locks/printer/acquire -d '{"client": "job-1", "ttl_ms": 10000}'; echo
  curl -fsS http://127.0.0.1:6002/v1/locks/printer; echo
  curl -fsS -X POST http://127.0.0.1:6000/v1/locks/printer/release -d '{"client": "job-1"}'; echo
  say "a message enqueued through node-2, dequeued through node-1 (ack it with its id and receipt)"
  curl -fsS -X POST http://127.0.0.1:6001/v1/queues/mail/messages -d '{"payload": {"to": "ann"}}'; echo
  "$build_dir/app/dsyncctl" --node 127.0.0.1:5000 --consumer demo queue pop mail
  say "the coherent cache: a put on node-1, reads on node-2 and node-1 (line states follow the protocol)"
  for _ in $(seq 1 50); do
    curl -fsS http://127.0.0.1:6000/v1/cache 2>/dev/null | grep -q '"epoch":[1-9]' && break
    sleep 0.1
  done
  curl -fsS -X PUT http://127.0.0.1:6000/v1/cache/user:7 -d '{"value": "ann"}'; echo
  curl -fsS http://127.0.0.1:6001/v1/cache/user:7; echo
  curl -fsS http://127.0.0.1:6000/v1/cache/user:7; echo
  say "running: HTTP on 127.0.0.1:6000-6002, CAF on 5000-5002, logs in $run_dir; stop with: $0 down"
}

run_tests() {
  install_missing
  build
  say "running unit, sim and integration tests"
  cd "$build_dir"
  ctest -L 'unit|sim|integration' --output-on-failure --timeout 600 -j 1
}

case "${1:-}" in
  up) up ;;
  down) stop_cluster; say "stopped" ;;
  test) run_tests ;;
  build) install_missing; build ;;
  *) echo "usage: $0 up|down|test|build" >&2; exit 2 ;;
esac
