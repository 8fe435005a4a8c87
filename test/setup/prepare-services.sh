#!/usr/bin/env bash
# Prepares this machine's services for `npm test` (run by the `pretest` script), so that the
# README's test command alone passes on a fresh machine with Debian's RabbitMQ and Redis:
#
# - RabbitMQ runs with an open-file limit of 20000 (each journal stream holds files open; the
#   Debian default of 1024 runs out, and past it the node stays broken until restarted), raised in
#   /etc/security/limits.d/rabbitmq.conf and applied by restarting the node when it runs with less;
# - the management plugin is enabled (discovery, bindings and the resource guard read it);
# - Redis answers on 6379;
# - Debian's Chromium is at /usr/bin/chromium (the status page's browser test drives it with
#   playwright-core), installed with apt-get when missing and this user may.
# - the Python client's tools are installed from Debian's packages (python3-grpcio, python3-protobuf,
#   protobuf-compiler, protobuf-compiler-grpc): its test regenerates clients/python and runs its example.
#
# A service named by a TIDEMARK_TEST_* URL is someone else's: it is left alone. Without root (or
# sudo) nothing is changed; a missing piece is reported and the script fails before any test runs.
# Every step is idempotent: on a prepared machine nothing is restarted.
# Set TIDEMARK_TEST_PREPARE=false to skip this script entirely.
set -euo pipefail

WANT_NOFILE=${TIDEMARK_TEST_NOFILE:-20000}
LIMITS_FILE=/etc/security/limits.d/rabbitmq.conf
MANAGEMENT_API=http://localhost:15672/api/overview

log() { echo "[prepare] $*" >&2; }
die() {
  echo "[prepare] ERROR: $*" >&2
  echo "[prepare] The tests did not run. Fix the above, or point the tests at prepared services with TIDEMARK_TEST_AMQP_URL / TIDEMARK_TEST_MANAGEMENT_URL / TIDEMARK_TEST_REDIS_URL (README, 'Two commands')." >&2
  exit 1
}

can_root() { [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    die "need root to run: $* (run npm test as root, allow sudo without a password, or do it by hand)"
  fi
}

# Waits until "$@" succeeds, for up to $1 seconds.
wait_for() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

# PID of the RabbitMQ node's Erlang VM (the node rabbitmqctl talks to, so not another node that
# runs on this machine), or nothing while it does not answer.
beam_pid() {
  local ctl=(rabbitmqctl)
  can_root && [ "$(id -u)" -ne 0 ] && ctl=(sudo -n rabbitmqctl)
  "${ctl[@]}" -q eval 'list_to_integer(os:getpid()).' 2>/dev/null | tr -dc '0-9' || true
}

# Soft open-file limit of a process ("unlimited" counts as enough).
soft_nofile() {
  local value
  value=$(awk '/^Max open files/ {print $4}' "/proc/$1/limits")
  [ "$value" = unlimited ] && value=$WANT_NOFILE
  echo "$value"
}

# nofile granted to the rabbitmq user by the limits file (0 if it grants none).
configured_nofile() {
  [ -f "$LIMITS_FILE" ] || { echo 0; return; }
  awk '$1 == "rabbitmq" && ($2 == "-" || $2 == "soft") && $3 == "nofile" {print $4; found = 1; exit}
       END {if (!found) print 0}' "$LIMITS_FILE"
}

rabbitmq_node_up() { rabbitmqctl -q status >/dev/null 2>&1; }

start_rabbitmq() {
  log "starting RabbitMQ with an open-file limit of $1"
  # su (used by rabbitmq-server for root) applies limits.d through pam_limits; the ulimit covers
  # systems whose su does not, since the node inherits this shell's limit.
  as_root sh -c "ulimit -n $1 2>/dev/null || ulimit -n \"\$(ulimit -Hn)\"; exec rabbitmq-server -detached"
  wait_for 120 as_root rabbitmqctl -q await_startup || die "RabbitMQ started but did not finish booting within 120s; see /var/log/rabbitmq/"
}

stop_rabbitmq() {
  local pid
  pid=$(beam_pid)
  log "stopping RabbitMQ (pid $pid) to apply the open-file limit"
  as_root rabbitmqctl -q stop
  wait_for 60 test ! -e "/proc/$pid" || die "RabbitMQ (pid $pid) did not stop within 60s"
}

ensure_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    log "no local RabbitMQ installed: the tests will use containers if a Docker engine is reachable"
    return
  fi
  local hard target configured pid current
  hard=$(ulimit -Hn)
  target=$WANT_NOFILE
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$target" ]; then
    log "WARNING: the hard open-file limit here is $hard, below $WANT_NOFILE: RabbitMQ gets $hard; tests with many queues size themselves down"
    target=$hard
  fi

  configured=$(configured_nofile)
  if [ "$configured" -lt "$target" ]; then
    if can_root; then
      log "writing 'rabbitmq - nofile $target' to $LIMITS_FILE (was $configured)"
      printf '# Written by Tidemark'"'"'s test preparation: RabbitMQ streams need many open files.\nrabbitmq - nofile %s\n' "$target" |
        as_root tee "$LIMITS_FILE" >/dev/null
    else
      log "WARNING: $LIMITS_FILE grants RabbitMQ $configured open files, not $target, and this user cannot change it"
    fi
  fi

  if ! rabbitmq_node_up; then
    start_rabbitmq "$target"
  else
    wait_for 120 as_root rabbitmqctl -q await_startup || die "RabbitMQ is running but did not finish booting within 120s"
  fi

  pid=$(beam_pid)
  [ -n "$pid" ] || die "RabbitMQ answers but no beam.smp process of it was found"
  current=$(soft_nofile "$pid")
  if [ "$current" -lt "$target" ]; then
    if can_root; then
      log "RabbitMQ (pid $pid) runs with $current open files, needs $target: restarting it"
      stop_rabbitmq
      start_rabbitmq "$target"
      pid=$(beam_pid)
      current=$(soft_nofile "$pid")
      [ "$current" -ge "$target" ] ||
        die "RabbitMQ restarted (pid $pid) but has $current open files, not $target; check $LIMITS_FILE and pam_limits"
    else
      log "WARNING: RabbitMQ runs with $current open files and this user cannot restart it; tests with many queues size themselves down"
    fi
  fi
  log "RabbitMQ is up (pid $pid, open-file limit $current)"

  if ! curl -fsS -u guest:guest -o /dev/null "$MANAGEMENT_API" 2>/dev/null; then
    log "enabling the RabbitMQ management plugin"
    as_root rabbitmq-plugins -q enable rabbitmq_management >/dev/null
    wait_for 60 curl -fsS -u guest:guest -o /dev/null "$MANAGEMENT_API" ||
      die "RabbitMQ management API at $MANAGEMENT_API did not answer within 60s"
  fi
  log "RabbitMQ management API answers"
}

ensure_redis() {
  if redis-cli -p 6379 ping 2>/dev/null | grep -q PONG; then
    log "Redis answers"
    return
  fi
  command -v redis-server >/dev/null 2>&1 || die "Redis does not answer on localhost:6379 and redis-server is not installed (apt install redis-server)"
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
  wait_for 30 sh -c 'redis-cli -p 6379 ping | grep -q PONG' || die "Redis did not answer PING within 30s"
  log "Redis answers"
}

CHROMIUM=/usr/bin/chromium

ensure_chromium() {
  if [ -x "$CHROMIUM" ]; then
    log "Chromium is installed ($CHROMIUM)"
    return
  fi
  if can_root && command -v apt-get >/dev/null 2>&1; then
    log "installing Chromium (apt-get install chromium) for the status page's browser test"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null ||
      { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } ||
      die "apt-get could not install chromium; install Debian's chromium package by hand (the status page test needs $CHROMIUM)"
    [ -x "$CHROMIUM" ] || die "chromium was installed but $CHROMIUM is missing; the status page test needs it there"
    log "Chromium is installed ($CHROMIUM)"
    return
  fi
  die "$CHROMIUM is missing and this user cannot install it: run 'apt-get install chromium' as root (the status page's browser test drives it)"
}

PYTHON_PACKAGES=(python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc)

python_client_tools_present() {
  /usr/bin/python3 -c 'import grpc, google.protobuf' >/dev/null 2>&1 &&
    command -v protoc >/dev/null 2>&1 && command -v grpc_python_plugin >/dev/null 2>&1
}

# test/integration/python-client.test.ts: Debian's grpcio and protoc with its gRPC plugin.
ensure_python_client_tools() {
  if python_client_tools_present; then
    log "Python client tools present (python3-grpcio, protoc, grpc_python_plugin)"
    return
  fi
  command -v apt-get >/dev/null 2>&1 && can_root ||
    die "the Python client test needs Debian's ${PYTHON_PACKAGES[*]}; install them (apt-get install ${PYTHON_PACKAGES[*]})"
  log "installing ${PYTHON_PACKAGES[*]} with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PYTHON_PACKAGES[@]}" >/dev/null ||
    { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PYTHON_PACKAGES[@]}" >/dev/null; } ||
    die "apt-get could not install ${PYTHON_PACKAGES[*]}; install them by hand"
  python_client_tools_present || die "${PYTHON_PACKAGES[*]} are installed but /usr/bin/python3 cannot import grpc or protoc/grpc_python_plugin are missing"
  log "Python client tools installed"
}

main() {
  if [ "${TIDEMARK_TEST_PREPARE:-true}" = false ]; then
    log "TIDEMARK_TEST_PREPARE=false: not preparing services"
    return
  fi
  if [ -z "${TIDEMARK_TEST_AMQP_URL:-}" ]; then ensure_rabbitmq; else log "RabbitMQ from TIDEMARK_TEST_AMQP_URL: left alone"; fi
  if [ -z "${TIDEMARK_TEST_REDIS_URL:-}" ]; then ensure_redis; else log "Redis from TIDEMARK_TEST_REDIS_URL: left alone"; fi
  ensure_chromium
  ensure_python_client_tools
}

# Sourcing the file (for trying a step by hand) defines the functions without running anything.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
