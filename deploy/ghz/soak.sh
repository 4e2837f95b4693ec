#!/usr/bin/env bash
# soak.sh: otpd under a long, bounded, mixed SendCode + VerifyCode load
# (`make soak`), sampling its memory, goroutines and file descriptors and
# Redis's memory and keys every SOAK_INTERVAL seconds.
#
# Starts a throwaway redis-server and otpd (bin/soak/otpd, -trimpath, the
# fake provider, deploy/ghz/otpd-soak.yaml), both on 127.0.0.1, then two
# ghz runs side by side for SOAK_DURATION, at a fixed rate (--rps):
#
#   SendCode    SOAK_SEND_RPS calls/s, recipient i = request number mod
#               POOL, POOL = SOAK_SEND_RPS x 180: each recipient is sent a
#               code every 3 minutes, after its 2-minute code has expired;
#   VerifyCode  2 x SOAK_SEND_RPS calls/s, a wrong code (7 digits) for the
#               recipient sent a code 30 seconds earlier, twice each: every
#               call a MISMATCH (the full check), but in the first 30
#               seconds, when those recipients have no code yet (EXPIRED).
#
# Each call carries the client_ip 10.a.b.c that is i in base 256, one per
# recipient. The config's TTL and windows are 2 minutes (otpd-soak.yaml):
# a recipient's keys all expire between two of its sends, so the state in
# Redis is that of the last 2 minutes of sends and is steady after about 4
# minutes. See deploy/ghz/README.md, "Soak".
#
# Every SOAK_INTERVAL seconds, a line of $SOAK_OUT/soak.csv: otpd's RSS
# (VmRSS), goroutines (go_goroutines), open file descriptors and heap in
# use (go_memstats_heap_inuse_bytes), Redis's used_memory, keys (DBSIZE) and
# live codes (the sign-in codes in the recipients' records that can still
# verify, counted with SCAN) and connected clients
# (otpd's pool, and this script's redis-cli), the sends and verifications
# otpd counted so far and the machine's load average. Then a summary: first,
# last and max of each, the slopes over the second half, Redis's bytes per
# key.
#
# Fails (exit 1), after printing the figures, when:
#   - any call of either ghz run is not OK, or otpd's metrics show a send
#     that was not delivered, a verification other than MISMATCH or
#     EXPIRED, a rate limit or a fraud rule decision;
#   - otpd's goroutines at the end exceed those of the second sample after
#     SOAK_WARMUP by more than SOAK_GOROUTINE_SLACK;
#   - otpd's RSS at the end exceeds that at half-time by more than
#     SOAK_RSS_GROWTH percent;
#   - Redis's used_memory at the end exceeds that at half-time by more than
#     SOAK_REDIS_GROWTH percent (checked only when SOAK_DURATION is 8m or
#     more: before about 4 minutes the state is still filling up).
#
# Settings (environment):
#   SOAK_DURATION=10m        the load's length (ghz -z): Ns or Nm, at least 30s
#   SOAK_SEND_RPS=100        SendCode calls per second (1 to 1000);
#                            VerifyCode gets twice as many
#   SOAK_C=10                each ghz run's workers (-c), on one connection
#   SOAK_INTERVAL=10         seconds between samples
#   SOAK_WARMUP=60           seconds before the goroutine reference (the
#                            second sample after it)
#   SOAK_GOROUTINE_SLACK=20  goroutines the end may have above the reference
#   SOAK_RSS_GROWTH=20       percent RSS may grow over the second half
#   SOAK_REDIS_GROWTH=20     percent used_memory may grow over the second half
#   SOAK_LOG_LEVEL=info      otpd's log level (its stderr goes to a file)
#   SOAK_OUT=bin/soak        binaries, CSV, ghz reports, logs
#   OTPD_HMAC_KEY            otpd's secret; a random one when unset
set -euo pipefail

export GOTOOLCHAIN=local
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GO=${GO:-go}
GHZ=$ROOT/bin/ghz
SOAK_DURATION=${SOAK_DURATION:-10m}
SOAK_SEND_RPS=${SOAK_SEND_RPS:-100}
SOAK_C=${SOAK_C:-10}
SOAK_INTERVAL=${SOAK_INTERVAL:-10}
SOAK_WARMUP=${SOAK_WARMUP:-60}
SOAK_GOROUTINE_SLACK=${SOAK_GOROUTINE_SLACK:-20}
SOAK_RSS_GROWTH=${SOAK_RSS_GROWTH:-20}
SOAK_REDIS_GROWTH=${SOAK_REDIS_GROWTH:-20}
SOAK_OUT=${SOAK_OUT:-$ROOT/bin/soak}
export OTPD_SOAK_LOG_LEVEL=${SOAK_LOG_LEVEL:-info}
export OTPD_HMAC_KEY=${OTPD_HMAC_KEY:-$(head -c 48 /dev/urandom | base64 | tr -d '\n')}

die() { echo "soak: $*" >&2; exit 1; }
uint() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a whole number (got $2)"; }
case $SOAK_DURATION in
*s) DUR=${SOAK_DURATION%s} ;;
*m) DUR=${SOAK_DURATION%m} && uint SOAK_DURATION "$DUR" && DUR=$((DUR * 60)) ;;
*) die "SOAK_DURATION must be Ns or Nm (got $SOAK_DURATION)" ;;
esac
uint SOAK_DURATION "$DUR"
[ "$DUR" -ge 30 ] || die "SOAK_DURATION must be at least 30s (got $SOAK_DURATION)"
for v in SOAK_SEND_RPS SOAK_C SOAK_INTERVAL SOAK_WARMUP SOAK_GOROUTINE_SLACK SOAK_RSS_GROWTH SOAK_REDIS_GROWTH; do
	uint "$v" "${!v}"
done
{ [ "$SOAK_SEND_RPS" -ge 1 ] && [ "$SOAK_SEND_RPS" -le 1000 ]; } || die "SOAK_SEND_RPS must be 1 to 1000 (got $SOAK_SEND_RPS)"
[ "$SOAK_C" -ge 1 ] || die "SOAK_C must be at least 1"
[ "$SOAK_INTERVAL" -ge 1 ] || die "SOAK_INTERVAL must be at least 1"
for cmd in redis-server redis-cli jq curl "$GO"; do
	command -v "$cmd" >/dev/null || die "$cmd is missing (make redis-server installs redis)"
done

REVISIT=180                      # seconds between two sends to a recipient
POOL=$((SOAK_SEND_RPS * REVISIT)) # recipients +1 415 800-0000 and on
LAG=$((SOAK_SEND_RPS * 30))      # VerifyCode runs 30 s of sends behind
VERIFY_RPS=$((2 * SOAK_SEND_RPS))
# per_country's count and the conversion rule's min_unverified: twice the
# sends of a 2-minute window.
export OTPD_SOAK_COUNTRY_MAX=$((2 * SOAK_SEND_RPS * 120))

# shellcheck source=deploy/ghz/lib.sh
. "$ROOT/deploy/ghz/lib.sh"

mkdir -p "$SOAK_OUT"
SOAK_OUT=$(cd "$SOAK_OUT" && pwd) # redis-server opens its log after moving to its --dir
rm -f "$SOAK_OUT"/*.json "$SOAK_OUT"/*.err "$SOAK_OUT"/*.log "$SOAK_OUT"/soak.csv "$SOAK_OUT"/metrics.txt
# Its own binaries, so that a `make load` running meanwhile does not
# replace them under it.
echo "== build ($SOAK_OUT/otpd -trimpath -tags otpd_fake, $SOAK_OUT/otpctl, bin/ghz)"
(cd "$ROOT" && $GO build -trimpath -tags otpd_fake -o "$SOAK_OUT/otpd" ./cmd/otpd && $GO build -trimpath -o "$SOAK_OUT/otpctl" ./cmd/otpctl)
[ -x "$GHZ" ] || (cd "$ROOT/tools" && $GO build -o "$ROOT/bin/" github.com/bojand/ghz/cmd/ghz)

start_redis "$SOAK_OUT/redis.log"

GRPC=127.0.0.1:$(free_port)
HTTP=127.0.0.1:$(free_port)
OTPD_SOAK_GRPC=$GRPC OTPD_SOAK_HTTP=$HTTP OTPD_SOAK_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 \
	"$SOAK_OUT/otpd" -config "$ROOT/deploy/ghz/otpd-soak.yaml" 2>"$SOAK_OUT/otpd.log" &
OTPD_PID=$!
PIDS+=($!)
for _ in $(seq 150); do
	"$SOAK_OUT/otpctl" -addr "$GRPC" -timeout 1s health >/dev/null 2>&1 && break
	sleep 0.2
done
"$SOAK_OUT/otpctl" -addr "$GRPC" -timeout 1s health >/dev/null 2>&1 || {
	tail -n 20 "$SOAK_OUT/otpd.log" >&2
	die "otpd at $GRPC is not SERVING (its log is above)"
}

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/^Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== redis 127.0.0.1:$REDIS_PORT ($(redis-server --version | awk '{print $3}')), otpd $GRPC (pid $OTPD_PID, log level $OTPD_SOAK_LOG_LEVEL, admin $HTTP)"
echo "== soak: ${DUR}s, SendCode $SOAK_SEND_RPS/s + VerifyCode $VERIFY_RPS/s (-c $SOAK_C each, one connection each), $POOL recipients, a sample every ${SOAK_INTERVAL}s; output in $SOAK_OUT"

# Request data (ghz templates, each JSON string its own template; see
# load.sh for the backticks). $i is the recipient's index in the pool.
# shellcheck disable=SC2016 # the backticks and $i are the template's
tmpl() { # index-expression [code]
	local i='{{$i := '"$1"'}}' d
	d='"recipient":"'"$i"'+1415{{printf `%07d` (add 8000000 $i)}}","usage_type":"USAGE_TYPE_SIGN_IN"'
	d+=',"client_ip":"'"$i"'10.{{div $i 65536}}.{{mod (div $i 256) 256}}.{{mod $i 256}}"'
	[ $# -lt 2 ] || d+=",\"code\":\"$2\""
	echo "{$d}"
}
SEND_DATA=$(tmpl "mod .RequestNumber $POOL")
# (n/2 - LAG) mod POOL, kept non-negative: the recipient sent a code LAG
# sends (30 s) earlier, twice in a row.
VERIFY_DATA=$(tmpl "mod (add (div .RequestNumber 2) $((POOL - LAG))) $POOL" 0000000)

GHZ_PIDS=()
start_ghz() { # name method rps data
	local name=$1
	shift
	printf "   %-7s ghz --insecure --call otp.v1.OtpService.%s -d '%s' --rps %s -c %s --connections 1 -z %ss --duration-stop=wait -O json %s\n" \
		"$name" "$1" "$3" "$2" "$SOAK_C" "$DUR" "$GRPC"
	"$GHZ" --insecure --call "otp.v1.OtpService.$1" -d "$3" --rps "$2" -c "$SOAK_C" --connections 1 \
		-z "${DUR}s" --duration-stop=wait -O json "$GRPC" >"$SOAK_OUT/$name.json" 2>"$SOAK_OUT/$name.err" &
	GHZ_PIDS+=($!)
	PIDS+=($!)
}

metrics() { curl -fsS --max-time 5 "http://$HTTP/metrics"; }
redis_used() { redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}'; }

# live_codes: the sign-in codes that can still verify, in the recipients'
# records (otpd:{bucket}:<recipient>:r; fields sh, se, sa, so: README,
# "What Redis holds"): a read-only script per thousand keys of a SCAN, so
# that Redis is never blocked for long.
LIVE_LUA="local r = redis.call('SCAN', ARGV[1], 'MATCH', 'otpd:{*}:*:r', 'COUNT', 1000)
local t = redis.call('TIME')
local now, n = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 0
for _, k in ipairs(r[2]) do
  local c = redis.call('HMGET', k, 'sh', 'se', 'sa', 'so')
  if c[1] and not c[4] and tonumber(c[2]) > now and tonumber(c[3]) > 0 then n = n + 1 end
end
return {r[1], n}"
live_codes() {
	local cur=0 n=0 out
	while :; do
		mapfile -t out < <(redis-cli -p "$REDIS_PORT" eval "$LIVE_LUA" 0 "$cur")
		[ "${#out[@]}" -eq 2 ] || die "counting live codes failed: ${out[*]}"
		cur=${out[0]}
		n=$((n + out[1]))
		[ "$cur" != 0 ] || break
	done
	echo "$n"
}

# sample t: one CSV line.
sample() {
	local m rss fds gor heap used keys live clients sent ver
	[ -d "/proc/$OTPD_PID" ] || die "otpd (pid $OTPD_PID) is gone; its log: $SOAK_OUT/otpd.log"
	rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$OTPD_PID/status")
	fds=("/proc/$OTPD_PID/fd/"*)
	m=$(metrics) || die "cannot read otpd's metrics at http://$HTTP/metrics"
	gor=$(awk '$1 == "go_goroutines" {printf "%d", $2}' <<<"$m")
	heap=$(awk '$1 == "go_memstats_heap_inuse_bytes" {printf "%d", $2}' <<<"$m")
	sent=$(awk '/^otpd_codes_sent_total\{/ && /result="ok"/ {s += $NF} END {printf "%d", s}' <<<"$m")
	ver=$(awk '/^otpd_verifications_total\{/ {s += $NF} END {printf "%d", s}' <<<"$m")
	used=$(redis_used)
	keys=$(redis-cli -p "$REDIS_PORT" dbsize)
	live=$(live_codes)
	clients=$(redis-cli -p "$REDIS_PORT" info clients | tr -d '\r' | awk -F: '$1 == "connected_clients" {print $2}')
	echo "$1,$rss,$gor,${#fds[@]},$heap,$used,$keys,$live,$clients,$sent,$ver,$(cut -d' ' -f1 /proc/loadavg)"
}

CSV=$SOAK_OUT/soak.csv
echo "t_s,otpd_rss_kb,goroutines,fds,heap_inuse_bytes,redis_used_memory,redis_keys,live_codes,redis_clients,sends_ok,verifications,load1" >"$CSV"
REDIS_EMPTY=$(redis_used)
echo "== load and samples (t_s rss_kb goroutines fds heap_inuse redis_used_memory keys live_codes redis_clients sends_ok verifications load1)"
start_ghz send SendCode "$SOAK_SEND_RPS" "$SEND_DATA"
start_ghz verify VerifyCode "$VERIFY_RPS" "$VERIFY_DATA"
T0=$(date +%s%N)
for ((k = 0; k * SOAK_INTERVAL < DUR; k++)); do
	# Sleep until t = k x SOAK_INTERVAL after the start.
	wait_ms=$(((T0 + k * SOAK_INTERVAL * 1000000000 - $(date +%s%N)) / 1000000))
	[ "$wait_ms" -le 0 ] || sleep "$(awk -v ms="$wait_ms" 'BEGIN {printf "%.3f", ms / 1000}')"
	line=$(sample $((k * SOAK_INTERVAL)))
	echo "$line" >>"$CSV"
	echo "   ${line//,/ }"
done

FAILED=0
for i in "${!GHZ_PIDS[@]}"; do
	wait "${GHZ_PIDS[$i]}" || true
done
echo
echo "== calls (ghz)"
for name in send verify; do
	jq -e .count "$SOAK_OUT/$name.json" >/dev/null 2>&1 || die "$name: ghz failed: $(head -c 500 "$SOAK_OUT/$name.err")"
	jq -r --arg n "$name" '"   \($n): \(.count) calls, \(.rps | floor)/s, p50 \((.latencyDistribution[] | select(.percentage == 50) | .latency) / 1e4 | round / 100) ms, p99 \((.latencyDistribution[] | select(.percentage == 99) | .latency) / 1e4 | round / 100) ms, status \(.statusCodeDistribution | tojson)"' \
		"$SOAK_OUT/$name.json"
	if ! jq -e '.count > 0 and (.statusCodeDistribution | keys) == ["OK"] and ((.errorDistribution // {}) | length) == 0' \
		"$SOAK_OUT/$name.json" >/dev/null; then
		echo "soak: $name: calls failed: $(jq -c '(.errorDistribution // {}) | to_entries | sort_by(-.value) | .[:3] | from_entries' "$SOAK_OUT/$name.json")" >&2
		FAILED=1
	fi
done

# Results as otpd counted them: sends all delivered, verifications MISMATCH
# (or EXPIRED: no code yet), no limit and no fraud rule.
m=$(metrics) || die "cannot read otpd's metrics at http://$HTTP/metrics"
echo "$m" >"$SOAK_OUT/metrics.txt"
echo "== results (otpd metrics)"
grep -E '^otpd_(codes_sent|verifications)_total\{' <<<"$m" | sed 's/^/   /'
other=$(awk '/^otpd_codes_sent_total\{/ && !/result="ok"/ && $NF != 0 {print}
	/^otpd_verifications_total\{/ && !/result="(mismatch|expired)"/ && $NF != 0 {print}
	/^otpd_rate_limited_total\{/ && $NF != 0 {print}
	/^otpd_fraud_decisions_total\{/ && $NF != 0 {print}' <<<"$m")
if [ -n "$other" ]; then
	echo "soak: otpd answered other than expected:" >&2
	echo "$other" >&2
	FAILED=1
fi

# The summary, from the CSV: first, last, max of each column; least-squares
# slope per minute over the second half (t >= half the last sample's t);
# the checks.
echo
echo "== summary (${DUR}s, $(($(wc -l <"$CSV") - 1)) samples; second half from t = half the last sample's)"
awk -F, -v warm="$SOAK_WARMUP" -v gslack="$SOAK_GOROUTINE_SLACK" -v rssmax="$SOAK_RSS_GROWTH" \
	-v redismax="$SOAK_REDIS_GROWTH" -v dur="$DUR" -v empty="$REDIS_EMPTY" '
NR == 1 { for (c = 1; c <= NF; c++) name[c] = $c; next }
{ n++; for (c = 1; c <= NF; c++) v[n, c] = $c }
END {
	last = v[n, 1]; half = last / 2
	for (i = 1; i <= n; i++) if (v[i, 1] >= half) { mid = i; break }
	after = 0
	for (i = 1; i <= n; i++) if (v[i, 1] >= warm && ++after == 2) { ref = i; break }
	printf "   %-18s %14s %14s %14s %16s\n", "", "first", "last", "max", "slope/min (2nd half)"
	for (c = 2; c <= NF; c++) {
		max = v[1, c]
		for (i = 1; i <= n; i++) if (v[i, c] + 0 > max + 0) max = v[i, c]
		sx = sy = sxx = sxy = m = 0
		for (i = mid; i <= n; i++) { x = v[i, 1] / 60; y = v[i, c]; m++; sx += x; sy += y; sxx += x * x; sxy += x * y }
		slope = (m > 1 && m * sxx - sx * sx != 0) ? (m * sxy - sx * sy) / (m * sxx - sx * sx) : 0
		printf "   %-18s %14s %14s %14s %16.1f\n", name[c], v[1, c], v[n, c], max, slope
		col[name[c]] = c
	}
	r = col["otpd_rss_kb"]; g = col["goroutines"]; u = col["redis_used_memory"]; k = col["redis_keys"]; l = col["live_codes"]
	rssg = (v[n, r] - v[mid, r]) / v[mid, r] * 100
	redg = (v[n, u] - v[mid, u]) / v[mid, u] * 100
	lc = v[n, l] > 0 ? v[n, l] : 1
	printf "   redis: %.0f bytes per key (used_memory / keys), %.0f above an empty Redis (%d bytes); %.0f bytes per live code above it, %.1f keys per live code\n",
		v[n, u] / v[n, k], (v[n, u] - empty) / v[n, k], empty, (v[n, u] - empty) / lc, v[n, k] / lc
	fail = 0
	if (!ref) { printf "   goroutines: no second sample after the %ds warm-up: NOT CHECKED\n", warm }
	else {
		ok = v[n, g] - v[ref, g] <= gslack
		printf "   goroutines: %d at t=%ds (second sample after the %ds warm-up), %d at the end: %+d, bound +%d: %s\n",
			v[ref, g], v[ref, 1], warm, v[n, g], v[n, g] - v[ref, g], gslack, ok ? "PASS" : "FAIL"
		if (!ok) fail = 1
	}
	ok = rssg <= rssmax
	printf "   otpd RSS: %d kB at t=%ds (half-time), %d kB at the end: %+.1f %%, bound +%d %%: %s\n",
		v[mid, r], v[mid, 1], v[n, r], rssg, rssmax, ok ? "PASS" : "FAIL"
	if (!ok) fail = 1
	if (dur < 480) printf "   redis used_memory: %+.1f %% over the second half: NOT CHECKED (SOAK_DURATION under 8m: not steady yet)\n", redg
	else {
		ok = redg <= redismax
		printf "   redis used_memory: %d at t=%ds (half-time), %d at the end: %+.1f %%, bound +%d %%: %s\n",
			v[mid, u], v[mid, 1], v[n, u], redg, redismax, ok ? "PASS" : "FAIL"
		if (!ok) fail = 1
	}
	exit fail
}' "$CSV" || FAILED=1
echo "   load average now $(cut -d' ' -f1-3 /proc/loadavg); CSV: $CSV"

if [ "$FAILED" = 1 ]; then
	echo "soak: FAILED (see above; logs in $SOAK_OUT)" >&2
	exit 1
fi
if [ "$DUR" -ge 480 ]; then
	echo "soak: every call OK, otpd and Redis flat"
else
	echo "soak: every call OK, otpd flat (Redis not checked: SOAK_DURATION under 8m)"
fi
