//! Start-up cost of the full jail against a bare run of the same static no-op program,
//! measured in one process, interleaved so that machine noise hits both alike.
//!
//! `cargo bench --bench startup` prints the median of the per-pair ratios (target: <= 5x
//! bare). Not a test: this machine is shared and noisy, so it prints, never asserts.

#[path = "common.rs"]
mod common;
use common::{compile_noop, median, rounds, time};
use std::path::Path;
use std::process::{Command, Stdio};

fn main() {
    let rounds = rounds(300);
    let noop = compile_noop("startup");
    let policy = moat::Policy::load("default", &moat::Overrides::default()).unwrap();
    let plan = moat::Plan::build(policy, &[noop.clone().into_os_string()]).unwrap();
    let moat_bin = Path::new(env!("CARGO_BIN_EXE_moat"));

    let bare = || {
        let st = Command::new(&noop).stdin(Stdio::null()).status().unwrap();
        assert!(st.success());
    };
    let jailed = || {
        let o = moat::run(&plan).unwrap();
        assert_eq!(o.status, moat::Status::Ok, "{o:?}");
    };
    let cli = || {
        let st = Command::new(moat_bin)
            .args(["run", "--"])
            .arg(&noop)
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    };
    // Warm up caches (page cache, dentries, the kernel's namespace slabs).
    for _ in 0..20 {
        bare();
        jailed();
        cli();
    }
    let (mut b, mut j, mut c, mut rj, mut rc) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let tb = time(bare).as_secs_f64() * 1e3;
        let tj = time(jailed).as_secs_f64() * 1e3;
        let tc = time(cli).as_secs_f64() * 1e3;
        rj.push(tj / tb);
        rc.push(tc / tb);
        b.push(tb);
        j.push(tj);
        c.push(tc);
    }
    println!("moat start-up benchmark: {rounds} interleaved rounds, static no-op fixture");
    println!(
        "  bare fork+exec+wait           median {:.3} ms",
        median(&mut b)
    );
    println!(
        "  moat::run (library, full jail) median {:.3} ms",
        median(&mut j)
    );
    println!(
        "  moat run (CLI process)         median {:.3} ms",
        median(&mut c)
    );
    println!(
        "  ratio library/bare (median of per-pair ratios): {:.2}x   target <= 5x",
        median(&mut rj)
    );
    println!(
        "  ratio CLI/bare     (median of per-pair ratios): {:.2}x",
        median(&mut rc)
    );
    let _ = std::fs::remove_dir_all(noop.parent().unwrap());
}
