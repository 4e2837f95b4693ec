#!/usr/bin/env bash
# load.sh: otpd under ghz load, next to the baseline, in one run (`make load`).
#
# Starts a throwaway redis-server, otpd (bin/otpd, -trimpath, fake provider,
# deploy/ghz/otpd-load.yaml) and the baseline (deploy/ghz/baseline), all on
# 127.0.0.1, then loads VerifyCode and SendCode on each with the same ghz
# call, data and settings, and prints RPS, p50 and p99 with the otpd/baseline
# ratios against the targets. See deploy/ghz/README.md.
#
# The two servers are measured in LOAD_ROUNDS interleaved rounds (baseline
# then otpd, then otpd then baseline, ...): a shared 2-core VM drifts by
# 10-20 % within minutes, and a ratio of two runs taken back to back, in
# both orders, cancels most of that. The ratios reported are the medians
# of the rounds' ratios.
#
# Fails (exit 1) when any call of any ghz run is not OK, or when otpd's
# metrics show a send or a verification that took another path than the one
# measured. A ratio below its target prints SHORT and fails only with
# LOAD_STRICT=1.
#
# Settings (environment):
#   LOAD_C=50            concurrent calls (ghz -c)
#   LOAD_CONNECTIONS=1   HTTP/2 connections they share (ghz --connections)
#   LOAD_ROUNDS=3        interleaved rounds (1 to 5), each one measured run
#                        per server and method
#   LOAD_DURATION=10s    each measured run (ghz -z)
#   LOAD_WARMUP=3s       the warm-up run before each measured one
#   LOAD_POOL=20000      recipients holding a live code for VerifyCode
#   LOAD_LOG_LEVEL=info  otpd's log level (otpd's stderr goes to a file)
#   LOAD_OUT=bin/load    where the ghz JSON reports and logs are kept
#   LOAD_STRICT=0        1: exit 1 when a ratio misses its target
#   LOAD_PROFILE=0       1: build otpd with -tags pprof and keep a CPU profile
#                        of each measured otpd run ($LOAD_OUT/<run>.pprof;
#                        go tool pprof -top bin/otpd <file>); profiling costs
#                        a few percent, so such a run's ratios are not the
#                        ones to report
#   OTPD_HMAC_KEY        otpd's secret; a random one when unset
set -euo pipefail

export GOTOOLCHAIN=local
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GO=${GO:-go}
BIN=$ROOT/bin
GHZ=$BIN/ghz
LOAD_C=${LOAD_C:-50}
LOAD_CONNECTIONS=${LOAD_CONNECTIONS:-1}
LOAD_ROUNDS=${LOAD_ROUNDS:-3}
LOAD_DURATION=${LOAD_DURATION:-10s}
LOAD_WARMUP=${LOAD_WARMUP:-3s}
LOAD_POOL=${LOAD_POOL:-20000}
LOAD_STRICT=${LOAD_STRICT:-0}
LOAD_PROFILE=${LOAD_PROFILE:-0}
LOAD_OUT=${LOAD_OUT:-$BIN/load}
export OTPD_LOAD_LOG_LEVEL=${LOAD_LOG_LEVEL:-info}
export OTPD_HMAC_KEY=${OTPD_HMAC_KEY:-$(head -c 48 /dev/urandom | base64 | tr -d '\n')}

# Targets: otpd RPS at least this share of the baseline's; p99 at most
# P99_MAX times the baseline's.
declare -A RPS_MIN=([VerifyCode]=0.8 [SendCode]=0.6)
P99_MAX=2.0

NEEDED=(redis-server redis-cli jq "$GO")
# otpd_fake: the fake provider, left out of release builds (README, "Providers").
TAGS=(-tags otpd_fake)
if [ "$LOAD_PROFILE" = 1 ]; then
	NEEDED+=(curl)
	TAGS=(-tags otpd_fake,pprof)
	[[ $LOAD_DURATION =~ ^[0-9]+s$ ]] && [ "${LOAD_DURATION%s}" -ge 3 ] ||
		{ echo "load: LOAD_PROFILE=1 needs LOAD_DURATION in seconds, at least 3s (got $LOAD_DURATION)" >&2; exit 1; }
fi
[[ $LOAD_ROUNDS =~ ^[1-5]$ ]] || { echo "load: LOAD_ROUNDS must be 1 to 5 (got $LOAD_ROUNDS)" >&2; exit 1; }
for cmd in "${NEEDED[@]}"; do
	command -v "$cmd" >/dev/null || { echo "load: $cmd is missing (make redis-server installs redis)" >&2; exit 1; }
done

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

# free_port prints a loopback TCP port nothing listens on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

echo "== build (bin/otpd -trimpath, bin/otpctl, bin/otpd-load-baseline, bin/ghz)"
(cd "$ROOT" && $GO build -trimpath "${TAGS[@]}" -o "$BIN/otpd" ./cmd/otpd && $GO build -trimpath -o "$BIN/otpctl" ./cmd/otpctl)
(cd "$ROOT/deploy/ghz/baseline" && $GO build -trimpath -o "$BIN/otpd-load-baseline" .)
[ -x "$GHZ" ] || (cd "$ROOT/tools" && $GO build -o "$BIN/" github.com/bojand/ghz/cmd/ghz)
mkdir -p "$LOAD_OUT"
LOAD_OUT=$(cd "$LOAD_OUT" && pwd) # redis-server opens its log after moving to its --dir
rm -f "$LOAD_OUT"/*.json "$LOAD_OUT"/*.log "$LOAD_OUT"/*.pprof "$LOAD_OUT"/*.cpu "$LOAD_OUT"/*.redis.txt

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$TMP" --save "" --appendonly no \
	--daemonize no --logfile "$LOAD_OUT/redis.log" &
REDIS_PID=$!
PIDS+=($!)
for _ in $(seq 100); do
	redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
	sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null

OTPD_ADDR=127.0.0.1:$(free_port)
OTPD_HTTP=127.0.0.1:$(free_port)
BASE_ADDR=127.0.0.1:$(free_port)
OTPD_LOAD_GRPC=$OTPD_ADDR OTPD_LOAD_HTTP=$OTPD_HTTP OTPD_LOAD_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 \
	"$BIN/otpd" -config "$ROOT/deploy/ghz/otpd-load.yaml" 2>"$LOAD_OUT/otpd.log" &
OTPD_PID=$!
PIDS+=($!)
# The baseline keeps its keys in db 1 of the same redis-server.
"$BIN/otpd-load-baseline" -listen "$BASE_ADDR" -redis "127.0.0.1:$REDIS_PORT" -db 1 2>"$LOAD_OUT/baseline.log" &
BASE_PID=$!
PIDS+=($!)

wait_serving() { # name addr
	for _ in $(seq 150); do
		"$BIN/otpctl" -addr "$2" -timeout 1s health >/dev/null 2>&1 && return
		sleep 0.2
	done
	echo "load: $1 at $2 is not SERVING; its log:" >&2
	tail -n 20 "$LOAD_OUT/$1.log" >&2
	exit 1
}
wait_serving otpd "$OTPD_ADDR"
wait_serving baseline "$BASE_ADDR"

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== redis 127.0.0.1:$REDIS_PORT, otpd $OTPD_ADDR (log level $OTPD_LOAD_LOG_LEVEL), baseline $BASE_ADDR"
echo "== ghz: -c $LOAD_C --connections $LOAD_CONNECTIONS, warm-up $LOAD_WARMUP, $LOAD_ROUNDS rounds of $LOAD_DURATION; reports in $LOAD_OUT"

# Request data (ghz templates; -d is parsed as JSON before templating, hence
# the backticks). SendCode: a fresh valid US number per call, +1415 then 7
# digits from the offset (every one of +14152000000..+14159999999 is a valid
# number): 2000000 for the warm-up, then a million numbers per round from
# 3000000, below the seed's 8000000. VerifyCode: a wrong 7-digit code (a live code has 6 digits, so it
# never matches) for one of the LOAD_POOL numbers holding a live code.
send_data() { # offset
	printf '{"recipient":"+1415{{printf `%%07d` (add %d .RequestNumber)}}","usage_type":"USAGE_TYPE_SIGN_IN"}' "$1"
}
POOL_OFFSET=8000000
VERIFY_DATA=$(printf '{"recipient":"+1415{{printf `%%07d` (add %d (mod .RequestNumber %d))}}","usage_type":"USAGE_TYPE_SIGN_IN","code":"0000000"}' "$POOL_OFFSET" "$LOAD_POOL")

# cpu_ticks pid: CPU time (user + system) the process has used, in clock ticks.
cpu_ticks() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; } # gone: ghz reports the failures
	stat=${stat##*) } # fields after the command name; utime and stime are fields 14 and 15
	awk '{print $12 + $13}' <<<"$stat"
}
CLK_TCK=$(getconf CLK_TCK)

FAILED=0
# ghz_run name method addr data ghz-flags...: one ghz run, its JSON report
# kept in $LOAD_OUT/name.json, failing the load test on any non-OK call
# (ghz itself exits 0 even when every call fails). $LOAD_OUT/name.cpu gets
# the CPU ticks the server, redis-server and ghz used during the run, and
# $LOAD_OUT/name.redis.txt the run's Redis INFO commandstats (calls and
# microseconds per command and per script), the keys that expired during
# it and the keyspace after it.
ghz_run() {
	local name=$1 method=$2 addr=$3 data=$4 spid=$OTPD_PID s0 r0
	shift 4
	[ "$addr" = "$BASE_ADDR" ] && spid=$BASE_PID
	local cmd=("$GHZ" --insecure --call "otp.v1.OtpService.$method" -d "$data"
		-c "$LOAD_C" --connections "$LOAD_CONNECTIONS" "$@" -O json "$addr")
	local a line=ghz
	for a in "${cmd[@]:1}"; do
		if [[ $a =~ [^A-Za-z0-9_./:=+-] ]]; then line+=" '$a'"; else line+=" $a"; fi
	done
	printf '   %-26s %s\n' "$name" "$line"
	local prof=
	if [ "$LOAD_PROFILE" = 1 ] && [ "$spid" = "$OTPD_PID" ] && [[ $name != *-warmup && $name != seed ]]; then
		# Profiles all but the last second of the run.
		curl -sf -o "$LOAD_OUT/$name.pprof" \
			"http://$OTPD_HTTP/debug/pprof/profile?seconds=$((${LOAD_DURATION%s} - 1))" &
		prof=$!
	fi
	redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
	s0=$(cpu_ticks "$spid") r0=$(cpu_ticks "$REDIS_PID")
	local TIMEFORMAT='%U %S' g
	if ! g=$({ time "${cmd[@]}" >"$LOAD_OUT/$name.json" 2>"$LOAD_OUT/$name.err"; } 2>&1) ||
		! jq -e .count "$LOAD_OUT/$name.json" >/dev/null 2>&1; then
		echo "load: $name: ghz failed: $(head -c 500 "$LOAD_OUT/$name.err")" >&2
		exit 1
	fi
	{
		redis-cli -p "$REDIS_PORT" info commandstats
		redis-cli -p "$REDIS_PORT" info stats | grep -E '^(expired_keys|evicted_keys|expire_cycle_cpu_milliseconds):'
		redis-cli -p "$REDIS_PORT" info keyspace
	} >"$LOAD_OUT/$name.redis.txt"
	echo "$(($(cpu_ticks "$spid") - s0)) $(($(cpu_ticks "$REDIS_PID") - r0)) $(awk '{printf "%d", ($1 + $2) * '"$CLK_TCK"'}' <<<"$g")" \
		>"$LOAD_OUT/$name.cpu"
	if [ -n "$prof" ] && ! wait "$prof"; then
		echo "load: $name: no CPU profile from otpd" >&2
		exit 1
	fi
	if ! jq -e '.count > 0 and (.statusCodeDistribution | keys) == ["OK"] and ((.errorDistribution // {}) | length) == 0' \
		"$LOAD_OUT/$name.json" >/dev/null; then
		echo "load: $name: calls failed:" >&2
		jq -c '{count, statusCodeDistribution, first_errors: ((.errorDistribution // {}) | to_entries | sort_by(-.value) | .[:3] | from_entries)}' \
			"$LOAD_OUT/$name.json" >&2
		FAILED=1
	fi
}

# A measured run stops after LOAD_DURATION and waits for the calls in flight
# (--duration-stop=wait): the default, close, cancels them and reports them
# as errors.
TIMED=(--duration-stop=wait)

echo "== seed: $LOAD_POOL live codes for VerifyCode (otpd SendCode, also otpd's first warm-up)"
ghz_run seed SendCode "$OTPD_ADDR" "$(send_data "$POOL_OFFSET")" -n "$LOAD_POOL"

addr_of() { if [ "$1" = otpd ]; then echo "$OTPD_ADDR"; else echo "$BASE_ADDR"; fi; }
for method in VerifyCode SendCode; do
	echo "== $method"
	for target in baseline otpd; do
		warm=$VERIFY_DATA
		[ "$method" = SendCode ] && warm=$(send_data 2000000)
		ghz_run "$method-$target-warmup" "$method" "$(addr_of "$target")" "$warm" -z "$LOAD_WARMUP" "${TIMED[@]}"
	done
	for round in $(seq "$LOAD_ROUNDS"); do
		order=(baseline otpd)
		[ $((round % 2)) = 0 ] && order=(otpd baseline)
		data=$VERIFY_DATA
		[ "$method" = SendCode ] && data=$(send_data $((2000000 + round * 1000000)))
		for target in "${order[@]}"; do
			ghz_run "$method-$target-$round" "$method" "$(addr_of "$target")" "$data" -z "$LOAD_DURATION" "${TIMED[@]}"
		done
	done
done

# Every otpd call must have taken the path measured: sends all delivered (no
# limit, no store error), verifications all MISMATCH (no EXPIRED or
# TOO_MANY_ATTEMPTS, which are cheaper).
metrics=$(curl -fsS "http://$OTPD_HTTP/metrics" 2>/dev/null || true)
if [ -z "$metrics" ]; then
	echo "load: cannot read otpd's metrics at http://$OTPD_HTTP/metrics" >&2
	FAILED=1
else
	other=$(awk '/^otpd_codes_sent_total\{/ && !/result="ok"/ {print} /^otpd_verifications_total\{/ && !/result="mismatch"/ {print}' <<<"$metrics")
	if [ -n "$other" ]; then
		echo "load: otpd calls took another path than the one measured:" >&2
		echo "$other" >&2
		FAILED=1
	fi
	echo "== otpd metrics:"
	grep -E '^otpd_(codes_sent|verifications)_total\{' <<<"$metrics" | sed 's/^/   /'
fi

# report name: "rps p50_ms p99_ms count server_us redis_us ghz_us" of a
# run, the last three the CPU time per call of each process.
report() {
	local server redis ghz
	read -r server redis ghz <"$LOAD_OUT/$1.cpu"
	jq -r --argjson s "$server" --argjson r "$redis" --argjson g "$ghz" --argjson hz "$CLK_TCK" \
		'[.rps, (.latencyDistribution[] | select(.percentage == 50) | .latency / 1e6),
		(.latencyDistribution[] | select(.percentage == 99) | .latency / 1e6), .count,
		(.count as $n | $s, $r, $g | . / $hz * 1e6 / $n)] | @tsv' "$LOAD_OUT/$1.json"
}

# median: the median of its arguments (the lower middle one of an even
# count).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

SHORT=0
echo
echo "== results (-c $LOAD_C, --connections $LOAD_CONNECTIONS, $LOAD_ROUNDS rounds of $LOAD_DURATION, $(nproc) CPUs)"
printf '%-11s %-9s %5s %8s %7s %7s %8s   %s\n' method server round RPS p50_ms p99_ms calls 'CPU us/call: server redis ghz'
declare -A RPS_RATIOS P99_RATIOS
for method in VerifyCode SendCode; do
	for round in $(seq "$LOAD_ROUNDS"); do
		for target in baseline otpd; do
			read -r rps p50 p99 n scpu rcpu gcpu < <(report "$method-$target-$round")
			printf '%-11s %-9s %5d %8.0f %7.2f %7.2f %8d   %18.0f %5.0f %4.0f\n' "$method" "$target" "$round" "$rps" "$p50" "$p99" "$n" "$scpu" "$rcpu" "$gcpu"
		done
		read -r brps _ bp99 _ _ _ _ < <(report "$method-baseline-$round")
		read -r orps _ op99 _ _ _ _ < <(report "$method-otpd-$round")
		RPS_RATIOS[$method]+=" $(awk -v o="$orps" -v b="$brps" 'BEGIN {printf "%.2f", o / b}')"
		P99_RATIOS[$method]+=" $(awk -v o="$op99" -v b="$bp99" 'BEGIN {printf "%.2f", o / b}')"
	done
done
echo
printf '%-11s %-40s %-40s\n' method 'RPS otpd/baseline: median (rounds)' 'p99 otpd/baseline: median (rounds)'
for method in VerifyCode SendCode; do
	# shellcheck disable=SC2086 # the ratios are words
	rr=$(median ${RPS_RATIOS[$method]}) pr=$(median ${P99_RATIOS[$method]})
	rv=PASS pv=PASS
	awk -v r="$rr" -v t="${RPS_MIN[$method]}" 'BEGIN {exit !(r >= t)}' || { rv=SHORT; SHORT=1; }
	awk -v r="$pr" -v t="$P99_MAX" 'BEGIN {exit !(r <= t)}' || { pv=SHORT; SHORT=1; }
	printf '%-11s %-40s %-40s\n' "$method" "${rr}x (${RPS_RATIOS[$method]# }) >= ${RPS_MIN[$method]}x $rv" \
		"${pr}x (${P99_RATIOS[$method]# }) <= ${P99_MAX}x $pv"
done

if [ "$FAILED" = 1 ]; then
	echo "load: FAILED: some calls were not OK (see above; logs in $LOAD_OUT)" >&2
	exit 1
fi
if [ "$SHORT" = 1 ] && [ "$LOAD_STRICT" = 1 ]; then
	echo "load: a target was missed (LOAD_STRICT=1)" >&2
	exit 1
fi
echo "load: every call OK"
