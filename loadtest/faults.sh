#!/usr/bin/env bash
# The fault run (make loadtest-faults): `arbiter serve` on a redis-server that this script
# starts on a free loopback port, under open-loop load, while the load tester stalls Redis
# (SIGSTOP), lets it go, kills it (SIGKILL) and restarts it on its append-only file. The report
# shows each phase: errors by code, degraded share, p99, and the decision ids each event id got
# (must be one: the load resends 10% of its event ids). Every process it starts is stopped on
# exit.
#
#   loadtest/faults.sh [BIN [OUTDIR]]     BIN defaults to bin/arbiter, OUTDIR to loadtest-report/faults
#
# Environment: RATE (default 500), CUSTOMERS (10000).
set -euo pipefail

bin=${1:-bin/arbiter}
out=${2:-loadtest-report/faults}
rate=${RATE:-500}
customers=${CUSTOMERS:-10000}
work=$(mktemp -d)
pids=()

cleanup() {
	[ -f "$work/redis.pid" ] && kill -CONT "$(cat "$work/redis.pid")" 2>/dev/null || true
	[ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

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

command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }

redis_port=$(free_port)
redis="redis-server --port $redis_port --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec --dir $work --daemonize yes --pidfile $work/redis.pid --logfile $work/redis.log"
eval "$redis"
for _ in $(seq 50); do
	redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
	sleep 0.1
done
url="redis://127.0.0.1:$redis_port"
grpc=$(free_port)
http=$(free_port)
"$bin" serve --grpc-addr "127.0.0.1:$grpc" --http-addr "127.0.0.1:$http" --redis "$url" --audit-spool "$work/audit-spool" >"$work/serve.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
pid="\$(cat $work/redis.pid)"
"$bin" loadtest --addr "127.0.0.1:$grpc" --rate "$rate" --duration 30s --warmup 2s --customers "$customers" \
	--duplicates 0.1 --seed-redis "$url" --max-error-rate -1 --out "$out" \
	--fault "5s=redis-stalled:kill -STOP $pid" \
	--fault "8s=stall-over:kill -CONT $pid" \
	--fault "12s=redis-killed:kill -KILL $pid" \
	--fault "15s=redis-restarted:$redis" \
	--fault "20s=steady:true"
echo "serve log: degraded decisions logged: $(grep -c 'decision degraded' "$work/serve.log" || true)"
