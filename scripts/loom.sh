#!/usr/bin/env bash
# Model-checks bluegreen's core with loom (tests/loom.rs): every interleaving, up to
# LOOM_MAX_PREEMPTIONS preemptions (each test sets its default: 2, or 1 for the three-way
# bake race), of readers, swap, rollback, drain, retirer
# and bake monitor. Builds under `--cfg bluegreen_loom` in its own target directory, so the
# normal build cache is untouched, in the `loom` profile (release with debug assertions);
# the ONNX backend and the dev-dependencies are left out (tests/loom.rs needs neither). Extra arguments go to `cargo test` (e.g. a test name).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export RUSTFLAGS="${RUSTFLAGS:-} --cfg bluegreen_loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"

exec cargo test --no-default-features --locked --profile loom --test loom "$@"
