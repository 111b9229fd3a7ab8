#!/usr/bin/env bash
# Load test under churn for the example inference service (examples/serve.rs).
#
# Builds the release example, starts it on 127.0.0.1 with an admin token, and drives
# POST /v1/models/digits:predict with wrk (a real HTTP load generator; installed with apt-get
# if missing), alternating two kinds of measured windows of equal length, same run, same
# settings:
#
#   baseline  no admin activity;
#   churn     an admin client performs stage -> swap -> rollback cycles through the admin API
#             for the whole window, paced so that the churn windows together hold 25% more
#             cycles than MIN_CYCLES (each cycle loads a model from disk, runs every gate on
#             the golden set, warms it, flips traffic to it, flips back, retires a model).
#
# Windows alternate (baseline, churn, churn, baseline, baseline, churn, ...) so that slow
# drift on a shared machine hits both sides. Reported per side: requests, non-2xx answers,
# socket errors, and the median over windows of p50/p99 (wrk's own percentiles); the p99
# ratio compares those medians. The admin client keeps one HTTP connection open, like a
# deployment controller would; it is a few lines of Python (stdlib) so that no process is
# spawned per call on the machine under test.
#
# Targets (exit 0 when all are met, 1 when one is missed, 2 on a setup error): zero non-2xx
# answers and zero socket errors in every window; at least MIN_CYCLES swaps and as many
# rollbacks during the churn windows, every admin call answered 200; p99(churn) <= MAX_RATIO x
# p99(baseline).
#
# Traffic goes to 127.0.0.1 only; every window is bounded in time; the script stops what it
# started. Settings (environment):
#   ROUNDS       baseline+churn window pairs        (default 6)
#   WINDOW       seconds per window                  (default 5)
#   WARMUP       seconds of unmeasured warm-up load  (default 3)
#   CONNECTIONS  concurrent HTTP connections         (default 8)
#   THREADS      wrk threads                         (default 1)
#   ROWS         rows (digits) per predict request   (default 1)
#   MIN_CYCLES   swaps (and rollbacks) required      (default 100)
#   MAX_RATIO    p99 churn / baseline target         (default 1.5)
#   WORKERS      inference threads of the service   (default: CPU count)
#   PACE_MS      ms between churn cycle starts      (default: see above)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

ROUNDS="${ROUNDS:-6}"
WINDOW="${WINDOW:-5}"
WARMUP="${WARMUP:-3}"
CONNECTIONS="${CONNECTIONS:-8}"
THREADS="${THREADS:-1}"
ROWS="${ROWS:-1}"
MIN_CYCLES="${MIN_CYCLES:-100}"
MAX_RATIO="${MAX_RATIO:-1.5}"
WORKERS="${WORKERS:-$(nproc)}"
PACE_MS="${PACE_MS:-$((ROUNDS * WINDOW * 1000 * 4 / (MIN_CYCLES * 5)))}"
TOKEN="loadtest-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"

log() { printf 'loadtest: %s\n' "$*" >&2; }
die() {
    printf 'loadtest: error: %s\n' "$*" >&2
    exit 2
}

# --- tools --------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    log "wrk not found; installing it with apt-get (Debian package 'wrk')"
    if [[ "$(id -u)" -eq 0 ]]; then
        { apt-get update -qq && apt-get install -y -qq wrk; } >&2 || die "could not install wrk"
    elif command -v sudo >/dev/null 2>&1; then
        { sudo apt-get update -qq && sudo apt-get install -y -qq wrk; } >&2 || die "could not install wrk"
    else
        die "wrk is missing and this user cannot apt-get install it"
    fi
fi
command -v curl >/dev/null 2>&1 || die "curl is required"
command -v python3 >/dev/null 2>&1 || die "python3 is required"

ORT_LIB="$(bash scripts/setup-ort.sh)" || die "ONNX Runtime setup failed"
export ORT_DYLIB_PATH="$ORT_LIB"
log "building the release example"
cargo build --release --locked --features metrics,tower --example serve >&2 || die "build failed"
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/examples/serve"
[[ -x "$BIN" ]] || die "no binary at $BIN"

WORK="$(mktemp -d)"
SERVER_PID=""
CHURN_PID=""
cleanup() {
    touch "$WORK/stop" 2>/dev/null || true
    [[ -n "$CHURN_PID" ]] && kill "$CHURN_PID" 2>/dev/null || true
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- request bodies: real digits from the golden set (stdlib only, no numpy) -----------------
python3 - "$ROOT/models/digits/golden.npz" "$ROWS" "$WORK/bodies.lua" <<'PY'
import array, ast, json, struct, sys, zipfile
path, rows, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
raw = zipfile.ZipFile(path).read("inputs.npy")
assert raw[:6] == b"\x93NUMPY", "not an .npy array"
if raw[6] == 1:
    hlen, off = struct.unpack("<H", raw[8:10])[0], 10
else:
    hlen, off = struct.unpack("<I", raw[8:12])[0], 12
header = ast.literal_eval(raw[off:off + hlen].decode("latin1"))
assert header["descr"] == "<f4" and not header["fortran_order"], header
n, width = header["shape"]
data = array.array("f")
data.frombytes(raw[off + hlen:])
with open(out, "w") as f:
    f.write("bodies = {\n")
    for k in range(64):
        start = (k * rows) % (n - rows)
        batch = [[float(x) for x in data[(start + r) * width:(start + r + 1) * width]]
                 for r in range(rows)]
        f.write("  [==[" + json.dumps({"inputs": batch}, separators=(",", ":")) + "]==],\n")
    f.write("}\n")
PY

cat >"$WORK/predict.lua" <<LUA
dofile("$WORK/bodies.lua")
local i = 0
local headers = { ["Content-Type"] = "application/json" }
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/models/digits:predict", headers, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d non2xx=%d sockerr=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
LUA

# The admin client: stage -> swap -> rollback every PACE_MS on one keep-alive connection,
# until the stop file exists. Prints "<cycles> <failed calls>".
cat >"$WORK/churn.py" <<'PY'
import http.client, os, sys, time
addr, token, pace_ms, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host, port = addr.rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port), timeout=60)
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
def call(op, body=b""):
    conn.request("POST", "/admin/models/digits/" + op, body=body, headers=headers)
    r = conn.getresponse()
    text = r.read()
    if r.status != 200:
        print(f"loadtest: {op} answered {r.status}: {text[:200]!r}", file=sys.stderr)
    return r.status == 200
cycles = failed = 0
next_start = time.monotonic()
while not os.path.exists(stop):
    ok = [call("stage", b'{"version":"1"}'), call("swap"), call("rollback")]
    failed += ok.count(False)
    cycles += all(ok)
    next_start += pace_ms / 1000
    time.sleep(max(0.0, next_start - time.monotonic()))
print(cycles, failed)
PY

# --- the service ------------------------------------------------------------------------
log "starting the service (workers=$WORKERS)"
BLUEGREEN_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN" --port 0 --workers "$WORKERS" \
    >"$WORK/stdout" 2>"$WORK/server.log" &
SERVER_PID=$!
ADDR=""
for _ in $(seq 1 300); do
    ADDR="$(sed -n 's|^listening on http://||p' "$WORK/stdout" 2>/dev/null || true)"
    [[ -n "$ADDR" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "the service exited"; }
    sleep 0.1
done
[[ -n "$ADDR" ]] || die "the service did not print its address"
case "$ADDR" in 127.*) ;; *) die "refusing to load-test a non-loopback address: $ADDR" ;; esac
URL="http://$ADDR"
for _ in $(seq 1 300); do
    curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "$URL/readyz" >/dev/null || die "the service never became ready"
log "service ready at $URL"

run_wrk() { # $1 = seconds; prints the RESULT line
    wrk --threads "$THREADS" --connections "$CONNECTIONS" --duration "${1}s" --timeout 5s \
        --script "$WORK/predict.lua" "$URL" | grep '^RESULT'
}
metric() { curl -fsS "$URL/metrics" | sed -n "s/^$1 //p"; }

log "warm-up: ${WARMUP}s"
run_wrk "$WARMUP" >/dev/null

SWAPS_BEFORE="$(metric 'bluegreen_swaps_total{model="digits"}')"
ROLLBACKS_BEFORE="$(metric 'bluegreen_rollbacks_total{model="digits"}')"
: >"$WORK/baseline"
: >"$WORK/churn"
CYCLES=0
FAILED=0
for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then order="baseline churn"; else order="churn baseline"; fi
    for kind in $order; do
        if [[ "$kind" == baseline ]]; then
            r="$(run_wrk "$WINDOW")"
        else
            rm -f "$WORK/stop"
            python3 "$WORK/churn.py" "$ADDR" "$TOKEN" "$PACE_MS" "$WORK/stop" >"$WORK/cycles" &
            CHURN_PID=$!
            r="$(run_wrk "$WINDOW")"
            touch "$WORK/stop"
            wait "$CHURN_PID" || die "the admin client failed"
            CHURN_PID=""
            read -r c f <"$WORK/cycles"
            CYCLES=$((CYCLES + c))
            FAILED=$((FAILED + f))
        fi
        echo "$r" >>"$WORK/$kind"
        log "round $round $kind: ${r#RESULT }"
    done
done
SWAPS=$(($(metric 'bluegreen_swaps_total{model="digits"}') - SWAPS_BEFORE))
ROLLBACKS=$(($(metric 'bluegreen_rollbacks_total{model="digits"}') - ROLLBACKS_BEFORE))

# --- report -------------------------------------------------------------------------------
python3 - "$WORK/baseline" "$WORK/churn" "$SWAPS" "$ROLLBACKS" "$FAILED" "$MIN_CYCLES" \
    "$MAX_RATIO" "$ROUNDS" "$WINDOW" "$CONNECTIONS" "$THREADS" "$ROWS" "$WORKERS" \
    "$(nproc)" "$PACE_MS" <<'PY'
import statistics, sys
(base_f, churn_f, swaps, rollbacks, failed, min_cycles, max_ratio, rounds, window,
 connections, threads, rows, workers, cpus, pace) = sys.argv[1:]
def load(path):
    runs = []
    for line in open(path):
        runs.append({k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])})
    return runs
base, churn = load(base_f), load(churn_f)
def total(runs, k): return sum(r[k] for r in runs)
def med(runs, k): return statistics.median(r[k] for r in runs)
secs = int(rounds) * int(window)
rows_out = [
    ("requests", total(base, "requests"), total(churn, "requests")),
    ("requests/s", total(base, "requests") // secs, total(churn, "requests") // secs),
    ("non-2xx answers", total(base, "non2xx"), total(churn, "non2xx")),
    ("socket errors", total(base, "sockerr"), total(churn, "sockerr")),
    ("p50 latency, median of windows (us)", int(med(base, "p50_us")), int(med(churn, "p50_us"))),
    ("p99 latency, median of windows (us)", int(med(base, "p99_us")), int(med(churn, "p99_us"))),
    ("p99 latency, worst window (us)", max(r["p99_us"] for r in base), max(r["p99_us"] for r in churn)),
    ("max latency (us)", max(r["max_us"] for r in base), max(r["max_us"] for r in churn)),
    ("swaps / rollbacks (admin API)", "0 / 0", f"{swaps} / {rollbacks}"),
    ("failed admin calls", "-", failed),
]
print()
print(f"{'':38} {'baseline':>12} {'churn':>12}")
for name, b, c in rows_out:
    print(f"{name:38} {b!s:>12} {c!s:>12}")
ratio = med(churn, "p99_us") / max(med(base, "p99_us"), 1)
print(f"\np99 churn / p99 baseline = {ratio:.2f} (target <= {max_ratio})")
print(f"settings: {rounds} x ({window}s baseline + {window}s churn), {connections} connections, "
      f"{threads} wrk thread(s), {rows} row(s) per request, {workers} inference workers, "
      f"{cpus} CPUs, one churn cycle every {pace} ms")
ok = True
def check(cond, text):
    global ok
    print(("target met:    " if cond else "target MISSED: ") + text)
    ok &= bool(cond)
errors = total(base, "non2xx") + total(churn, "non2xx") + total(base, "sockerr") + total(churn, "sockerr")
check(errors == 0, f"zero non-2xx answers and socket errors to valid requests ({errors})")
check(int(swaps) >= int(min_cycles) and int(rollbacks) >= int(min_cycles),
      f"at least {min_cycles} swaps and {min_cycles} rollbacks under load ({swaps} / {rollbacks})")
check(int(failed) == 0, f"every admin call answered 200 ({failed} failed)")
check(ratio <= float(max_ratio), f"p99 under churn <= {max_ratio} x p99 without churn ({ratio:.2f})")
sys.exit(0 if ok else 1)
PY
