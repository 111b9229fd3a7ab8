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
# drift on a shared machine hits both sides. Then one more window under load, the scenario:
# the safety net end to end —
#
#   scenario  v2 (good) is staged and swapped in from v1, bakes for BAKE_MS and becomes
#             stable; v6 (slow: passes every gate, ~10 ms per call) is swapped in and the
#             service's bake window rolls it back on its own (p99 call latency over
#             BAKE_MAX_P99_MS); v3 (wrong answers) is refused by the accuracy gate (at
#             stage, in quarantine, with QUARANTINE=on; at swap with off).
#
# The whole run is recorded: every request (its end time, latency and status, written by
# wrk itself through this script's Lua hooks, on the monotonic clock), every admin call as
# the service answered it, and the service's own record of automatic rollbacks and passed
# bakes (GET /admin/.../status, polled every 100 ms). examples/timeline.rs draws it: p50/p99
# and requests/s per 100 ms (hdrhistogram per interval) with every event as a marker, into
# TIMELINE_OUT/timeline.svg (the whole run) and timeline-scenario.svg (the scenario). Reported per side: requests, non-2xx answers,
# socket errors, and the median over windows of p50/p99 (wrk's own percentiles); the p99
# ratio compares those medians. The admin client keeps one HTTP connection open, like a
# deployment controller would; it is a few lines of Python (stdlib) so that no process is
# spawned per call on the machine under test.
#
# Targets (exit 0 when all are met, 1 when one is missed, 2 on a setup error): zero non-2xx
# answers and zero socket errors in every window; at least MIN_CYCLES swaps and as many
# rollbacks during the churn windows, every admin call answered 200; p99(churn) <= MAX_RATIO x
# p99(baseline); in the scenario, v2 stable, v6 rolled back automatically, v3 refused, and
# no non-2xx answer or socket error.
#
# Traffic goes to 127.0.0.1 only; every window is bounded in time; the script stops what it
# started. Settings (environment):
#   ROUNDS       baseline+churn window pairs        (default 6)
#   WINDOW       seconds per window                  (default 5)
#   WARMUP       seconds of unmeasured warm-up load  (default 3)
#   CONNECTIONS  concurrent HTTP connections         (default 8)
#   THREADS      wrk threads; must equal CONNECTIONS: one connection per thread, so that
#                the Lua hooks match every answer to its request  (default CONNECTIONS)
#   ROWS         rows (digits) per predict request   (default 1)
#   MIN_CYCLES   swaps (and rollbacks) required      (default 100)
#   MAX_RATIO    p99 churn / baseline target         (default 1.5)
#   WORKERS      inference threads of the service   (default: CPU count)
#   PACE_MS      ms between churn cycle starts      (default: see above)
#   SCENARIO     seconds of the scenario window, 0 = none        (default 14)
#   BAKE_MS      the service's bake window (--bake-ms)           (default 2000)
#   BAKE_MAX_P99_MS  bake limit on p99 call latency, ms          (default 5)
#   BAKE_MIN_SAMPLES calls before the bake judges                (default 100)
#   QUARANTINE   the service's --quarantine: on = every stage is qualified in a child
#                process first (the service's default), off = loaded directly (default on)
#   TIMELINE_OUT directory for the SVGs and CSVs   (default: <target dir>/loadtest)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

ROUNDS="${ROUNDS:-6}"
WINDOW="${WINDOW:-5}"
WARMUP="${WARMUP:-3}"
CONNECTIONS="${CONNECTIONS:-8}"
THREADS="${THREADS:-$CONNECTIONS}"
ROWS="${ROWS:-1}"
MIN_CYCLES="${MIN_CYCLES:-100}"
MAX_RATIO="${MAX_RATIO:-1.5}"
WORKERS="${WORKERS:-$(nproc)}"
PACE_MS="${PACE_MS:-$((ROUNDS * WINDOW * 1000 * 4 / (MIN_CYCLES * 5)))}"
SCENARIO="${SCENARIO:-14}"
BAKE_MS="${BAKE_MS:-2000}"
BAKE_MAX_P99_MS="${BAKE_MAX_P99_MS:-5}"
BAKE_MIN_SAMPLES="${BAKE_MIN_SAMPLES:-100}"
QUARANTINE="${QUARANTINE:-on}"
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
[[ "$THREADS" == "$CONNECTIONS" ]] ||
    die "THREADS ($THREADS) must equal CONNECTIONS ($CONNECTIONS): one connection per wrk thread"
((SCENARIO == 0 || SCENARIO >= 10)) || die "SCENARIO must be 0 or at least 10 seconds"
command -v python3 >/dev/null 2>&1 || die "python3 is required"

ORT_LIB="$(bash scripts/setup-ort.sh)" || die "ONNX Runtime setup failed"
export ORT_DYLIB_PATH="$ORT_LIB"
log "building the release examples (serve, timeline)"
cargo build --release --locked --features metrics,tower --example serve --example timeline >&2 || die "build failed"
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/examples/serve"
TIMELINE="$TARGET_DIR/release/examples/timeline"
[[ -x "$BIN" && -x "$TIMELINE" ]] || die "no binaries at $BIN, $TIMELINE"
TIMELINE_OUT="${TIMELINE_OUT:-$TARGET_DIR/loadtest}"
mkdir -p "$TIMELINE_OUT" || die "cannot create $TIMELINE_OUT"

WORK="$(mktemp -d)"
SERVER_PID=""
CHURN_PID=""
WATCH_PID=""
cleanup() {
    touch "$WORK/stop" "$WORK/stop-watch" 2>/dev/null || true
    [[ -n "$CHURN_PID" ]] && kill "$CHURN_PID" 2>/dev/null || true
    [[ -n "$WATCH_PID" ]] && kill "$WATCH_PID" 2>/dev/null || true
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

# Every request is recorded by wrk itself: one line per answer, "END_US LATENCY_US STATUS",
# on CLOCK_MONOTONIC (LuaJIT's FFI; Python's time.monotonic() reads the same clock), into
# <prefix>.<thread>.tsv (the prefix is the script's argument). One connection per wrk
# thread, so the answer a thread gets is the answer to the request it sent last.
mkdir "$WORK/requests"
cat >"$WORK/predict.lua" <<LUA
dofile("$WORK/bodies.lua")
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } loadtest_timespec;
int clock_gettime(int clock, loadtest_timespec *tp);
]]
local ts = ffi.new("loadtest_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local out, sent
init = function(args)
  out = assert(io.open(args[1] .. "." .. id .. ".tsv", "w"))
end
local i = 0
local headers = { ["Content-Type"] = "application/json" }
request = function()
  i = i % #bodies + 1
  sent = now_us()
  return wrk.format("POST", "/v1/models/digits:predict", headers, bodies[i])
end
response = function(status, headers, body)
  local now = now_us()
  if sent then
    out:write(string.format("%d %d %d\n", now, now - sent, status))
    sent = nil
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d non2xx=%d sockerr=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
LUA

# The admin client (stdlib only), on one keep-alive connection. Every call it makes is an
# event, timed when the service answered: "T_US KIND SOURCE VERSIONS DETAIL", tab-separated,
# monotonic clock, appended to the events file. Modes:
#   churn EVENTS PACE_MS STOP  stage -> swap -> rollback of v2 every PACE_MS until STOP
#                              exists; prints "<cycles> <failed calls>"
#   scenario EVENTS LEAD_S     the safety net: v2 in (its bake passes), v6 in (the service
#                              rolls it back), v3 refused; prints what happened as JSON
#   watch EVENTS STOP          polls /admin/.../status every 100 ms until STOP exists and
#                              records the service's automatic rollbacks (at the time the
#                              service gives) and passed bakes
cat >"$WORK/admin.py" <<'PY'
import http.client, json, os, sys, time
addr, token, mode, events_path = sys.argv[1:5]
host, port = addr.rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port), timeout=60)
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
events = open(events_path, "a", buffering=1)
source = "service" if mode == "watch" else mode
def event(kind, versions, detail="", t=None):
    t = time.monotonic() if t is None else t
    detail = " ".join(str(detail).split())[:300]
    events.write(f"{int(t * 1e6)}\t{kind}\t{source}\t{versions}\t{detail}\n")
def call(op, body=b"", method="POST"):
    conn.request(method, "/admin/models/digits/" + op, body=body, headers=headers)
    r = conn.getresponse()
    text = r.read()
    try:
        answer = json.loads(text)
    except ValueError:
        answer = {"error": text[:200].decode("utf-8", "replace")}
    return r.status, answer
def stage(version):
    code, a = call("stage", json.dumps({"version": version}).encode())
    if code == 200:
        event("stage", version)
    elif code == 422:  # refused in quarantine (the service's default): never loaded
        event("refused", version, a.get("error", ""))
    return code, a
def swap():
    code, a = call("swap")
    if code == 200:
        event("swap", f"{a['from']} → {a['to']}")
    elif code == 422:
        event("refused", a.get("validation", {}).get("candidate", "?"), a.get("error", ""))
    return code, a
def rollback():
    code, a = call("rollback")
    if code == 200:
        event("rollback", f"{a['from']} → {a['to']}")
    return code, a
def status():
    code, a = call("status", method="GET")
    if code != 200:
        raise SystemExit(f"loadtest: status answered {code}: {a}")
    return a["deployment"]

if mode == "churn":
    pace_ms, stop = int(sys.argv[5]), sys.argv[6]
    def check(op, result):
        code, a = result
        if code != 200:
            print(f"loadtest: {op} answered {code}: {str(a)[:200]}", file=sys.stderr)
        return code == 200
    cycles = failed = 0
    next_start = time.monotonic()
    while not os.path.exists(stop):
        ok = [check("stage", stage("2")), check("swap", swap()), check("rollback", rollback())]
        failed += ok.count(False)
        cycles += all(ok)
        next_start += pace_ms / 1000
        time.sleep(max(0.0, next_start - time.monotonic()))
    print(cycles, failed)

elif mode == "watch":
    stop = sys.argv[5]
    offset = time.time() - time.monotonic()  # the service reports wall-clock times
    seen = status()
    autos = seen["auto_rollbacks"]
    while not os.path.exists(stop):
        time.sleep(0.1)
        now = status()
        if now["auto_rollbacks"] > autos:
            r = now["last_auto_rollback"]
            event("auto-rollback", f"{r['from']} → {r['to']}", r["reason"], r["at"] - offset)
        baked = seen["bake"]
        if (baked and not now["bake"] and now["auto_rollbacks"] == autos
                and now["active"]["version"] == baked["version"]):
            event("stable", baked["version"], "bake window passed")
        autos, seen = now["auto_rollbacks"], now

elif mode == "scenario":
    lead = float(sys.argv[5])
    def after_bake():
        # Waits (at most 30 s) until no bake runs; returns the deployment status then.
        end = time.monotonic() + 30
        while time.monotonic() < end:
            s = status()
            if not s["bake"]:
                return s
            time.sleep(0.1)
        raise SystemExit("loadtest: a bake window did not end within 30 s")
    out = {}
    time.sleep(lead)
    autos = status()["auto_rollbacks"]
    stage("2")
    code, _ = swap()
    s = after_bake()
    out["good"] = {"swap": code, "active": s["active"]["version"],
                   "auto_rollbacks": s["auto_rollbacks"] - autos}
    time.sleep(lead)
    autos = s["auto_rollbacks"]
    stage("6")
    code, _ = swap()
    s = after_bake()
    r = s["last_auto_rollback"] or {}
    out["slow"] = {"swap": code, "active": s["active"]["version"],
                   "auto_rollbacks": s["auto_rollbacks"] - autos, "reason": r.get("reason")}
    time.sleep(lead)
    code, a = stage("3")
    if code == 200:
        code, a = swap()
    out["wrong"] = {"refused": code == 422, "active": status()["active"]["version"],
                    "error": a.get("error")}
    print(json.dumps(out))
PY

# --- the service ------------------------------------------------------------------------
log "starting the service (workers=$WORKERS)"
# Starts on v1; every promotion bakes (the churn cycles roll back inside the window).
BLUEGREEN_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN" --port 0 --workers "$WORKERS" --version 1 \
    --bake-ms "$BAKE_MS" --bake-max-p99-ms "$BAKE_MAX_P99_MS" \
    --bake-min-samples "$BAKE_MIN_SAMPLES" --quarantine "$QUARANTINE" \
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

RUN=0
run_wrk() { # $1 = seconds, $2 = the run's name (NN-phase); prints the RESULT line
    wrk --threads "$THREADS" --connections "$CONNECTIONS" --duration "${1}s" --timeout 5s \
        --script "$WORK/predict.lua" "$URL" -- "$WORK/requests/$2" | grep '^RESULT'
}
admin() { python3 "$WORK/admin.py" "$ADDR" "$TOKEN" "$@"; }
metric() { curl -fsS "$URL/metrics" | sed -n "s/^$1 //p"; }

: >"$WORK/events.tsv"
admin watch "$WORK/events.tsv" "$WORK/stop-watch" &
WATCH_PID=$!

log "warm-up: ${WARMUP}s"
run_wrk "$WARMUP" 00-warmup >/dev/null

SWAPS_BEFORE="$(metric 'bluegreen_swaps_total{model="digits"}')"
ROLLBACKS_BEFORE="$(metric 'bluegreen_rollbacks_total{model="digits"}')"
: >"$WORK/baseline"
: >"$WORK/churn"
CYCLES=0
FAILED=0
for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then order="baseline churn"; else order="churn baseline"; fi
    for kind in $order; do
        RUN=$((RUN + 1))
        name="$(printf '%02d-%s' "$RUN" "$kind")"
        if [[ "$kind" == baseline ]]; then
            r="$(run_wrk "$WINDOW" "$name")"
        else
            rm -f "$WORK/stop"
            admin churn "$WORK/events.tsv" "$PACE_MS" "$WORK/stop" >"$WORK/cycles" &
            CHURN_PID=$!
            r="$(run_wrk "$WINDOW" "$name")"
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

# --- the scenario: the safety net under load ------------------------------------------------
echo '{}' >"$WORK/scenario.json"
: >"$WORK/scenario"
if ((SCENARIO > 0)); then
    RUN=$((RUN + 1))
    lead="$(python3 -c "print(max(0.5, round(($SCENARIO - 4 - 2 * $BAKE_MS / 1000) / 3, 2)))")"
    admin scenario "$WORK/events.tsv" "$lead" >"$WORK/scenario.json" &
    CHURN_PID=$!
    r="$(run_wrk "$SCENARIO" "$(printf '%02d-scenario' "$RUN")")"
    wait "$CHURN_PID" || die "the scenario's admin client failed"
    CHURN_PID=""
    echo "$r" >"$WORK/scenario"
    log "scenario: ${r#RESULT } $(cat "$WORK/scenario.json")"
fi
touch "$WORK/stop-watch"
wait "$WATCH_PID" || die "the status watcher failed"
WATCH_PID=""

# --- the timeline ---------------------------------------------------------------------------
CAPTION="bluegreen serve under load, $(date -u +%Y-%m-%d), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$TIMELINE" --requests "$WORK/requests" --events "$WORK/events.tsv" \
    --out "$TIMELINE_OUT/timeline.svg" --csv "$TIMELINE_OUT/timeline.csv" \
    --title "$CAPTION: every window" >&2 || die "drawing the timeline failed"
if ((SCENARIO > 0)); then
    "$TIMELINE" --requests "$WORK/requests" --events "$WORK/events.tsv" --phase scenario \
        --out "$TIMELINE_OUT/timeline-scenario.svg" --csv "$TIMELINE_OUT/timeline-scenario.csv" \
        --title "$CAPTION: the safety net" >&2 || die "drawing the scenario failed"
fi
cp "$WORK/events.tsv" "$TIMELINE_OUT/events.tsv"

# --- report -------------------------------------------------------------------------------
python3 - "$WORK/baseline" "$WORK/churn" "$SWAPS" "$ROLLBACKS" "$FAILED" "$MIN_CYCLES" \
    "$MAX_RATIO" "$ROUNDS" "$WINDOW" "$CONNECTIONS" "$THREADS" "$ROWS" "$WORKERS" \
    "$(nproc)" "$PACE_MS" "$WORK/scenario" "$WORK/scenario.json" "$SCENARIO" \
    "$TIMELINE_OUT" "$QUARANTINE" <<'PY'
import json, statistics, sys
(base_f, churn_f, swaps, rollbacks, failed, min_cycles, max_ratio, rounds, window,
 connections, threads, rows, workers, cpus, pace, scen_f, scen_json, scenario,
 timeline_out, quarantine) = sys.argv[1:]
def load(path):
    runs = []
    for line in open(path):
        runs.append({k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])})
    return runs
base, churn, scen = load(base_f), load(churn_f), load(scen_f)
story = json.load(open(scen_json))
good, slow, wrong = (story.get(k, {}) for k in ("good", "slow", "wrong"))
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
      f"{cpus} CPUs, one churn cycle every {pace} ms, quarantine {quarantine}")
if scen:
    s = scen[0]
    print(f"scenario ({scenario}s under load): {s['requests']} requests, p50 {s['p50_us']} us, "
          f"p99 {s['p99_us']} us, max {s['max_us']} us; v2 swap {good.get('swap')}, then active "
          f"{good.get('active')}; v6 swap {slow.get('swap')}, then active {slow.get('active')} "
          f"({slow.get('reason')}); v3 refused: {wrong.get('error')}, active {wrong.get('active')}")
print(f"timeline: {timeline_out}/timeline.svg" + (", timeline-scenario.svg" if scen else ""))
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
if int(scenario) > 0:
    s = scen[0] if scen else {"non2xx": -1, "sockerr": -1}
    bad = s["non2xx"] + s["sockerr"]
    check(bad == 0, f"zero non-2xx answers and socket errors in the scenario ({bad})")
    check(good.get("swap") == 200 and good.get("active") == "2" and good.get("auto_rollbacks") == 0,
          "scenario: v2 promoted, its bake passed, it stays active")
    check(slow.get("swap") == 200 and slow.get("active") == "2" and slow.get("auto_rollbacks") == 1,
          "scenario: v6 promoted and rolled back automatically by the bake window")
    check(wrong.get("refused") is True and wrong.get("active") == "2",
          "scenario: v3 refused (422) by its gates, v2 keeps serving")
sys.exit(0 if ok else 1)
PY
