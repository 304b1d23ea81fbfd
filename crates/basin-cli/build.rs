//! Links `basin` with packed relative relocations (`-z pack-relative-relocs`, DT_RELR) where
//! the linker and the C library support them, and (optimized builds) with identical code
//! folding.
//!
//! The binary carries ~310k relative relocations (DataFusion's and arrow's vtables and
//! static tables). As plain RELA entries they take 7.4 MB that the dynamic loader reads and
//! applies before `main`, at every start: ~10% of the CPU of a short `basin query`. Packed,
//! they take 89 kB: `basin --version` starts ~1 ms sooner, a small `basin query` answers
//! 2-4 ms sooner (docs/benchmarks/build.md, "Starting a process: packed relocations").
//!
//! glibc runs DT_RELR binaries from 2.36, GNU ld writes them from 2.38; an older glibc
//! refuses to start such a binary. So this links and runs a tiny program with the flag first,
//! and passes it on only if that works: a build on an older system links as before. Cross
//! builds (the probe could not run) link as before too.

use std::path::PathBuf;
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";
const ICF: &str = "-Wl,--icf=all";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    if probe().unwrap_or(false) {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
    // Identical code folding: functions whose machine code came out the same (monomorphized
    // generics, derived impls) kept once. rust-lld, the linker rustc uses on this target,
    // does it; release builds only (it costs link time). `BASIN_LINK_ICF=0` turns it off
    // for a build with another linker.
    println!("cargo:rerun-if-env-changed=BASIN_LINK_ICF");
    let optimized = std::env::var("PROFILE").as_deref() == Ok("release");
    let wanted = std::env::var("BASIN_LINK_ICF").as_deref() != Ok("0");
    if target == "x86_64-unknown-linux-gnu" && optimized && wanted {
        println!("cargo:rustc-link-arg-bins={ICF}");
    }
}

/// Whether a C program linked with the flag builds without a warning and runs.
fn probe() -> Option<bool> {
    let dir = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let source = dir.join("relr_probe.c");
    let program = dir.join("relr_probe");
    // A pointer in writable data needs a relative relocation, so the output has a RELR table.
    std::fs::write(
        &source,
        "static int x; int *p = &x; int main(void) { return *p; }\n",
    )
    .ok()?;
    let linked = Command::new("cc")
        .args(["-fPIE", "-pie", FLAG, "-o"])
        .arg(&program)
        .arg(&source)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    // An ld that does not know the option ignores it with a warning.
    if !linked.status.success() || !linked.stderr.is_empty() {
        return Some(false);
    }
    let ran = Command::new(&program).stdin(Stdio::null()).status().ok()?;
    Some(ran.success())
}
