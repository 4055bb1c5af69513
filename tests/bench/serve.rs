//! The warm path: a static no-op started in a jail from the pool, through the library
//! and through `moat serve`'s `POST /run`, against a bare fork+exec of the same no-op
//! measured in the same rounds; then runs per second with two clients at once, beside
//! the cold CLI and, where installed, bubblewrap's CLI.
//!
//! `cargo bench --bench serve` prints each runner's median time and its median ratio to
//! bare; `MOAT_BENCH_ROUNDS` sets the rounds (default 300). Not a test: the goals are
//! printed beside the figures, never asserted.

#[path = "common.rs"]
mod common;
use common::{bwrap_filter, bwrap_run, bwrap_version, compile_noop, median, rounds, time};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A runner: its name, its goal, and one run.
type Runner<'a> = (&'static str, &'static str, Box<dyn FnMut() + 'a>);

fn main() {
    // The fork server is forked before any thread exists.
    let pool = moat::Pool::start(4).expect("the warm pool starts");
    let rounds = rounds(300);
    let noop = compile_noop("serve");
    let dir = noop.parent().unwrap().to_path_buf();
    let filter = dir.join("filter.bpf");
    std::fs::write(&filter, bwrap_filter()).unwrap();
    let moat_bin = Path::new(env!("CARGO_BIN_EXE_moat"));
    let sock = dir.join("moat.sock");
    let mut server = Command::new(moat_bin)
        .args(["serve", "--quiet", "--pre-fork", "8", "--parallelism", "2"])
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("moat serve starts");
    while UnixStream::connect(&sock).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let policy = moat::Policy::load("default", &moat::Overrides::default()).unwrap();
    let plan = moat::Plan::build(policy, &[noop.clone().into_os_string()]).unwrap();
    let body_gojudge = request_body(&noop, None);
    let body_default = request_body(&noop, Some("default"));

    let bare = || {
        let st = Command::new(&noop)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    };
    let library = |pool: Option<Arc<moat::Pool>>| {
        let opts = moat::RunOptions {
            stdin: Some("/dev/null".into()),
            stdout: Some("/dev/null".into()),
            pool,
            ..moat::RunOptions::default()
        };
        let o = moat::run_with(&plan, &opts).unwrap();
        assert_eq!(o.status, moat::Status::Ok, "{o:?}");
    };
    let mut c1 = Client::connect(&sock);
    let mut c2 = Client::connect(&sock);
    let mut runners: Vec<Runner<'_>> = vec![
        ("bare fork+exec+wait", "", Box::new(bare)),
        ("library, cold jail", "", Box::new(|| library(None))),
        (
            "library, warm pool",
            "<= 2x",
            Box::new(|| library(Some(pool.clone()))),
        ),
        (
            "POST /run, gojudge profile",
            "<= 3x",
            Box::new(|| c1.run(&body_gojudge)),
        ),
        (
            "POST /run, moatProfile default",
            "",
            Box::new(|| c2.run(&body_default)),
        ),
    ];
    for _ in 0..20 {
        for (_, _, r) in runners.iter_mut() {
            r();
        }
    }
    let n = runners.len();
    let mut ms: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); n];
    for _ in 0..rounds {
        let t: Vec<f64> = runners
            .iter_mut()
            .map(|(_, _, r)| time(r).as_secs_f64() * 1e3)
            .collect();
        for i in 0..n {
            ms[i].push(t[i]);
            ratio[i].push(t[i] / t[0]);
        }
    }
    println!("moat warm-path benchmark: {rounds} interleaved rounds, a static no-op; POST /run collects 10 KiB of stdout");
    println!(
        "  {:<34} {:>10} {:>10}  goal",
        "runner", "median ms", "x bare"
    );
    for i in 0..n {
        println!(
            "  {:<34} {:>10.3} {:>9.2}x  {}",
            runners[i].0,
            median(&mut ms[i]),
            median(&mut ratio[i]),
            runners[i].1
        );
    }
    drop(runners);

    // Throughput: 2 clients at once, 1000 runs in all (100 for the CLIs), 5 times.
    let bwrap = bwrap_version();
    let bwrap_mounts = vec![format!("--ro-bind\0{}\0{}", noop.display(), noop.display())];
    let argv: Vec<OsString> = vec![noop.clone().into()];
    let mut names = vec![
        "bare fork+exec+wait",
        "POST /run, 2 clients",
        "POST /run, moatProfile default",
        "library warm pool, 2 threads",
        "moat run (CLI), cold",
    ];
    if bwrap.is_some() {
        names.push("bwrap (CLI)");
    }
    let mut rate: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..5 {
        for (i, name) in names.iter().enumerate() {
            let per = if name.contains("CLI") { 50 } else { 500 };
            let one = || match *name {
                "bare fork+exec+wait" => bare(),
                "POST /run, 2 clients" => CLIENTS.with(|c| {
                    c.borrow_mut()
                        .get_or_insert_with(|| Client::connect(&sock))
                        .run(&body_gojudge)
                }),
                "POST /run, moatProfile default" => CLIENTS.with(|c| {
                    c.borrow_mut()
                        .get_or_insert_with(|| Client::connect(&sock))
                        .run(&body_default)
                }),
                "library warm pool, 2 threads" => library(Some(pool.clone())),
                "moat run (CLI), cold" => {
                    let st = Command::new(moat_bin)
                        .args(["run", "--"])
                        .arg(&noop)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .status()
                        .unwrap();
                    assert!(st.success());
                }
                _ => bwrap_run(&bwrap_mounts, &argv, &filter),
            };
            let started = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..per {
                            one();
                        }
                    });
                }
            });
            rate[i].push(2.0 * per as f64 / started.elapsed().as_secs_f64());
        }
    }
    println!("runs per second, 2 at a time (median of 5)        share of bare");
    let bare_rates = rate[0].clone();
    for (i, name) in names.iter().enumerate() {
        let mut share: Vec<f64> = rate[i]
            .iter()
            .zip(&bare_rates)
            .map(|(r, b)| 100.0 * r / b)
            .collect();
        let goal = if *name == "POST /run, 2 clients" {
            ">= 1000/s"
        } else {
            ""
        };
        println!(
            "  {name:<34} {:>8.0}/s {:>8.1}%  {goal}",
            median(&mut rate[i]),
            median(&mut share)
        );
    }
    // SAFETY: kill of our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let _ = server.wait();
    drop(pool);
    let _ = std::fs::remove_dir_all(&dir);
}

thread_local! {
    static CLIENTS: std::cell::RefCell<Option<Client>> = const { std::cell::RefCell::new(None) };
}

fn request_body(noop: &Path, profile: Option<&str>) -> Vec<u8> {
    let mut cmd = serde_json::json!({
        "args": [noop],
        "files": [{"content": ""}, {"name": "stdout", "max": 10240}, {"name": "stderr", "max": 10240}],
        "cpuLimit": 1_000_000_000u64,
        "memoryLimit": 268_435_456u64,
    });
    if let Some(p) = profile {
        cmd["moatProfile"] = p.into();
    }
    serde_json::json!({"cmd": [cmd]}).to_string().into_bytes()
}

/// One keep-alive connection to the service.
struct Client {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Client {
    fn connect(sock: &PathBuf) -> Client {
        let s = UnixStream::connect(sock).unwrap();
        Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    fn run(&mut self, body: &[u8]) {
        let mut req = format!(
            "POST /run HTTP/1.1\r\nHost: moat\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.w.write_all(&req).unwrap();
        let mut len = 0;
        let mut status = String::new();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            if status.is_empty() {
                status = line.clone();
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        assert!(
            body.starts_with(b"[{\"status\":\"Accepted\""),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}
