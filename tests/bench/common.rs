//! What the benchmarks share: the static no-op fixture and the median.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Compiles tests/fixtures/noop.c statically into a directory of its own (removed by
/// the caller with its parent).
pub fn compile_noop(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("noop");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/noop.c");
    let ok = Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc is needed")
        .success();
    assert!(ok, "compiling the no-op fixture failed");
    out
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn time<F: FnMut()>(mut f: F) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Rounds from MOAT_BENCH_ROUNDS, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("MOAT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
