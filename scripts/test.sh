#!/usr/bin/env bash
# Runs bluegreen's whole test suite on a fresh machine (Rust + python3/pip are enough):
# provisions ONNX Runtime 1.31.1 for the tests (scripts/setup-ort.sh), then runs every
# unit, integration and doc test with all features. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup-ort.sh >/dev/null
exec cargo test --all-features --locked "$@"
