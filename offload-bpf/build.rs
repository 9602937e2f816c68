//! Builds the XDP programs (`ebpf/`) for `bpfel-unknown-none` with aya-build and
//! leaves the object in `OUT_DIR/nexthop` for `src/object.rs` to embed.
//!
//! The eBPF toolchain is pinned: rustc 1.95.0 with `rust-src` (its `-Z build-std`
//! unlocked by `RUSTC_BOOTSTRAP=1`) and `bpf-linker` 0.13.0 on LLVM 22, all of
//! which `scripts/test-all.sh` installs.

use std::path::Path;

/// The toolchain that compiles the eBPF crate (LLVM 22, like bpf-linker).
const EBPF_TOOLCHAIN: &str = "1.95.0";

fn main() -> aya_build::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = Path::new(&manifest_dir).join("ebpf");
    // The eBPF code also compiles the common crate and router-core's shared modules.
    for dep in ["common", "../router-core/src", "../router-core/Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            Path::new(&manifest_dir).join(dep).display()
        );
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("bpf-linker").is_file()));
    if !on_path {
        return Err(std::io::Error::other(
            "bpf-linker is not on PATH: run scripts/test-all.sh, or `LLVM_PREFIX=/usr/lib/llvm-22 \
             cargo install --locked bpf-linker@0.13.0 --no-default-features --features llvm-22`",
        )
        .into());
    }
    // SAFETY: the build script is single-threaded; the variable is read by aya-build
    // and the cargo it spawns (stable toolchain + `-Z build-std=core`).
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    // aya-build runs `cargo build --package` in the current directory: the eBPF
    // crate is a workspace of its own.
    std::env::set_current_dir(&ebpf_dir)?;
    let ebpf_dir = ebpf_dir.to_str().expect("UTF-8 path");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "nexthop-offload-bpf-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
