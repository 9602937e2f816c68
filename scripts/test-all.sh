#!/usr/bin/env bash
# Runs every check and test nexthop has, installing what they need first, so that
# on a fresh machine (and in CI) nothing is skipped. Run as root for the tests that
# build network namespaces or load eBPF programs. Usage: scripts/test-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the suite uses: tshark decodes the simulator's pcap files;
# llvm-22-dev is the LLVM bpf-linker links against (offload-bpf's eBPF build);
# etcd-server runs the agent's etcd lease store tests; protobuf-compiler (protoc)
# builds the etcd-client crate's gRPC code.
# ndisc6 asks for the IPv6 service address in the agent L2 test.
# chromium (headless) loads the simulator's HTML report in its test.
APT_PACKAGES=(chromium tshark llvm-22-dev iproute2 iputils-ping curl frr bird2 gobgpd arping ndisc6 ethtool etcd-server protobuf-compiler ipvsadm iptables conntrack)

# kubectl builds deploy/ on the client side (kubectl kustomize); Debian's
# kubernetes-client provides it where no other kubectl is installed.
command -v kubectl >/dev/null || APT_PACKAGES+=(kubernetes-client)

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

# The eBPF toolchain (offload-bpf only; the simulator and router-core never need it).
# EBPF_TOOLCHAIN must match offload-bpf/build.rs; bpf-linker's LLVM (22) must be
# at least that rustc's LLVM.
EBPF_TOOLCHAIN=1.95.0
BPF_LINKER_VERSION=0.13.0
step "eBPF toolchain: rust $EBPF_TOOLCHAIN with rust-src, bpf-linker $BPF_LINKER_VERSION"
rustup toolchain install "$EBPF_TOOLCHAIN" --profile minimal --component rust-src >/dev/null
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if [[ "$(bpf-linker --version 2>/dev/null)" != "bpf-linker $BPF_LINKER_VERSION" ]]; then
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install --locked "bpf-linker@$BPF_LINKER_VERSION" \
    --no-default-features --features llvm-22
fi

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path offload-bpf/ebpf/Cargo.toml -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "router-core builds for a no_std target (x86_64-unknown-none), with alloc and bare"
cargo build -p router-core --no-default-features --features alloc --target x86_64-unknown-none --locked
cargo build -p router-core --no-default-features --target x86_64-unknown-none --locked

step "unit and integration tests"
cargo test --workspace --exclude nexthop-proptests --locked

step "property tests (release build: thousands of cases each)"
cargo test --release -p nexthop-proptests --locked
