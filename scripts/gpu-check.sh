#!/usr/bin/env bash
# GPU memory across 50 hot swaps, on a CUDA machine. NOT run in CI.
#
# What it answers: does replacing a model on the GPU give the old model's memory back?
# (Triton's users report that unloading does not: triton-inference-server/server#3320.)
# examples/gpu_check.rs loads two versions of the digits model on ONNX Runtime's CUDA
# execution provider (bluegreen feature `cuda`) in a memory-tight deployment, swaps
# between them CYCLES times (default 50), and reads GPU memory with nvidia-smi:
#   before         runtime initialized, no model loaded
#   one model      the first version loaded and warmed
#   during         each cycle: the next version staged beside the active one (two models)
#   after retire   each cycle: swapped, old version drained and dropped by the retirer
# It prints every reading, then `gpu_memory_growth_after_retirement_mib` (after-retirement
# memory at the last cycle minus the first) and a verdict line. Flat means retirement gives
# the memory back; about one model per cycle means it leaks.
#
# Status: written and checked on a machine WITHOUT a GPU (the development machines and CI
# have none). There `bash -n` passes and `gpu_check --provider cpu` runs the same program
# end to end, and asking for CUDA fails with the typed ProviderUnavailable error; the CUDA
# path itself has not been run by its author. Figures from a GPU machine belong in the
# README next to the date and the GPU.
#
# Needs: an NVIDIA GPU with its driver and nvidia-smi; the CUDA runtime, cuBLAS and cuDNN
# that the onnxruntime-gpu wheel was built against, findable by the dynamic loader (system
# packages, or pip's nvidia-*-cu* wheels on LD_LIBRARY_PATH); Rust; python3 with pip.
#
# Environment:
#   CYCLES         swap cycles (default 50)
#   DEVICE         GPU index (default 0)
#   SESSIONS       sessions per model (default: bluegreen's accelerator default, 2)
#   ORT_GPU_DIR    a directory that already holds the onnxruntime-gpu libraries
#                  (libonnxruntime.so.1.31.1, libonnxruntime_providers_cuda.so,
#                  libonnxruntime_providers_shared.so); default: fetched from PyPI into
#                  .ort-gpu/lib
#   PYTHON         python interpreter (default python3)
set -euo pipefail

ORT_VERSION="1.31.1"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CYCLES="${CYCLES:-50}"
DEVICE="${DEVICE:-0}"
PYTHON="${PYTHON:-python3}"

log() { printf 'gpu-check: %s\n' "$*" >&2; }
die() {
    printf 'gpu-check: error: %s\n' "$*" >&2
    exit 1
}

# 1. A GPU we can read.
command -v nvidia-smi >/dev/null 2>&1 ||
    die "nvidia-smi not found: this script needs an NVIDIA GPU and its driver (it is not meant for CI or CPU-only machines; there, run: cargo run --release --example gpu_check -- --provider cpu --cycles 3)"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader -i "$DEVICE" >&2 ||
    die "nvidia-smi cannot read GPU $DEVICE"

# 2. ONNX Runtime's GPU build (the CPU build from scripts/setup-ort.sh has no CUDA provider).
if [[ -n "${ORT_GPU_DIR:-}" ]]; then
    LIB_DIR="$ORT_GPU_DIR"
else
    LIB_DIR="$REPO_ROOT/.ort-gpu/lib"
    if [[ ! -f "$LIB_DIR/libonnxruntime.so.$ORT_VERSION" ]]; then
        command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (needed to fetch onnxruntime-gpu)"
        WHEELS="$REPO_ROOT/.ort-gpu/wheels"
        mkdir -p "$WHEELS" "$LIB_DIR"
        log "downloading onnxruntime-gpu==$ORT_VERSION from PyPI (a few hundred MB)"
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
            --dest "$WHEELS" "onnxruntime-gpu==$ORT_VERSION" ||
            die "pip could not download onnxruntime-gpu==$ORT_VERSION for this platform"
        WHEEL="$(ls "$WHEELS"/onnxruntime_gpu-"$ORT_VERSION"-*.whl | head -n 1)"
        "$PYTHON" - "$WHEEL" "$LIB_DIR" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    libs = [n for n in z.namelist() if n.startswith("onnxruntime/capi/lib") and ".so" in n]
    for name in libs:
        target = os.path.join(dest, os.path.basename(name))
        with z.open(name) as src, open(target, "wb") as out:
            out.write(src.read())
        print("extracted", os.path.basename(name), file=sys.stderr)
PY
    fi
fi
ORT_LIB="$LIB_DIR/libonnxruntime.so.$ORT_VERSION"
[[ -f "$ORT_LIB" ]] || die "no $ORT_LIB"
[[ -f "$LIB_DIR/libonnxruntime_providers_cuda.so" ]] ||
    die "no libonnxruntime_providers_cuda.so in $LIB_DIR: that is not a GPU build of ONNX Runtime"
export ORT_DYLIB_PATH="$ORT_LIB"
export LD_LIBRARY_PATH="$LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# 3. The CUDA libraries the provider links against must be there, or ONNX Runtime fails at
#    session creation with a less direct message.
if command -v ldd >/dev/null 2>&1; then
    MISSING="$(ldd "$LIB_DIR/libonnxruntime_providers_cuda.so" | awk '/not found/ {print $1}' || true)"
    [[ -z "$MISSING" ]] ||
        die "the CUDA provider cannot find: $(echo "$MISSING" | tr '\n' ' ')— install the CUDA runtime/cuBLAS/cuDNN it was built for, or put pip's nvidia-*-cu* libraries on LD_LIBRARY_PATH"
fi

# 4. Build and run. `cuda` enables ort's CUDA provider API in bluegreen; the repository's
#    own ort dependency loads the library above at run time (load-dynamic).
cd "$REPO_ROOT"
log "building examples/gpu_check.rs with --features cuda"
cargo build --release --locked --features cuda --example gpu_check >&2
ARGS=(--provider cuda --device "$DEVICE" --cycles "$CYCLES")
[[ -n "${SESSIONS:-}" ]] && ARGS+=(--sessions "$SESSIONS")
log "running $CYCLES swap cycles on GPU $DEVICE"
"$(cargo metadata --format-version 1 --no-deps |
    "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/gpu_check" "${ARGS[@]}"
