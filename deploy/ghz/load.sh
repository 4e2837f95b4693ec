#!/usr/bin/env bash
# load.sh: otpd under ghz load, next to the floor and the baseline, in one run
# (`make load`).
#
# Starts a throwaway redis-server, otpd (bin/otpd, -trimpath, fake provider,
# deploy/ghz/otpd-load.yaml), the baseline (deploy/ghz/baseline) and the
# floor (../shared/bench/floor, LOAD_FLOOR), all on 127.0.0.1, then loads
# VerifyCode and SendCode on each with the same ghz settings and prints RPS,
# p50, p99 and the CPU time per call of each server and of Redis, with the
# otpd/floor and otpd/baseline ratios against their targets. The baseline
# gets the very same call and data as otpd; the floor serves only
# grpc.health.v1.Health/Check, called as its doc comment says. See
# deploy/ghz/README.md.
#
# The servers are measured in LOAD_ROUNDS interleaved rounds, the order
# rotating by one each round (floor baseline otpd, then baseline otpd floor,
# then otpd floor baseline, ...): a shared 2-core VM drifts by 10-20 %
# within minutes, and ratios of runs taken back to back, in changing order,
# cancel most of that. The ratios reported are the medians of the rounds'
# ratios.
#
# Fails (exit 1) when any call of any ghz run is not OK, or when otpd's
# metrics show a send or a verification that took another path than the one
# measured (a limit or a fraud rule included). A ratio that misses its
# target prints SHORT and fails only with LOAD_STRICT=1; so does a missing
# floor, which is skipped with a loud line.
#
# Settings (environment):
#   LOAD_C=50            concurrent calls (ghz -c)
#   LOAD_CONNECTIONS=1   HTTP/2 connections they share (ghz --connections)
#   LOAD_ROUNDS=3        interleaved rounds (1 to 5), each one measured run
#                        per server and method
#   LOAD_DURATION=10s    each measured run (ghz -z)
#   LOAD_WARMUP=3s       the warm-up run of each server before the rounds
#   LOAD_POOL=20000      recipients holding a live code for VerifyCode
#   LOAD_CLIENT_IP=1     1: every otpd call carries a client_ip (one per
#                        recipient), so the per-IP limits and the conversion
#                        rule's per-IP count run; 0: none, as before
#                        2026-11-30 (those steps are skipped)
#   LOAD_LOG_LEVEL=info  otpd's log level (otpd's stderr goes to a file)
#   LOAD_DATA=file       file: ghz reads each run's requests from a file
#                        written before the run (ghz -B, binary call data,
#                        deploy/ghz/reqgen), decoded once; template: ghz
#                        builds each request from
#                        a template (-d), as before 2026-11-30, which costs
#                        ghz 20-30 µs more per otpd call than per floor call
#                        on the same two cores
#   LOAD_MAX_RPS=25000   with LOAD_DATA=file: requests written per second
#                        of a SendCode or floor run (each call needs a
#                        fresh recipient or key); a run faster than that
#                        would reuse them and fail
#   LOAD_FLOOR=$ROOT/../shared/bench/floor
#                        the floor's Go module
#   LOAD_OUT=bin/load    where the ghz JSON reports and logs are kept
#   LOAD_STRICT=0        1: exit 1 when a ratio misses its target or the
#                        floor is missing
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
LOAD_CLIENT_IP=${LOAD_CLIENT_IP:-1}
LOAD_DATA=${LOAD_DATA:-file}
LOAD_MAX_RPS=${LOAD_MAX_RPS:-25000}
LOAD_FLOOR=${LOAD_FLOOR:-$ROOT/../shared/bench/floor}
LOAD_STRICT=${LOAD_STRICT:-0}
LOAD_PROFILE=${LOAD_PROFILE:-0}
LOAD_OUT=${LOAD_OUT:-$BIN/load}
export OTPD_LOAD_LOG_LEVEL=${LOAD_LOG_LEVEL:-info}
export OTPD_HMAC_KEY=${OTPD_HMAC_KEY:-$(head -c 48 /dev/urandom | base64 | tr -d '\n')}

# Targets, per method: otpd RPS at least this share of the reference's, and
# otpd p99 at most P99_MAX times the reference's.
declare -A FLOOR_RPS_MIN=([VerifyCode]=0.9 [SendCode]=0.8)
FLOOR_P99_MAX=1.5
declare -A BASE_RPS_MIN=([VerifyCode]=0.8 [SendCode]=0.6)
BASE_P99_MAX=2.0

NEEDED=(redis-server redis-cli jq "$GO")
# otpd_fake: the fake provider, left out of release builds (README, "Providers").
TAGS=(-tags otpd_fake)
if [ "$LOAD_PROFILE" = 1 ]; then
	NEEDED+=(curl)
	TAGS=(-tags "otpd_fake,pprof")
	if ! [[ $LOAD_DURATION =~ ^[0-9]+s$ ]] || [ "${LOAD_DURATION%s}" -lt 3 ]; then
		echo "load: LOAD_PROFILE=1 needs LOAD_DURATION in seconds, at least 3s (got $LOAD_DURATION)" >&2
		exit 1
	fi
fi
[[ $LOAD_ROUNDS =~ ^[1-5]$ ]] || { echo "load: LOAD_ROUNDS must be 1 to 5 (got $LOAD_ROUNDS)" >&2; exit 1; }
[[ $LOAD_CLIENT_IP =~ ^[01]$ ]] || { echo "load: LOAD_CLIENT_IP must be 0 or 1 (got $LOAD_CLIENT_IP)" >&2; exit 1; }
[[ $LOAD_DATA =~ ^(file|template)$ ]] || { echo "load: LOAD_DATA must be file or template (got $LOAD_DATA)" >&2; exit 1; }
[[ $LOAD_MAX_RPS =~ ^[1-9][0-9]*$ ]] || { echo "load: LOAD_MAX_RPS must be a positive number (got $LOAD_MAX_RPS)" >&2; exit 1; }
if ! [[ $LOAD_POOL =~ ^[1-9][0-9]*$ ]] || [ "$LOAD_POOL" -gt 1000000 ]; then
	echo "load: LOAD_POOL must be 1 to 1000000 (got $LOAD_POOL)" >&2
	exit 1
fi
for cmd in "${NEEDED[@]}"; do
	command -v "$cmd" >/dev/null || { echo "load: $cmd is missing (make redis-server installs redis)" >&2; exit 1; }
done

# The floor is what the targets are set against: its absence is said
# loudly, here and again under the results, never passed over.
SERVERS=(floor baseline otpd)
NO_FLOOR=
if [ ! -f "$LOAD_FLOOR/go.mod" ]; then
	NO_FLOOR="load: NO FLOOR: $LOAD_FLOOR/go.mod is missing; the floor is SKIPPED and no target against it is checked"
	echo "$NO_FLOOR" >&2
	SERVERS=(baseline otpd)
fi

# shellcheck source=deploy/ghz/lib.sh
. "$ROOT/deploy/ghz/lib.sh"

echo "== build (bin/otpd -trimpath, bin/otpctl, bin/otpd-load-baseline, bin/otpd-load-floor, bin/otpd-load-reqgen, bin/ghz)"
(cd "$ROOT" && $GO build -trimpath "${TAGS[@]}" -o "$BIN/otpd" ./cmd/otpd && $GO build -trimpath -o "$BIN/otpctl" ./cmd/otpctl &&
	$GO build -trimpath -o "$BIN/otpd-load-reqgen" ./deploy/ghz/reqgen)
(cd "$ROOT/deploy/ghz/baseline" && $GO build -trimpath -o "$BIN/otpd-load-baseline" .)
if [ -z "$NO_FLOOR" ]; then
	# The floor's directory may be read-only: when its go.sum lacks an
	# entry, -mod=mod lets the build resolve it without writing there.
	(cd "$LOAD_FLOOR" && { $GO build -trimpath -o "$BIN/otpd-load-floor" . 2>"$TMP/floor-build" ||
		GOFLAGS="$($GO env GOFLAGS) -mod=mod" $GO build -trimpath -o "$BIN/otpd-load-floor" .; }) ||
		{ echo "load: the floor in $LOAD_FLOOR does not build (first try: $(head -c 500 "$TMP/floor-build"))" >&2; exit 1; }
fi
[ -x "$GHZ" ] || (cd "$ROOT/tools" && $GO build -o "$BIN/" github.com/bojand/ghz/cmd/ghz)
mkdir -p "$LOAD_OUT"
LOAD_OUT=$(cd "$LOAD_OUT" && pwd) # redis-server opens its log after moving to its --dir
rm -f "$LOAD_OUT"/*.json "$LOAD_OUT"/*.err "$LOAD_OUT"/*.log "$LOAD_OUT"/*.pprof "$LOAD_OUT"/*.cpu "$LOAD_OUT"/*.redis.txt

start_redis "$LOAD_OUT/redis.log"

declare -A ADDR PID
ADDR[otpd]=127.0.0.1:$(free_port)
OTPD_HTTP=127.0.0.1:$(free_port)
OTPD_LOAD_GRPC=${ADDR[otpd]} OTPD_LOAD_HTTP=$OTPD_HTTP OTPD_LOAD_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 \
	"$BIN/otpd" -config "$ROOT/deploy/ghz/otpd-load.yaml" 2>"$LOAD_OUT/otpd.log" &
PID[otpd]=$!
PIDS+=($!)
# The baseline keeps its keys in db 1 of the same redis-server; the floor,
# which has no such flag, in db 0 with otpd's (its keys are floor:{...}).
ADDR[baseline]=127.0.0.1:$(free_port)
"$BIN/otpd-load-baseline" -listen "${ADDR[baseline]}" -redis "127.0.0.1:$REDIS_PORT" -db 1 2>"$LOAD_OUT/baseline.log" &
PID[baseline]=$!
PIDS+=($!)
if [ -z "$NO_FLOOR" ]; then
	ADDR[floor]=127.0.0.1:$(free_port)
	"$BIN/otpd-load-floor" -listen "${ADDR[floor]}" -redis "127.0.0.1:$REDIS_PORT" 2>"$LOAD_OUT/floor.log" &
	PID[floor]=$!
	PIDS+=($!)
fi

wait_serving() { # name
	for _ in $(seq 150); do
		"$BIN/otpctl" -addr "${ADDR[$1]}" -timeout 1s health >/dev/null 2>&1 && return
		sleep 0.2
	done
	echo "load: $1 at ${ADDR[$1]} is not SERVING; its log:" >&2
	tail -n 20 "$LOAD_OUT/$1.log" >&2
	exit 1
}
for s in "${SERVERS[@]}"; do
	wait_serving "$s"
done

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== redis 127.0.0.1:$REDIS_PORT, otpd ${ADDR[otpd]} (log level $OTPD_LOAD_LOG_LEVEL, client_ip: $([ "$LOAD_CLIENT_IP" = 1 ] && echo yes || echo no)), baseline ${ADDR[baseline]}, floor ${ADDR[floor]:-SKIPPED}"
echo "== ghz: -c $LOAD_C --connections $LOAD_CONNECTIONS, warm-up $LOAD_WARMUP, $LOAD_ROUNDS rounds of $LOAD_DURATION, request data from a ${LOAD_DATA}; reports in $LOAD_OUT"

# Request data (ghz templates; -d is parsed as JSON before templating, hence
# the backticks). Both otpd methods send the recipient +1415 followed by a
# number n in 7 digits (every one of +14152000000..+14159999999 is a valid
# number, of type fixed_line_or_mobile, which the fraud rules let through)
# and, with LOAD_CLIENT_IP=1, the client_ip 10.a.b.c that is ghz's request
# number in base 256: a new address for each call of a run (ghz builds
# each request from its template, so the template is kept short).
#
# SendCode: n = offset + request number, a fresh recipient per call: 2000000
# for the warm-up, then a million numbers per round from 3000000, below the
# seed's 8000000. VerifyCode: a wrong 7-digit code (a live code has 6
# digits, so it never matches) for one of the LOAD_POOL numbers the seed
# gave a live code, n = 8000000 + (request number mod LOAD_POOL).
otpd_data() { # n-expression [code]
	local d
	# shellcheck disable=SC2016 # the backticks are the template's
	d=$(printf '"recipient":"+1415{{printf `%%07d` (%s)}}","usage_type":"USAGE_TYPE_SIGN_IN"' "$1")
	if [ "$LOAD_CLIENT_IP" = 1 ]; then
		d+=',"client_ip":"10.{{div .RequestNumber 65536}}.{{mod (div .RequestNumber 256) 256}}.{{mod .RequestNumber 256}}"'
	fi
	[ $# -lt 2 ] || d+=",\"code\":\"$2\""
	echo "{$d}"
}
send_data() { otpd_data "add $1 .RequestNumber"; } # offset
POOL_OFFSET=8000000
VERIFY_DATA=$(otpd_data "add $POOL_OFFSET (mod .RequestNumber $LOAD_POOL)" 0000000)
# The floor: its own call, as in its doc comment, with a prefix per run (v
# or s for the method, then the round, 0 for the warm-up) so that every
# call, in every run, INCRs a fresh key and sets its expiry (the script's
# full path), as in the floor's single documented run.
floor_data() { printf '{"service":"%s%d.r{{.RequestNumber}}"}' "$1" "$2"; } # v|s round

# call_of server method: the gRPC method ghz calls.
call_of() { if [ "$1" = floor ]; then echo grpc.health.v1.Health.Check; else echo "otp.v1.OtpService.$2"; fi; }

# cpu_ticks pid: CPU time (user + system) the process has used, in clock ticks.
cpu_ticks() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; } # gone: ghz reports the failures
	stat=${stat##*) } # fields after the command name; utime and stime are fields 14 and 15
	awk '{print $12 + $13}' <<<"$stat"
}
CLK_TCK=$(getconf CLK_TCK)
# redis_cpu_us: redis-server's CPU time (INFO cpu: used_cpu_sys +
# used_cpu_user, every thread), in microseconds.
redis_cpu_us() {
	redis-cli -p "$REDIS_PORT" info cpu | tr -d '\r' |
		awk -F: '$1 == "used_cpu_sys" || $1 == "used_cpu_user" {s += $2} END {printf "%.0f", s * 1e6}'
}

FAILED=0
# ghz_run name server method -d|-D data ghz-flags...: one ghz run, its JSON report
# kept in $LOAD_OUT/name.json, failing the load test on any non-OK call
# (ghz itself exits 0 even when every call fails). $LOAD_OUT/name.cpu gets
# the CPU the server (clock ticks), redis-server (µs) and ghz (clock ticks)
# used during the run, and $LOAD_OUT/name.redis.txt the run's Redis INFO
# commandstats (calls and microseconds per command and per script), the
# keys that expired during it and the keyspace after it.
ghz_run() {
	local name=$1 server=$2 method=$3 dflag=$4 data=$5 spid s0 r0
	shift 5
	spid=${PID[$server]}
	if [ "$dflag" = -B ] && [ ! -s "$data" ]; then
		echo "load: $name: no request data in '$data'" >&2
		exit 1
	fi
	local cmd=("$GHZ" --insecure --call "$(call_of "$server" "$method")" "$dflag" "$data"
		-c "$LOAD_C" --connections "$LOAD_CONNECTIONS" "$@" -O json "${ADDR[$server]}")
	local a line=ghz
	for a in "${cmd[@]:1}"; do
		if [[ $a =~ [^A-Za-z0-9_./:=+-] ]]; then line+=" '$a'"; else line+=" $a"; fi
	done
	printf '   %-26s %s\n' "$name" "$line"
	local prof=
	if [ "$LOAD_PROFILE" = 1 ] && [ "$server" = otpd ] && [[ $name != *-warmup && $name != seed ]]; then
		# Profiles all but the last second of the run.
		curl -sf -o "$LOAD_OUT/$name.pprof" \
			"http://$OTPD_HTTP/debug/pprof/profile?seconds=$((${LOAD_DURATION%s} - 1))" &
		prof=$!
	fi
	redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
	r0=$(redis_cpu_us) s0=$(cpu_ticks "$spid")
	local TIMEFORMAT='%U %S' g
	if ! g=$({ time "${cmd[@]}" >"$LOAD_OUT/$name.json" 2>"$LOAD_OUT/$name.err"; } 2>&1) ||
		! jq -e .count "$LOAD_OUT/$name.json" >/dev/null 2>&1; then
		echo "load: $name: ghz failed: $(head -c 500 "$LOAD_OUT/$name.err")" >&2
		exit 1
	fi
	echo "$(($(cpu_ticks "$spid") - s0)) $(($(redis_cpu_us) - r0)) $(awk '{printf "%d", ($1 + $2) * '"$CLK_TCK"'}' <<<"$g")" \
		>"$LOAD_OUT/$name.cpu"
	{
		redis-cli -p "$REDIS_PORT" info commandstats
		redis-cli -p "$REDIS_PORT" info stats | grep -E '^(expired_keys|evicted_keys|expire_cycle_cpu_milliseconds):'
		redis-cli -p "$REDIS_PORT" info keyspace
	} >"$LOAD_OUT/$name.redis.txt"
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


# data_of server method round: the request data of a run (round 0: the
# warm-up) as ghz flags: -d with a template, or -D with the file of the
# same requests in binary, written once (data_file).
data_of() {
	if [ "$LOAD_DATA" = template ]; then
		if [ "$1" = floor ]; then
			if [ "$2" = SendCode ]; then echo -d; floor_data s "$3"; else echo -d; floor_data v "$3"; fi
		elif [ "$2" = SendCode ]; then
			echo -d; send_data $((2000000 + $3 * 1000000))
		else
			echo -d; echo "$VERIFY_DATA"
		fi
		return
	fi
	local n=$((${3:-0} == 0 ? WARMUP_CALLS : RUN_CALLS))
	echo -B
	if [ "$1" = floor ]; then
		data_file "floor-${2:0:1}$3" floor "${2:0:1}$3" "$n"
	elif [ "$2" = SendCode ]; then
		data_file "send-$3" send $((2000000 + $3 * 1000000)) "$n"
	else
		data_file verify verify "$POOL_OFFSET" "$LOAD_POOL"
	fi
}
# seconds d: a ghz duration (3s, 10s, 1m) in whole seconds, at least 1.
seconds() {
	case $1 in
	*ms) echo 1 ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) local v=${1%s}; echo $((v > 0 ? v : 1)) ;;
	*) echo 1 ;;
	esac
}
WARMUP_CALLS=$(($(seconds "$LOAD_WARMUP") * LOAD_MAX_RPS))
RUN_CALLS=$(($(seconds "$LOAD_DURATION") * LOAD_MAX_RPS))
if [ "$RUN_CALLS" -gt 1000000 ]; then
	echo "load: LOAD_DURATION x LOAD_MAX_RPS must be at most 1000000 (a million numbers per round)" >&2
	exit 1
fi
# data_file name kind first n: writes (once) and names $TMP/name.bin, the n
# requests that the templates above give for request numbers 0..n-1, in
# ghz's binary call data (bin/otpd-load-reqgen: kind send or verify,
# recipients from +1415<first>; kind floor, services <first>.r0,
# <first>.r1...). ghz decodes the file once and sends request number k the
# element k mod n.
data_file() {
	local f=$TMP/$1.bin
	if [ ! -f "$f" ]; then
		local args=(-kind "$2" -n "$4")
		if [ "$2" = floor ]; then args+=(-prefix "$3"); else args+=(-first "$3"); fi
		[ "$LOAD_CLIENT_IP" = 1 ] && args+=(-client-ip)
		"$BIN/otpd-load-reqgen" "${args[@]}" >"$f"
	fi
	echo "$f"
}
echo "== seed: $LOAD_POOL live codes for VerifyCode (otpd SendCode, also otpd's first warm-up)"
if [ "$LOAD_DATA" = template ]; then
	ghz_run seed otpd SendCode -d "$(send_data "$POOL_OFFSET")" -n "$LOAD_POOL"
else
	ghz_run seed otpd SendCode -B "$(data_file seed send "$POOL_OFFSET" "$LOAD_POOL")" -n "$LOAD_POOL"
fi

NS=${#SERVERS[@]}
for method in VerifyCode SendCode; do
	echo "== $method"
	for target in "${SERVERS[@]}"; do
		mapfile -t data < <(data_of "$target" "$method" 0)
		ghz_run "$method-$target-warmup" "$target" "$method" "${data[@]}" -z "$LOAD_WARMUP" "${TIMED[@]}"
	done
	for round in $(seq "$LOAD_ROUNDS"); do
		# The order rotates by one each round: every server comes first,
		# second and last in turn.
		for i in $(seq 0 $((NS - 1))); do
			target=${SERVERS[$(((i + round - 1) % NS))]}
			mapfile -t data < <(data_of "$target" "$method" "$round")
			ghz_run "$method-$target-$round" "$target" "$method" "${data[@]}" -z "$LOAD_DURATION" "${TIMED[@]}"
		done
	done
done

# Every otpd call must have taken the path measured: sends all delivered (no
# limit, no fraud rule, no store error), verifications all MISMATCH (no
# EXPIRED or TOO_MANY_ATTEMPTS, which are cheaper), no fraud rule decision
# of any kind (a rule passed over in record_only mode or by always_allow
# would not fail a call).
metrics=$(curl -fsS "http://$OTPD_HTTP/metrics" 2>/dev/null || true)
if [ -z "$metrics" ]; then
	echo "load: cannot read otpd's metrics at http://$OTPD_HTTP/metrics" >&2
	FAILED=1
else
	other=$(awk '/^otpd_codes_sent_total\{/ && !/result="ok"/ && $NF != 0 {print}
		/^otpd_verifications_total\{/ && !/result="mismatch"/ && $NF != 0 {print}
		/^otpd_fraud_decisions_total\{/ && $NF != 0 {print}' <<<"$metrics")
	if [ -n "$other" ]; then
		echo "load: otpd calls took another path than the one measured:" >&2
		echo "$other" >&2
		FAILED=1
	fi
	echo "== otpd metrics:"
	grep -E '^otpd_(codes_sent|verifications)_total\{' <<<"$metrics" | sed 's/^/   /'
fi

# report name: "rps p50_ms p99_ms ok server_us redis_us ghz_us" of a run,
# the last three the CPU time per OK call of each process.
report() {
	local server redis ghz
	read -r server redis ghz <"$LOAD_OUT/$1.cpu"
	jq -r --argjson s "$server" --argjson r "$redis" --argjson g "$ghz" --argjson hz "$CLK_TCK" \
		'(.statusCodeDistribution.OK // 0) as $n |
		[.rps, (.latencyDistribution[] | select(.percentage == 50) | .latency / 1e6),
		(.latencyDistribution[] | select(.percentage == 99) | .latency / 1e6), $n,
		($s / $hz * 1e6 / $n), ($r / $n), ($g / $hz * 1e6 / $n)] | @tsv' "$LOAD_OUT/$1.json"
}

# median: the median of its arguments (the lower middle one of an even
# count).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

SHORT=0
echo
echo "== results (-c $LOAD_C, --connections $LOAD_CONNECTIONS, $LOAD_ROUNDS rounds of $LOAD_DURATION, $(nproc) CPUs, load average now $(cut -d' ' -f1-3 /proc/loadavg); CPU µs per OK call)"
printf '%-11s %-9s %5s %8s %7s %7s %8s %8s %6s %6s\n' method server round RPS p50_ms p99_ms calls server_us redis ghz
# Per method and server: the rounds' RPS and p99 (RPS_<server>, P99_<server>)
# and CPU per call (SCPU, RCPU, GCPU), as words.
declare -A RPS P99 SCPU RCPU GCPU
for method in VerifyCode SendCode; do
	for round in $(seq "$LOAD_ROUNDS"); do
		for target in "${SERVERS[@]}"; do
			read -r rps p50 p99 n scpu rcpu gcpu < <(report "$method-$target-$round")
			printf '%-11s %-9s %5d %8.0f %7.2f %7.2f %8d %9.1f %6.1f %6.1f\n' "$method" "$target" "$round" "$rps" "$p50" "$p99" "$n" "$scpu" "$rcpu" "$gcpu"
			k="$method $target"
			RPS[$k]+=" $rps" P99[$k]+=" $p99" SCPU[$k]+=" $scpu" RCPU[$k]+=" $rcpu" GCPU[$k]+=" $gcpu"
		done
	done
done

# ratios method num den: each round's num/den RPS and p99 ratios, as words
# (RR, PR).
ratios() {
	local -a a b c d
	read -ra a <<<"${RPS[$1 $2]}"
	read -ra b <<<"${RPS[$1 $3]}"
	read -ra c <<<"${P99[$1 $2]}"
	read -ra d <<<"${P99[$1 $3]}"
	RR='' PR=''
	for i in "${!a[@]}"; do
		RR+=" $(ratio "${a[$i]}" "${b[$i]}")" PR+=" $(ratio "${c[$i]}" "${d[$i]}")"
	done
	RR=${RR# } PR=${PR# }
}
# verdict value op target: V is PASS, or SHORT (and SHORT=1).
verdict() {
	V=PASS
	awk -v v="$1" -v t="$3" "BEGIN {exit !(v $2 t)}" || { V=SHORT; SHORT=1; }
}

echo
printf '%-11s %-15s %-44s %-44s\n' method ratio 'RPS: median (rounds) target' 'p99: median (rounds) target'
for method in VerifyCode SendCode; do
	for ref in floor baseline; do
		[ "$ref" = floor ] && [ -n "$NO_FLOOR" ] && { printf '%-11s %-15s %s\n' "$method" otpd/floor 'NOT MEASURED: no floor'; continue; }
		ratios "$method" otpd "$ref"
		# shellcheck disable=SC2086 # the ratios are words
		rr=$(median $RR) pr=$(median $PR)
		if [ "$ref" = floor ]; then rmin=${FLOOR_RPS_MIN[$method]} pmax=$FLOOR_P99_MAX; else rmin=${BASE_RPS_MIN[$method]} pmax=$BASE_P99_MAX; fi
		verdict "$rr" '>=' "$rmin"
		rv=$V
		verdict "$pr" '<=' "$pmax"
		printf '%-11s %-15s %-44s %-44s\n' "$method" "otpd/$ref" "${rr}x ($RR) >= ${rmin}x $rv" "${pr}x ($PR) <= ${pmax}x $V"
	done
	if [ -z "$NO_FLOOR" ]; then
		ratios "$method" baseline floor
		# shellcheck disable=SC2086
		printf '%-11s %-15s %-44s %-44s\n' "$method" baseline/floor "$(median $RR)x ($RR)" "$(median $PR)x ($PR)"
	fi
done

# cpu_cell values...: "median (each)", one decimal.
cpu_cell() {
	local v
	printf '%.1f (' "$(median "$@")"
	v=$(printf '%.1f ' "$@")
	printf '%s)' "${v% }"
}
echo
echo "CPU µs per OK call, median of the rounds (rounds): server, redis-server, ghz; otpd/floor of server and of server + redis"
printf '%-11s %-9s %-30s %-30s %-30s\n' method server server redis ghz
for method in VerifyCode SendCode; do
	for target in "${SERVERS[@]}"; do
		k="$method $target"
		# shellcheck disable=SC2086
		printf '%-11s %-9s %-30s %-30s %-30s\n' "$method" "$target" "$(cpu_cell ${SCPU[$k]})" "$(cpu_cell ${RCPU[$k]})" "$(cpu_cell ${GCPU[$k]})"
	done
	if [ -z "$NO_FLOOR" ]; then
		# shellcheck disable=SC2086
		so=$(median ${SCPU[$method otpd]}) sf=$(median ${SCPU[$method floor]}) ro=$(median ${RCPU[$method otpd]}) rf=$(median ${RCPU[$method floor]})
		printf '%-11s %-9s server %sx, server + redis %sx\n' "$method" otpd/floor "$(ratio "$so" "$sf")" \
			"$(awk -v a="$so" -v b="$ro" -v c="$sf" -v d="$rf" 'BEGIN {printf "%.2f", (a + b) / (c + d)}')"
	fi
done

[ -z "$NO_FLOOR" ] || echo "$NO_FLOOR" >&2
if [ "$FAILED" = 1 ]; then
	echo "load: FAILED: some calls were not OK (see above; logs in $LOAD_OUT)" >&2
	exit 1
fi
if { [ "$SHORT" = 1 ] || [ -n "$NO_FLOOR" ]; } && [ "$LOAD_STRICT" = 1 ]; then
	echo "load: a target was missed or not measured (LOAD_STRICT=1)" >&2
	exit 1
fi
echo "load: every call OK${NO_FLOOR:+ (NO FLOOR: no target against it was checked)}"
