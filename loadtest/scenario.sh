#!/usr/bin/env bash
# The standard load-test scenario (make loadtest): a short open-loop run of the load tester
# against `arbiter serve`, first with the embedded store, then with a redis-server that this
# script starts on a free loopback port. Every process it starts is stopped on exit.
#
#   loadtest/scenario.sh [BIN [OUTDIR]]     BIN defaults to bin/arbiter, OUTDIR to loadtest-report
#
# Environment: RATE (default 1000), DURATION (10s), WARMUP (2s), CUSTOMERS (10000), and
# BASELINE=1 to also measure the empty health Check and both maximum throughputs.
set -euo pipefail

bin=${1:-bin/arbiter}
out=${2:-loadtest-report}
rate=${RATE:-1000}
duration=${DURATION:-10s}
warmup=${WARMUP:-2s}
customers=${CUSTOMERS:-10000}
extra=()
if [ "${BASELINE:-0}" = 1 ]; then extra+=(--baseline --max-step 3s); fi
work=$(mktemp -d)
pids=()

cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

# free_port prints a loopback TCP port that nothing listens on.
free_port() {
	local port
	for _ in $(seq 100); do
		port=$((20000 + RANDOM % 20000))
		if ! (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	echo "no free port found" >&2
	return 1
}

# run_scenario NAME REDIS_URL [serve flags...]: serve, load, stop. With a Redis URL, the
# customers are seeded straight into Redis and its clients and CPU are watched.
run_scenario() {
	local name=$1 redis=$2
	shift 2
	local watch=()
	if [ -n "$redis" ]; then watch=(--seed-redis "$redis" --watch-redis "$redis"); fi
	local grpc http
	grpc=$(free_port)
	http=$(free_port)
	"$bin" serve --grpc-addr "127.0.0.1:$grpc" --http-addr "127.0.0.1:$http" "$@" >"$work/serve-$name.log" 2>&1 &
	local serve_pid=$!
	pids+=("$serve_pid")
	echo "== $name: arbiter serve on 127.0.0.1:$grpc (pid $serve_pid)"
	if ! "$bin" loadtest --addr "127.0.0.1:$grpc" --rate "$rate" --duration "$duration" --warmup "$warmup" \
		--customers "$customers" --out "$out/$name" --watch-admin "http://127.0.0.1:$http" --watch-every 2s \
		"${watch[@]}" "${extra[@]}"; then
		echo "== $name: load test failed; server log:" >&2
		tail -20 "$work/serve-$name.log" >&2
		return 1
	fi
	kill "$serve_pid"
	wait "$serve_pid" 2>/dev/null || true
}

command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }

run_scenario embedded ""

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=("$!")
for _ in $(seq 50); do
	redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
	sleep 0.1
done
run_scenario redis "redis://127.0.0.1:$redis_port" --redis "redis://127.0.0.1:$redis_port" --audit-spool "$work/audit-spool"

echo "reports: $out/embedded/report.html $out/redis/report.html"
