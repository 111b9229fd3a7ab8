#!/usr/bin/env bash
# Provision ONNX Runtime 1.31.1 for this repository's own tests, examples and benches.
#
# The library crate does not choose how ONNX Runtime is linked. This repository's tests,
# examples and benches use ort's `load-dynamic` feature and find the shared library through
# ORT_DYLIB_PATH, which .cargo/config.toml points at `.ort/lib/libonnxruntime.so.1.31.1`
# (unless ORT_DYLIB_PATH is already set in the environment).
#
# This script gets that file from the official PyPI wheel `onnxruntime==1.31.1` (the only
# outside source reachable offline besides crates.io), checks it against the wheel's own
# RECORD hash (and, on x86_64, a pinned sha256), and installs it. It needs python3 with pip; no virtualenv, nothing is
# installed into Python. Safe to run repeatedly and from any directory.
#
# Environment:
#   BLUEGREEN_ORT_CACHE  where downloaded wheels are kept
#                        (default: ${XDG_CACHE_HOME:-$HOME/.cache}/bluegreen/ort)
#   PYTHON               python interpreter to use (default: python3)
set -euo pipefail

ORT_VERSION="1.31.1"
LIB_NAME="libonnxruntime.so.${ORT_VERSION}"
WHEEL_MEMBER="onnxruntime/capi/${LIB_NAME}"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST_DIR="${REPO_ROOT}/.ort/lib"
DEST="${DEST_DIR}/${LIB_NAME}"
STAMP="${DEST}.sha256"
CACHE_DIR="${BLUEGREEN_ORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bluegreen/ort}"
PYTHON="${PYTHON:-python3}"
# sha256 of onnxruntime/capi/libonnxruntime.so.1.31.1 in the PyPI x86_64 manylinux wheel
# (the same file in the cp311 and cp312 wheels). Other architectures: checked against the
# wheel's RECORD only.
KNOWN_SHA256_x86_64="fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"

log() { printf 'setup-ort: %s\n' "$*" >&2; }
die() {
    printf 'setup-ort: error: %s\n' "$*" >&2
    exit 1
}

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install Python 3 with pip (or set PYTHON=...)"

case "$(uname -s)" in
Linux) ;;
*) die "only Linux is supported by this script (found $(uname -s)); on other systems set ORT_DYLIB_PATH to an ONNX Runtime ${ORT_VERSION} library, or enable ort's download-binaries feature" ;;
esac

sha256_of() { "$PYTHON" - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
PY
}

# 1. Already installed and intact? (the stamp holds the sha256 verified against the wheel)
if [[ -f "$DEST" && -f "$STAMP" ]]; then
    if [[ "$(sha256_of "$DEST")" == "$(cat "$STAMP")" ]]; then
        log "ONNX Runtime ${ORT_VERSION} already installed (sha256 ok)"
        printf '%s\n' "$DEST"
        exit 0
    fi
    log "installed ${LIB_NAME} does not match its recorded sha256; reinstalling"
fi

# 2. Find or download the wheel, extract and verify the library, install it atomically.
mkdir -p "$CACHE_DIR"
find_wheel() {
    local w
    for w in "$CACHE_DIR"/onnxruntime-"${ORT_VERSION}"-*.whl; do
        [[ -f "$w" ]] && { printf '%s\n' "$w"; return 0; }
    done
    return 1
}

download_wheel() {
    log "downloading onnxruntime==${ORT_VERSION} wheel from PyPI into ${CACHE_DIR}"
    # First: whatever wheel fits the local interpreter and platform. The shared library inside
    # is the same for every CPython version, so if the local Python has no matching wheel
    # (too new, too old), fall back to the CPython 3.11 manylinux wheel for this machine.
    if ! "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$CACHE_DIR" "onnxruntime==${ORT_VERSION}" >&2; then
        local arch
        arch="$(uname -m)"
        log "no wheel for the local Python; trying the cp311 manylinux wheel for ${arch}"
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
            --implementation cp --python-version 3.11 --abi cp311 \
            --platform "manylinux_2_28_${arch}" --platform "manylinux_2_27_${arch}" \
            --platform "manylinux_2_17_${arch}" --platform "manylinux2014_${arch}" \
            --dest "$CACHE_DIR" "onnxruntime==${ORT_VERSION}" >&2 ||
            die "pip could not download onnxruntime==${ORT_VERSION} (is PyPI reachable?)"
    fi
    find_wheel || die "pip finished but no onnxruntime-${ORT_VERSION} wheel is in ${CACHE_DIR}"
}

# Extracts the library from wheel $1, verifies it, installs it atomically.
# Exit status 3: the wheel itself is unusable (corrupt, incomplete).
extract() {
    "$PYTHON" - "$1" "$WHEEL_MEMBER" "$DEST" "$STAMP" "$2" <<'PY'
import base64, csv, hashlib, io, os, sys, zipfile

wheel, member, dest, stamp, known = sys.argv[1:6]
def bad_wheel(msg):
    print(f"setup-ort: {wheel}: {msg}", file=sys.stderr)
    sys.exit(3)
try:
    zf = zipfile.ZipFile(wheel)
except (zipfile.BadZipFile, OSError) as e:
    bad_wheel(f"not a valid wheel ({e})")
with zf:
    names = zf.namelist()
    if member not in names:
        bad_wheel(f"{member} not found in the wheel")
    record_name = next((n for n in names if n.endswith(".dist-info/RECORD")), None)
    expected = None
    if record_name is not None:
        for row in csv.reader(io.TextIOWrapper(zf.open(record_name), encoding="utf-8")):
            if row and row[0] == member and len(row) >= 2 and row[1].startswith("sha256="):
                expected = row[1][len("sha256="):]
    if expected is None:
        bad_wheel(f"no sha256 for {member} in the wheel's RECORD")
    tmp = dest + ".tmp"
    h = hashlib.sha256()
    try:
        with zf.open(member) as src, open(tmp, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        bad_wheel(f"cannot extract {member} ({e})")
    got = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
    if got != expected or (known and h.hexdigest() != known):
        os.unlink(tmp)
        bad_wheel(f"{member} sha256 mismatch (RECORD {expected}, pinned {known or '-'}, extracted {h.hexdigest()})")
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    with open(stamp, "w") as f:
        f.write(h.hexdigest() + "\n")
PY
}

known_var="KNOWN_SHA256_$(uname -m)"
KNOWN="${!known_var:-}"
mkdir -p "$DEST_DIR"
WHEEL="$(find_wheel || true)"
if [[ -z "$WHEEL" ]]; then
    WHEEL="$(download_wheel)" || exit 1
fi
log "using wheel ${WHEEL}"
status=0
extract "$WHEEL" "$KNOWN" || status=$?
if [[ $status -eq 3 ]]; then
    log "discarding the cached wheel and downloading it again"
    rm -f "$WHEEL"
    WHEEL="$(download_wheel)" || exit 1
    extract "$WHEEL" "$KNOWN" || die "the freshly downloaded wheel is unusable too; see above"
elif [[ $status -ne 0 ]]; then
    die "extracting ${WHEEL_MEMBER} failed"
fi

log "installed ONNX Runtime ${ORT_VERSION} at ${DEST}"
log "cargo finds it through .cargo/config.toml; elsewhere: export ORT_DYLIB_PATH=${DEST}"
printf '%s\n' "$DEST"
