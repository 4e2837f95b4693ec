# lib.sh: what load.sh and soak.sh share. Sourced, not run: it sets TMP (a
# temporary directory) and PIDS (processes to stop), and stops them and
# removes TMP when the script exits.
# shellcheck shell=bash

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	local rc=$? pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a loopback TCP port nothing listens on, from 20000 to
# 31999: below Linux's ephemeral ports (32768 and up), where an outgoing
# connection's local port answers no connect but cannot be bound.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# start_redis starts a throwaway redis-server on a free port, nothing
# persisted, logging to $1, sets REDIS_PORT and waits until it answers.
start_redis() { # logfile
	REDIS_PORT=$(free_port)
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$TMP" --save "" --appendonly no \
		--daemonize no --logfile "$1" &
	PIDS+=($!)
	for _ in $(seq 100); do
		redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	redis-cli -p "$REDIS_PORT" ping >/dev/null
}
