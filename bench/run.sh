#!/usr/bin/env bash
# switchboard's benchmark: the chat-app against a minimal hand-written tokio-tungstenite server
# (bench/src/bin/reference.rs), side by side in one run, on loopback only.
#
#   bash bench/run.sh              # full run (3 repeats, ~40 min on 2 cores)
#   QUICK=1 bash bench/run.sh      # sanity run: short phases, 1 repeat, small idle counts (~5 min)
#
# Knobs (environment): REPEATS, SCENARIOS ("fanout-10x10 fanout-10x10-nohistory fanout-1x1000
# idle burst redis redis-nohistory"; also "cluster cluster-nohistory nats channels-redis", not run
# by default), BURST (1000: members of the presence join burst),
# IDLE_BASE (10000), IDLE_MAX (19000), BUDGET (maxrate seconds per search), DURATION, WARMUP,
# GRACE (seconds of one measured phase), FIXED_DURATION, CHAT_LOG_LEVEL (warn), OUT (results
# directory), REDIS_SERVER (redis-server binary; the Redis scenario starts its own on a free port),
# MASTERS (3: masters of the cluster scenario's Redis Cluster, started on free ports),
# NATS_SERVER (nats-server binary; the nats scenario starts its own),
# LOG_CAP (bytes of each server's log kept, 20 MB), DJANGO_VENV (the Python environment with daphne
# and channels_redis for the channels-redis scenario, default target/django-venv, as .ci/run makes).
#
# Every server it starts is pinned to CPU 0 and the load generator to CPU 1 (when there are two
# or more), stopped by its pid after each run, and killed on exit whatever happens.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=${QUICK:-0}
if [[ "$QUICK" == 1 ]]; then
    REPEATS=${REPEATS:-1}
    IDLE_BASE=${IDLE_BASE:-2000}
    IDLE_MAX=${IDLE_MAX:-4000}
    BUDGET=${BUDGET:-25}
    WARMUP=${WARMUP:-0.5}
    DURATION=${DURATION:-2}
    GRACE=${GRACE:-1}
    FIXED_DURATION=${FIXED_DURATION:-3}
else
    REPEATS=${REPEATS:-3}
    IDLE_BASE=${IDLE_BASE:-10000}
    IDLE_MAX=${IDLE_MAX:-19000}
    BUDGET=${BUDGET:-60}
    WARMUP=${WARMUP:-1}
    DURATION=${DURATION:-3}
    GRACE=${GRACE:-1.5}
    FIXED_DURATION=${FIXED_DURATION:-8}
fi
SCENARIOS=${SCENARIOS:-"fanout-10x10 fanout-10x10-nohistory fanout-1x1000 idle burst redis redis-nohistory"}
BURST=${BURST:-1000}
DJANGO_VENV=${DJANGO_VENV:-$(pwd)/target/django-venv}
CHAT_LOG_LEVEL=${CHAT_LOG_LEVEL:-warn}
LOG_CAP=${LOG_CAP:-20000000}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
NATS_SERVER=${NATS_SERVER:-nats-server}
MASTERS=${MASTERS:-3}
MODE=full
if [[ "$QUICK" == 1 ]]; then
    MODE=quick
fi
OUT=${OUT:-target/bench/$(date +%Y%m%d-%H%M%S)-$MODE}
# No single load generator invocation may outlive this (seconds).
DEADLINE=${DEADLINE:-600}

mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
BIN=$(pwd)/target/release

if (( $(nproc) >= 2 )); then
    PIN_SERVER=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
else
    PIN_SERVER=()
    PIN_LOAD=()
fi
# Both the servers and the load generator need one descriptor per connection.
ulimit -Sn "$(ulimit -Hn)"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Processes this script started, stopped by pid only.
STARTED=()
SERVERS_STARTED=0

stop_pid() {
    local pid=$1 waited=0
    kill -TERM "$pid" 2>/dev/null || return 0
    # The chat-app drains gracefully (up to its 10 s shutdown timeout).
    while kill -0 "$pid" 2>/dev/null && (( waited < 150 )); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop in 15 s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        stop_pid "$pid"
    done
    STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget() {
    local pid=$1 kept=() p
    for p in "${STARTED[@]}"; do
        [[ "$p" == "$pid" ]] || kept+=("$p")
    done
    STARTED=("${kept[@]}")
}

# start_server NAME CMD... : starts a server that prints its http://127.0.0.1:PORT/ on stdout;
# sets SERVER_PID and SERVER_URL (ws://127.0.0.1:PORT).
start_server() {
    SERVERS_STARTED=$((SERVERS_STARTED + 1))
    local name="$1-$SERVERS_STARTED"
    shift
    local stdout="$OUT/logs/$name.out" stderr="$OUT/logs/$name.err" waited=0 addr=""
    # Created here, before the server starts, so nothing stale can be read back.
    : >"$stdout"
    # Under overload the chat-app logs a line per dropped delivery (gigabytes in a minute), so
    # only the first LOG_CAP bytes of a server's log are kept; later lines are still formatted
    # and written (and cost the server what they cost); the reader, on the server's CPU like a
    # log collector would be, discards them.
    "${PIN_SERVER[@]}" "$@" >"$stdout" \
        2> >("${PIN_SERVER[@]}" sh -c 'head -c "$1" >"$2"; exec cat >/dev/null' sh "$LOG_CAP" "$stderr") &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    while (( waited < 200 )); do
        addr=$(grep -o '127\.0\.0\.1:[0-9]*' "$stdout" 2>/dev/null | head -1 || true)
        [[ -n "$addr" ]] && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "$name exited at start-up:"
            tail -5 "$stderr" >&2 || true
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    if [[ -z "$addr" ]]; then
        log "$name did not print its address within 20 s"
        return 1
    fi
    SERVER_URL="ws://$addr"
}

stop_server() {
    stop_pid "$1"
    forget "$1"
}

free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# run_load SCENARIO ROLE SERVER REPEAT LOADGEN-ARGS... : one load generator run, stored as
# $OUT/SCENARIO__ROLE__SERVER__REPEAT.json, its table shown and kept in logs/.
run_load() {
    local scenario=$1 role=$2 server=$3 rep=$4
    shift 4
    local stem="${scenario}__${role}__${server}__${rep}" rc=0
    log "$scenario: $server (repeat $rep)"
    "${PIN_LOAD[@]}" "$BIN/loadgen" --json --deadline "$DEADLINE" "$@" \
        >"$OUT/$stem.json" 2> >(tee "$OUT/logs/$stem.txt" >&2) || rc=$?
    if (( rc != 0 )); then
        log "$scenario: loadgen exited with $rc against $server (see logs/$stem.txt)"
        [[ -s "$OUT/$stem.json" ]] || rm -f "$OUT/$stem.json"
    fi
}

# Every limit stays on at its default but one: the per-connection rate limit (200 messages/s,
# bursts of 500) is raised, because the load generator's senders are scripts sending thousands
# of messages a second each, exactly what that limit stops. It is still checked on every frame.
CHAT_LIMITS=(--message-rate 100000000 --message-burst 100000000 --byte-rate 4000000000 --byte-burst 4000000000)

# The two servers under comparison: "chat-app" (candidate) and "reference" (baseline).
start_named() {
    case $1 in
        chat-app) start_server "chat-app" "$BIN/chat-app" --bind 127.0.0.1:0 --log-level "$CHAT_LOG_LEVEL" "${CHAT_LIMITS[@]}" ;;
        # The framework's own cost: the chat-app without its room history, a feature the
        # reference does not have (one more encode, queue hop, decode and store per message).
        chat-app-nohistory) start_server "chat-app" "$BIN/chat-app" --bind 127.0.0.1:0 --log-level "$CHAT_LOG_LEVEL" --no-history "${CHAT_LIMITS[@]}" ;;
        # What presence costs: the chat-app without it (the burst scenario's baseline).
        chat-app-nopresence) start_server "chat-app" "$BIN/chat-app" --bind 127.0.0.1:0 --log-level "$CHAT_LOG_LEVEL" --no-presence "${CHAT_LIMITS[@]}" ;;
        reference) start_server "reference" "$BIN/reference" --bind 127.0.0.1:0 ;;
    esac
}
role_of() { [[ $1 == chat-app* ]] && echo cand || echo base; }

# ---------------------------------------------------------------------------------------------
fanout_scenario() {
    local rooms=$1 members=$2 start=$3 candidate=${4:-chat-app} suffix=${5:-}
    local name="fanout-${rooms}x${members}$suffix" rep server
    local shape=(--rooms "$rooms" --members "$members" --senders 1
        --warmup "$WARMUP" --duration "$DURATION" --grace "$GRACE")
    for rep in $(seq 1 "$REPEATS"); do
        for server in "$candidate" reference; do
            start_named "$server"
            run_load "$name-max" "$(role_of "$server")" "$server" "$rep" maxrate \
                --url "$SERVER_URL" --server-pid "$SERVER_PID" "${shape[@]}" \
                --room-prefix "r$rep" --start "$start" --budget "$BUDGET"
            stop_server "$SERVER_PID"
        done
    done

    # CPU per delivery and latency at a load both sustain: half the reference's max rate.
    local refs=("$OUT/$name-max__base__reference__"*.json) rate
    rate=$("$BIN/loadgen" median --pointer /best_deliveries_per_s "${refs[@]}" 2>/dev/null || echo 0)
    rate=$(awk -v r="$rate" 'BEGIN { printf "%.0f", r / 2 }')
    if (( rate <= 0 )); then
        log "$name: no reference max rate: skipping the fixed-rate runs"
        return
    fi
    log "$name: fixed rate $rate deliveries/s (half the reference's median max rate)"
    for rep in $(seq 1 "$REPEATS"); do
        for server in "$candidate" reference; do
            start_named "$server"
            run_load "$name-fixed" "$(role_of "$server")" "$server" "$rep" fanout \
                --url "$SERVER_URL" --server-pid "$SERVER_PID" \
                --rooms "$rooms" --members "$members" --senders 1 --rate "$rate" \
                --warmup "$WARMUP" --duration "$FIXED_DURATION" --grace "$GRACE" \
                --room-prefix "f$rep"
            stop_server "$SERVER_PID"
        done
    done
}

idle_scenario() {
    local count label rep server
    for count in "$IDLE_BASE" "$IDLE_MAX"; do
        label=$([[ $count == "$IDLE_MAX" ]] && echo max || echo "$count")
        for rep in $(seq 1 "$REPEATS"); do
            for server in chat-app reference; do
                start_named "$server"
                run_load "idle-$label" "$(role_of "$server")" "$server" "$rep" idle \
                    --url "$SERVER_URL" --server-pid "$SERVER_PID" --connections "$count" \
                    --sources 16 --concurrency 128 --hold 2
                stop_server "$SERVER_PID"
            done
        done
    done
}

# burst_scenario: BURST members join one room within a second, against the chat-app as it ships
# and against the chat-app without presence (the reference keeps none): presence events per
# member and the server CPU of the burst.
burst_scenario() {
    local rep server
    for rep in $(seq 1 "$REPEATS"); do
        for server in chat-app chat-app-nopresence; do
            start_named "$server"
            local role=cand
            [[ $server == chat-app-nopresence ]] && role=base
            run_load "burst-$BURST" "$role" "$server" "$rep" burst \
                --url "$SERVER_URL" --server-pid "$SERVER_PID" --members "$BURST" --within 1 \
                --settle 2 --room "burst$rep"
            stop_server "$SERVER_PID"
        done
    done
}

# wait_port PORT: until something listens there (5 s at most).
wait_port() {
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
}

# start_engine ENGINE REP: starts the engine two chat-apps share, pinned with the servers; sets
# ENGINE_PIDS (all its processes, counted as server CPU) and ENGINE_LAYER (the --layer value).
start_engine() {
    local engine=$1 rep=$2 port pid ports=() nodes=()
    ENGINE_PIDS=()
    case $engine in
        redis)
            port=$(free_port)
            "${PIN_SERVER[@]}" "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' \
                --appendonly no >"$OUT/logs/redis-$rep.out" 2>&1 &
            ENGINE_PIDS+=($!)
            wait_port "$port"
            ENGINE_LAYER="redis://127.0.0.1:$port"
            ;;
        cluster)
            # MASTERS masters, no replicas (a replica's copying would be counted as the
            # cluster's cost, and is not what carries deliveries).
            local dir="$OUT/logs/cluster-$rep" n
            mkdir -p "$dir"
            for n in $(seq 1 "$MASTERS"); do
                port=$(free_port)
                "${PIN_SERVER[@]}" "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' \
                    --appendonly no --cluster-enabled yes --dir "$dir" \
                    --cluster-config-file "$dir/nodes-$port.conf" >"$dir/$port.out" 2>&1 &
                ENGINE_PIDS+=($!)
                wait_port "$port"
                ports+=("$port")
                nodes+=("127.0.0.1:$port")
            done
            if (( MASTERS == 1 )); then
                # redis-cli refuses a cluster of fewer than 3 masters: one node takes every slot.
                redis-cli -p "${ports[0]}" CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
            else
                redis-cli --cluster create "${nodes[@]}" --cluster-yes </dev/null >"$dir/create.out"
            fi
            for _ in $(seq 1 100); do
                redis-cli -p "${ports[0]}" CLUSTER INFO | grep -q 'cluster_state:ok' && break
                sleep 0.1
            done
            ENGINE_LAYER="redis+cluster://$(IFS=,; echo "${nodes[*]}")"
            ;;
        nats)
            port=$(free_port)
            "${PIN_SERVER[@]}" "$NATS_SERVER" -a 127.0.0.1 -p "$port" >"$OUT/logs/nats-$rep.out" 2>&1 &
            ENGINE_PIDS+=($!)
            wait_port "$port"
            ENGINE_LAYER="nats://127.0.0.1:$port"
            ;;
    esac
    for pid in "${ENGINE_PIDS[@]}"; do STARTED+=("$pid"); done
}

# engine_scenario ENGINE [--no-history]: two chat-app processes sharing rooms through an engine
# of their own (redis, cluster or nats), members split across them, against one in-memory
# chat-app; server CPU counts both processes and the engine. With history (the chat-app as it
# ships: room history in Redis, written by the history workers) or without (the channel layer
# alone, both sides). NATS keeps no history, so it is measured without.
engine_scenario() {
    local engine=$1
    shift
    local flags=("$@") single=chat-app binary=$REDIS_SERVER name
    if [[ $engine == nats ]]; then
        binary=$NATS_SERVER
        flags=(--no-history)
    fi
    if ! command -v "$binary" >/dev/null; then
        log "$engine: $binary not found: skipping the $engine scenario"
        return
    fi
    name=$engine
    if [[ $engine == cluster ]]; then
        name=cluster${MASTERS}m
    fi
    if (( ${#flags[@]} )); then
        name=$name-10x10-nohistory-max single=chat-app-nohistory
    else
        name=$name-10x10-max
    fi
    local rep a_pid a_url b_pid b_url pid server_pids
    local shape=(--rooms 10 --members 10 --senders 1
        --warmup "$WARMUP" --duration "$DURATION" --grace "$GRACE" --start 50000 --budget "$BUDGET")
    for rep in $(seq 1 "$REPEATS"); do
        start_engine "$engine" "$rep"
        local layer=(--layer "$ENGINE_LAYER" --layer-prefix "bench$rep")
        start_server "chat-app-a" "$BIN/chat-app" --bind 127.0.0.1:0 --log-level "$CHAT_LOG_LEVEL" "${layer[@]}" "${flags[@]}" "${CHAT_LIMITS[@]}"
        a_pid=$SERVER_PID a_url=$SERVER_URL
        start_server "chat-app-b" "$BIN/chat-app" --bind 127.0.0.1:0 --log-level "$CHAT_LOG_LEVEL" "${layer[@]}" "${flags[@]}" "${CHAT_LIMITS[@]}"
        b_pid=$SERVER_PID b_url=$SERVER_URL
        server_pids=()
        for pid in "${ENGINE_PIDS[@]}"; do server_pids+=(--server-pid "$pid"); done
        run_load "$name" cand "$engine-2proc" "$rep" maxrate \
            --url "$a_url" --url "$b_url" --server-pid "$a_pid" --server-pid "$b_pid" \
            "${server_pids[@]}" "${shape[@]}" --room-prefix "x$rep"
        stop_server "$a_pid"
        stop_server "$b_pid"
        for pid in "${ENGINE_PIDS[@]}"; do stop_server "$pid"; done

        start_named "$single"
        run_load "$name" base inmemory-1proc "$rep" maxrate \
            --url "$SERVER_URL" --server-pid "$SERVER_PID" "${shape[@]}" --room-prefix "y$rep"
        stop_server "$SERVER_PID"
    done
}

# start_redis: a redis-server of its own on a free port (no persistence); sets REDIS_PID, REDIS_PORT.
start_redis() {
    REDIS_PORT=$(free_port)
    "${PIN_SERVER[@]}" "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly no >"$OUT/logs/redis-$1.out" 2>&1 &
    REDIS_PID=$!
    STARTED+=("$REDIS_PID")
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
        sleep 0.1
    done
}

# start_daphne NAME URL PREFIX: daphne serving the Channels tutorial's chat (tests/django) on
# channels_redis' core layer at URL; sets SERVER_PID and SERVER_URL.
start_daphne() {
    local name=$1 url=$2 prefix=$3 port waited=0
    port=$(free_port)
    (cd tests/django && CHANNELS_REDIS_URL=$url CHANNELS_REDIS_FLAVOUR=core CHANNELS_REDIS_PREFIX=$prefix \
        PYTHONDONTWRITEBYTECODE=1 exec "${PIN_SERVER[@]}" "$DJANGO_VENV/bin/daphne" \
        --bind 127.0.0.1 --port "$port" chatsite.asgi:application) \
        >"$OUT/logs/$name.out" 2> >(head -c "$LOG_CAP" >"$OUT/logs/$name.err") &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null || (( waited >= 300 )); then
            log "$name did not listen on 127.0.0.1:$port"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    SERVER_URL="ws://127.0.0.1:$port"
}

# channels_redis_scenario: the chat-app on channels_redis' formats, two processes sharing rooms
# through one Redis with members split across them, on each flavour; beside it the same shape on
# switchboard's own Redis layer and on two daphne processes serving the Channels tutorial's
# consumer on channels_redis (core). Every chat-app runs --no-history (the channels-redis layer
# keeps no history). Server CPU counts both processes and Redis.
channels_redis_scenario() {
    if ! command -v "$REDIS_SERVER" >/dev/null; then
        log "channels-redis: $REDIS_SERVER not found: skipping"
        return
    fi
    local daphne=1
    if [[ ! -x "$DJANGO_VENV/bin/daphne" ]]; then
        log "channels-redis: no daphne in $DJANGO_VENV (see tests/django/README.md): skipping daphne"
        daphne=0
    fi
    local rep a_pid a_url flavour stem
    local shape=(--rooms 10 --members 10 --senders 1
        --warmup "$WARMUP" --duration "$DURATION" --grace "$GRACE" --budget "$BUDGET")
    for rep in $(seq 1 "$REPEATS"); do
        start_redis "cr-$rep"
        for flavour in core pubsub; do
            local layer=(--layer "channels-redis://127.0.0.1:$REDIS_PORT/0?flavour=$flavour&prefix=cr$rep$flavour")
            start_server "chat-app-cr-a" "$BIN/chat-app" --bind 127.0.0.1:0 --log-level "$CHAT_LOG_LEVEL" "${layer[@]}" --no-history "${CHAT_LIMITS[@]}"
            a_pid=$SERVER_PID a_url=$SERVER_URL
            start_server "chat-app-cr-b" "$BIN/chat-app" --bind 127.0.0.1:0 --log-level "$CHAT_LOG_LEVEL" "${layer[@]}" --no-history "${CHAT_LIMITS[@]}"
            run_load "cr-$flavour-redis-10x10-max" cand "chatapp-$flavour-2proc" "$rep" maxrate \
                --url "$a_url" --url "$SERVER_URL" --server-pid "$a_pid" --server-pid "$SERVER_PID" \
                --server-pid "$REDIS_PID" "${shape[@]}" --start 50000 --room-prefix "c$rep$flavour"
            stop_server "$a_pid"
            stop_server "$SERVER_PID"
        done
        # The same core run, measured against daphne (its own scenario, so the report shows the ratio).
        stem="cr-core-redis-10x10-max__cand__chatapp-core-2proc__$rep.json"
        [[ -s "$OUT/$stem" ]] && cp "$OUT/$stem" "$OUT/cr-daphne-10x10-max__cand__chatapp-core-2proc__$rep.json"

        local native=(--layer "redis://127.0.0.1:$REDIS_PORT" --layer-prefix "nat$rep")
        start_server "chat-app-nat-a" "$BIN/chat-app" --bind 127.0.0.1:0 --log-level "$CHAT_LOG_LEVEL" "${native[@]}" --no-history "${CHAT_LIMITS[@]}"
        a_pid=$SERVER_PID a_url=$SERVER_URL
        start_server "chat-app-nat-b" "$BIN/chat-app" --bind 127.0.0.1:0 --log-level "$CHAT_LOG_LEVEL" "${native[@]}" --no-history "${CHAT_LIMITS[@]}"
        run_load "cr-core-redis-10x10-max" base "redis-2proc" "$rep" maxrate \
            --url "$a_url" --url "$SERVER_URL" --server-pid "$a_pid" --server-pid "$SERVER_PID" \
            --server-pid "$REDIS_PID" "${shape[@]}" --start 50000 --room-prefix "n$rep"
        stop_server "$a_pid"
        stop_server "$SERVER_PID"
        stem="cr-core-redis-10x10-max__base__redis-2proc__$rep.json"
        [[ -s "$OUT/$stem" ]] && cp "$OUT/$stem" "$OUT/cr-pubsub-redis-10x10-max__base__redis-2proc__$rep.json"

        if (( daphne )); then
            start_daphne "daphne-a-$rep" "redis://127.0.0.1:$REDIS_PORT/0" "dj$rep"
            a_pid=$SERVER_PID a_url=$SERVER_URL
            start_daphne "daphne-b-$rep" "redis://127.0.0.1:$REDIS_PORT/0" "dj$rep"
            run_load "cr-daphne-10x10-max" base "daphne-core-2proc" "$rep" maxrate \
                --url "$a_url" --url "$SERVER_URL" --server-pid "$a_pid" --server-pid "$SERVER_PID" \
                --server-pid "$REDIS_PID" "${shape[@]}" --start 1000 --room-prefix "d$rep"
            stop_server "$a_pid"
            stop_server "$SERVER_PID"
        fi
        stop_server "$REDIS_PID"
    done
}

# ---------------------------------------------------------------------------------------------
log "building (release)"
cargo build --release -p chat-app -p bench

machine() {
    echo "- mode: $MODE, $REPEATS repeat(s)"
    echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
    echo "- memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "- open files (hard): $(ulimit -Hn); pinned: server ${PIN_SERVER[*]:-no}, loadgen ${PIN_LOAD[*]:-no}"
    echo "- chat-app log level: $CHAT_LOG_LEVEL"
}
{
    echo "# switchboard benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    machine
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/report.md"
started=$(date +%s)

for scenario in $SCENARIOS; do
    case $scenario in
        fanout-10x10) fanout_scenario 10 10 50000 ;;
        fanout-10x10-nohistory) fanout_scenario 10 10 50000 chat-app-nohistory -nohistory ;;
        fanout-1x1000) fanout_scenario 1 1000 50000 ;;
        idle) idle_scenario ;;
        burst) burst_scenario ;;
        redis) engine_scenario redis ;;
        redis-nohistory) engine_scenario redis --no-history ;;
        cluster) engine_scenario cluster ;;
        cluster-nohistory) engine_scenario cluster --no-history ;;
        nats) engine_scenario nats ;;
        channels-redis) channels_redis_scenario ;;
        *) log "unknown scenario $scenario (known: fanout-10x10 fanout-10x10-nohistory fanout-1x1000 idle burst redis redis-nohistory cluster cluster-nohistory nats channels-redis)" ;;
    esac
done

{
    echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg); took $(( $(date +%s) - started )) s"
    echo
    "$BIN/loadgen" report "$OUT"
} >>"$OUT/report.md"
echo
cat "$OUT/report.md"
echo
log "results: $OUT"
