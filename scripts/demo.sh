#!/usr/bin/env bash
# Runs the quick-start demo on a fresh machine (Rust + python3/pip are enough): provisions
# ONNX Runtime 1.31.1 (scripts/setup-ort.sh), then hot-swaps the bundled digits models
# under live traffic. Extra arguments go to the example.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup-ort.sh >/dev/null
exec cargo run --release --locked --example quickstart -- "$@"
