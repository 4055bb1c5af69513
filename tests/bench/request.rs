//! What a request costs over a bare library run of the same command: both build the
//! policy and the plan and run the static no-op fixture in a full jail; the request
//! also checks its JSON-shaped description, gives the command its work dir (a tmpfs)
//! and its empty stdin, and assembles the response. Measured in one process,
//! interleaved, so noise hits both alike.
//!
//! `cargo bench --bench request` prints the median per-command overhead (target: at
//! most 0.3 ms) for requests of one and of four commands. Not a test: this machine is
//! shared and noisy, so it prints, never asserts.

#[path = "common.rs"]
mod common;
use common::{compile_noop, median, rounds, time};
use moat::request::Command as ReqCommand;

fn ms<F: FnMut()>(f: F) -> f64 {
    time(f).as_secs_f64() * 1e3
}

fn main() {
    let rounds = rounds(200);
    let noop = compile_noop("request");
    let program = noop.to_str().unwrap().to_string();
    let bare = |n: usize| {
        for _ in 0..n {
            let policy = moat::Policy::load("default", &moat::Overrides::default()).unwrap();
            let plan = moat::Plan::build(policy, &[noop.clone().into_os_string()]).unwrap();
            let o = moat::run(&plan).unwrap();
            assert_eq!(o.status, moat::Status::Ok, "{o:?}");
        }
    };
    let request = |n: usize| {
        let r = moat::Request {
            commands: (0..n).map(|_| ReqCommand::new(&[&program])).collect(),
            ..moat::Request::default()
        };
        let resp = moat::exec(&r);
        assert!(
            resp.results
                .iter()
                .all(|c| c.outcome.status == moat::Status::Ok),
            "{resp:?}"
        );
    };
    for _ in 0..20 {
        bare(1);
        request(1);
    }
    println!("moat request benchmark: {rounds} interleaved rounds, static no-op fixture");
    for n in [1, 4] {
        let (mut b, mut r, mut d) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            let tb = ms(|| bare(n)) / n as f64;
            let tr = ms(|| request(n)) / n as f64;
            b.push(tb);
            r.push(tr);
            d.push(tr - tb);
        }
        println!(
            "  {n} command(s): bare library run {:.3} ms, request {:.3} ms per command",
            median(&mut b),
            median(&mut r)
        );
        println!(
            "  {n} command(s): request overhead (median of per-pair differences): {:+.3} ms per command   target <= 0.3 ms",
            median(&mut d)
        );
    }
    let _ = std::fs::remove_dir_all(noop.parent().unwrap());
}
