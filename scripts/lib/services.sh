# shellcheck shell=bash
# The local servers of the integration tests and the chat backend: moto (a local AWS) and
# redis-server, each on a free loopback port, started and stopped by PID. Sourced by
# scripts/test, scripts/moto-server and .ci/run; the caller's working directory is the
# project root.
#
#   source scripts/lib/services.sh
#   trap services_stop EXIT
#   moto_start        # sets MOTO_ENDPOINT, moto_pid
#   redis_start       # sets REDIS_URL, REDIS_SERVER_BIN, redis_pid
#   redis_cluster_start   # sets REDIS_CLUSTER_URLS, redis_cluster_pids
#
# Environment: MOTO_VENV (default .venv-moto), PYTHON (default python3), MOTO_VERSION
# (default 5.2.5), MOTO_READY_TIMEOUT in seconds (default 60), REDIS_SERVER_BIN (default:
# redis-server on PATH, installed with apt-get when missing), REDIS_READY_TIMEOUT in
# seconds (default 20). Logs: target/moto/moto_server.log, target/redis/redis-server.log.

moto_venv=${MOTO_VENV:-.venv-moto}
moto_pid=
redis_pid=
redis_cluster_pids=()

# moto_install: the virtualenv $moto_venv with moto[server] from PyPI, if missing.
moto_install() {
    local python=${PYTHON:-python3} version=${MOTO_VERSION:-5.2.5} start=$SECONDS
    if [[ -x "$moto_venv/bin/moto_server" ]] && "$moto_venv/bin/python" -c 'import moto.server' 2>/dev/null; then
        echo "== moto $("$moto_venv/bin/python" -c 'import moto; print(moto.__version__)') already installed in $moto_venv (install time 0 s)"
        return
    fi
    echo "== installing moto[server]==$version into $moto_venv (from PyPI)"
    "$python" -m venv "$moto_venv"
    "$moto_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "moto[server]==$version"
    echo "== moto installed in $((SECONDS - start)) s"
}

# free_port: a loopback port nobody listens on (now).
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# moto_start [PORT]: moto on PORT (default: a free one), waits until /moto-api/ answers;
# exports MOTO_ENDPOINT.
moto_start() {
    moto_install
    local port=${1:-$(free_port)} timeout=${MOTO_READY_TIMEOUT:-60} log=target/moto/moto_server.log
    local endpoint="http://127.0.0.1:$port" start=$SECONDS
    mkdir -p target/moto
    "$moto_venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 </dev/null &
    moto_pid=$!
    until "$moto_venv/bin/python" -c "import urllib.request
urllib.request.urlopen('$endpoint/moto-api/', timeout=1).read()" 2>/dev/null; do
        if ! kill -0 "$moto_pid" 2>/dev/null; then
            echo "error: moto_server (pid $moto_pid) exited before answering on $endpoint; its log ($log):" >&2
            tail -n 30 "$log" >&2 || true
            moto_pid=
            return 1
        fi
        if ((SECONDS - start >= timeout)); then
            echo "error: moto_server (pid $moto_pid) did not answer $endpoint/moto-api/ within ${timeout} s; its log ($log):" >&2
            tail -n 30 "$log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    export MOTO_ENDPOINT="$endpoint"
    echo "== moto ready at $endpoint (pid $moto_pid, log $log)"
}

# redis_install: redis-server from the Debian package (apt-get; root or sudo) if missing;
# exports REDIS_SERVER_BIN.
redis_install() {
    local bin=${REDIS_SERVER_BIN:-$(command -v redis-server || true)} start=$SECONDS
    if [[ -n "$bin" ]]; then
        echo "== redis-server already installed at $bin (install time 0 s)"
    else
        echo "== installing redis-server (Debian package, apt-get)"
        local as_root=()
        ((EUID == 0)) || as_root=(sudo)
        "${as_root[@]}" apt-get update -qq
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends redis-server >/dev/null
        bin=$(command -v redis-server)
        echo "== redis-server installed in $((SECONDS - start)) s"
    fi
    export REDIS_SERVER_BIN="$bin"
}

# redis_wait_ready WHAT PID PORT LOG START TIMEOUT: waits until LOG says the redis-server
# PID accepts connections; fails, with the log's tail, when the process is gone or TIMEOUT
# seconds have passed since START (a $SECONDS value).
redis_wait_ready() {
    local what=$1 pid=$2 port=$3 log=$4 start=$5 timeout=$6
    until grep -qs "Ready to accept connections" "$log"; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS - start >= timeout)); then
            echo "error: $what (pid $pid) not ready on port $port within ${timeout} s; its log ($log):" >&2
            tail -n 30 "$log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
}

# redis_start: redis-server on a free port without persistence, waits for its "Ready to
# accept connections"; exports REDIS_URL and REDIS_SERVER_BIN (the tests that kill and
# restart a redis-server start their own from it).
redis_start() {
    redis_install
    local port timeout=${REDIS_READY_TIMEOUT:-20} log=target/redis/redis-server.log start=$SECONDS
    port=$(free_port)
    mkdir -p target/redis
    "$REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --daemonize no --logfile "" >"$log" 2>&1 </dev/null &
    redis_pid=$!
    redis_wait_ready "redis-server" "$redis_pid" "$port" "$log" "$start" "$timeout" || return 1
    export REDIS_URL="redis://127.0.0.1:$port/"
    echo "== $("$REDIS_SERVER_BIN" --version | cut -d' ' -f1-3) ready at $REDIS_URL (pid $redis_pid, log $log)"
}

# redis_cluster_start: a 3-node Redis Cluster (three primaries, no replicas) on free loopback
# ports, each node with its cluster bus on another free port (--cluster-port) and its
# nodes.conf under target/redis/cluster-PORT; `redis-cli --cluster create` assigns the 16384
# slots; waits for cluster_state:ok. Exports REDIS_CLUSTER_URLS (the nodes' redis:// URLs,
# comma-separated). Logs: target/redis/cluster-PORT/redis-server.log.
redis_cluster_start() {
    redis_install
    local timeout=${REDIS_READY_TIMEOUT:-20} start=$SECONDS port bus dir log pid
    local cli=${REDIS_CLI_BIN:-$(dirname "$REDIS_SERVER_BIN")/redis-cli}
    local nodes=() urls=()
    for _ in 1 2 3; do
        port=$(free_port)
        bus=$(free_port)
        dir=target/redis/cluster-$port
        log=$dir/redis-server.log
        rm -f "$dir/nodes.conf" "$log"
        mkdir -p "$dir"
        "$REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
            --cluster-port "$bus" --cluster-config-file nodes.conf --dir "$dir" \
            --save "" --appendonly no --daemonize no --logfile "" >"$log" 2>&1 </dev/null &
        pid=$!
        redis_cluster_pids+=("$pid")
        redis_wait_ready "cluster node redis-server" "$pid" "$port" "$log" "$start" "$timeout" || return 1
        nodes+=("127.0.0.1:$port")
        urls+=("redis://127.0.0.1:$port/")
    done
    "$cli" --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
        >target/redis/cluster-create.log 2>&1 || {
        echo "error: redis-cli --cluster create failed; its output (target/redis/cluster-create.log):" >&2
        tail -n 30 target/redis/cluster-create.log >&2 || true
        return 1
    }
    for node in "${nodes[@]}"; do
        until "$cli" -h 127.0.0.1 -p "${node##*:}" cluster info 2>/dev/null | grep -q "cluster_state:ok"; do
            if ((SECONDS - start >= timeout)); then
                echo "error: the Redis Cluster (${nodes[*]}) is not ok within ${timeout} s" >&2
                return 1
            fi
            sleep 0.1
        done
    done
    REDIS_CLUSTER_URLS=$(IFS=,; echo "${urls[*]}")
    export REDIS_CLUSTER_URLS
    echo "== Redis Cluster of 3 primaries ready at ${nodes[*]} (pids ${redis_cluster_pids[*]}) in $((SECONDS - start)) s"
}

# stop_pid NAME PID: stops a server this shell started, by its PID.
stop_pid() {
    if [[ -n "$2" ]] && kill -0 "$2" 2>/dev/null; then
        kill "$2" 2>/dev/null || true
        wait "$2" 2>/dev/null || true
        echo "== $1 stopped (pid $2)"
    fi
}

# services_stop: stops whatever moto_start, redis_start and redis_cluster_start started. For `trap ... EXIT`.
services_stop() {
    stop_pid moto "$moto_pid"
    stop_pid redis-server "$redis_pid"
    local pid
    for pid in "${redis_cluster_pids[@]}"; do
        stop_pid "redis-server (cluster node)" "$pid"
    done
    moto_pid=
    redis_pid=
    redis_cluster_pids=()
}
