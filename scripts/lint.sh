#!/usr/bin/env bash
# Formatting, clippy (warnings are errors) and docs (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings -D clippy::undocumented_unsafe_blocks
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
echo "lint: fmt, clippy and doc are clean"
