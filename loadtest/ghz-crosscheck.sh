#!/usr/bin/env bash
# Cross-check the load tester against ghz (github.com/bojand/ghz) on the same target and rate.
#
#   loadtest/ghz-crosscheck.sh ADDR [RATE [DURATION [BIN]]]
#
# Runs, one after the other against the server at ADDR (loopback): `arbiter loadtest
# --baseline` (Decide and the health Check at RATE), then ghz at RATE on the health Check and
# on Decide, and prints the percentiles side by side. ghz measures from the moment it sends
# (like our service time); ours also from the intended send time. ghz is built with the Go
# toolchain from the module proxy (the newest version it serves is v0.93.0) and not added to
# go.mod. Needs python3 to read ghz's JSON. LOADTEST_ARGS adds flags to `arbiter loadtest`
# (for example "--skip-seed" or "--seed-redis redis://127.0.0.1:6379").
set -euo pipefail

addr=${1:?usage: ghz-crosscheck.sh ADDR [RATE [DURATION [BIN]]]}
rate=${2:-2000}
duration=${3:-20s}
bin=${4:-bin/arbiter}
ghz_version=${GHZ_VERSION:-v0.93.0}
out=$(mktemp -d)
echo "results in $out"

ghz_bin="$out/ghz"
(cd "$out" && GOBIN="$out" go install "github.com/bojand/ghz/cmd/ghz@$ghz_version")

"$bin" loadtest --addr "$addr" --rate "$rate" --duration "$duration" --warmup 3s --baseline --max-step 3s \
	--connections 4 --out "$out/arbiter" ${LOADTEST_ARGS:-} >"$out/arbiter.txt"

# Event ids "ghz<seconds>-e<n>": a letter after the dash keeps the digit runs short of the
# card-number guard (13 to 19 digits, dashes allowed between groups).
run_id=ghz$(date +%s)
common=(--insecure --rps "$rate" -z "$duration" --connections 4 -c 64 -t 1s -O json)
"$ghz_bin" "${common[@]}" --call grpc.health.v1.Health/Check -d '{}' "$addr" >"$out/ghz-health.json"
"$ghz_bin" "${common[@]}" --call arbiter.v1.DecisionService/Decide \
	-d '{"event":{"id":"'"$run_id"'-e{{.RequestNumber}}","type":"EVENT_TYPE_PAYMENT_FAILED","payment":{"decline_code":"51","network":"CARD_NETWORK_VISA","amount_minor":2599,"currency":"GBP","card_ref":"tok-{{.RequestNumber}}","initiator":"INITIATOR_MERCHANT","merchant_id":"merch-001"}},"customer":{"id":"lt-cust-{{.RequestNumber}}","timezone":"Europe/London","consents":[{"channel":"CHANNEL_EMAIL","purpose":"PURPOSE_COLLECTIONS","granted":true}],"preferred_channels":["CHANNEL_EMAIL"]}}' \
	"$addr" >"$out/ghz-decide.json"

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rep = json.load(open(f"{out}/arbiter/report.json"))
def ghz(name):
    g = json.load(open(f"{out}/ghz-{name}.json"))
    d = {int(x["percentage"]): x["latency"] / 1e3 for x in g.get("latencyDistribution") or []}
    return {"rate": g["rps"], "p50": d.get(50), "p90": d.get(90), "p99": d.get(99), "max": g["slowest"] / 1e3,
            "codes": g.get("statusCodeDistribution")}
def ours(r, key):
    x = r[key]
    return {"rate": r["achieved_rate"], "p50": x["p50_us"], "p90": x["p90_us"], "p99": x["p99_us"], "max": x["max_us"]}
rows = [("health: ghz", ghz("health")), ("health: arbiter service time", ours(rep["baseline"], "service")),
        ("health: arbiter from intended", ours(rep["baseline"], "latency")),
        ("decide: ghz", ghz("decide")), ("decide: arbiter service time", ours(rep["decide"], "service")),
        ("decide: arbiter from intended", ours(rep["decide"], "latency"))]
print(f"{'run':32} {'rate/s':>8} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'max µs':>10}")
for name, r in rows:
    f = lambda v: f"{v:9.0f}" if v is not None else f"{'-':>9}"
    print(f"{name:32} {r['rate']:8.0f} {f(r['p50'])} {f(r['p90'])} {f(r['p99'])} {r['max']:10.0f}")
    if r.get("codes"):
        print(f"{'':32} status codes: {r['codes']}")
PY
