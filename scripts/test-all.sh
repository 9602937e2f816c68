#!/usr/bin/env bash
# Runs every check and test nexthop has, installing what they need first, so that
# on a fresh machine (and in CI) nothing is skipped. Run as root for the tests that
# build network namespaces or load eBPF programs. Usage: scripts/test-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the suite uses: tshark decodes the simulator's pcap files.
APT_PACKAGES=(tshark)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "rustup components and targets"
rustup component add rustfmt clippy >/dev/null
rustup target add x86_64-unknown-none >/dev/null

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "router-core builds for a no_std target (x86_64-unknown-none), with alloc and bare"
cargo build -p router-core --no-default-features --features alloc --target x86_64-unknown-none --locked
cargo build -p router-core --no-default-features --target x86_64-unknown-none --locked

step "unit and integration tests"
cargo test --workspace --exclude nexthop-proptests --locked

step "property tests (release build: thousands of cases each)"
cargo test --release -p nexthop-proptests --locked
