//! The library's requests: `moat::Request` and `moat::exec` with bytes in and out and
//! nothing for the caller to clean up; a cache kept across requests; a cancelled
//! request; no descriptor, mount or thread of the caller's process left behind.
mod common;
use common::*;
use moat::request::{
    CacheAs, Command, CopyOut, ExecOptions, FileCache, FileOutResult, FileSource, Input, Output,
    Pipe,
};
use moat::{Request, Status};
use std::time::{Duration, Instant};

/// The tests of this file count the process's descriptors and threads: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn sh(script: &str) -> Command {
    let mut c = Command::new(&["/bin/sh", "-c", script]);
    c.profile = "sh".into();
    c
}

#[test]
fn bytes_in_bytes_out_and_nothing_left() {
    let _one = serial();
    // Warm up what the process keeps for good (the loader cache, cgroup layout, the
    // sweeper), so what is counted is what one request leaves.
    let _ = moat::exec(&Request {
        commands: vec![Command::new(&["/bin/true"])],
        ..Request::default()
    });
    let (fds, mounts, tasks) = (open_fds(), mount_count(), threads());
    let mut c = sh("cat; cat in.txt >&2; echo made > out.bin");
    c.stdin = Input::Bytes(b"from memory\n".to_vec().into());
    c.stdout = Output::Collect(1024);
    c.stderr = Output::Collect(1024);
    c.files_in.insert(
        "in.txt".into(),
        FileSource::Bytes {
            data: b"a file\n".to_vec().into(),
            mode: 0o644,
        },
    );
    c.files_out.push(CopyOut {
        path: "out.bin".into(),
        max: Some(100),
        optional: false,
        cache: CacheAs::No,
    });
    let mut reader = sh("cat");
    reader.stdin = Input::Pipe("p".into());
    reader.stdout = Output::Collect(100);
    let mut writer = sh("echo piped");
    writer.stdout = Output::Pipe("p".into());
    let request = Request {
        id: Some("lib".into()),
        commands: vec![c, writer, reader],
        pipes: vec![Pipe {
            name: "p".into(),
            record: Some(3),
            from: None,
            to: None,
        }],
    };
    let response = moat::exec(&request);
    assert_eq!(response.error, None);
    let r = &response.results;
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].outcome.status, Status::Ok, "{:#?}", r[0]);
    assert_eq!(r[0].stdout.as_deref(), Some(&b"from memory\n"[..]));
    assert_eq!(r[0].stderr.as_deref(), Some(&b"a file\n"[..]));
    assert_eq!(
        r[0].files_out.get("out.bin"),
        Some(&FileOutResult::Bytes(b"made\n".to_vec()))
    );
    assert_eq!(r[2].stdout.as_deref(), Some(&b"piped\n"[..]));
    let rec = &response.pipes["p"];
    assert_eq!((rec.bytes.as_slice(), rec.total), (&b"pip"[..], 6));
    assert_eq!(open_fds(), fds, "descriptors left open");
    assert_eq!(mount_count(), mounts);
    // The harness's own test threads come and go; none of moat's may stay.
    assert!(
        threads() <= tasks,
        "threads left running: {} > {tasks}",
        threads()
    );
}

#[test]
fn a_cache_outlives_the_request_that_filled_it() {
    let _one = serial();
    let cache = FileCache::new(1 << 20);
    let mut make = sh("printf 42 > n");
    make.files_out.push(CopyOut {
        path: "n".into(),
        max: None,
        optional: false,
        cache: CacheAs::Auto,
    });
    let first = moat::request::exec_with(
        &Request {
            commands: vec![make],
            ..Request::default()
        },
        &cache,
        &ExecOptions::default(),
    );
    let Some(FileOutResult::Cached { id, size }) = first.results[0].files_out.get("n").cloned()
    else {
        panic!("{first:#?}")
    };
    assert_eq!(size, 2);
    assert_eq!(cache.get(&id).unwrap().data.as_ref(), b"42");
    let mut read = sh("cat");
    read.stdin = Input::Cached(id.clone());
    read.stdout = Output::Collect(10);
    let second = moat::request::exec_with(
        &Request {
            commands: vec![read],
            ..Request::default()
        },
        &cache,
        &ExecOptions::default(),
    );
    assert_eq!(second.results[0].stdout.as_deref(), Some(&b"42"[..]));
    // The cache is bounded: a file over what is left is a file error of its maker.
    let mut big = sh("head -c 2000000 /dev/zero > z");
    big.files_out.push(CopyOut {
        path: "z".into(),
        max: None,
        optional: false,
        cache: CacheAs::Id("zeros".into()),
    });
    let third = moat::request::exec_with(
        &Request {
            commands: vec![big],
            ..Request::default()
        },
        &cache,
        &ExecOptions::default(),
    );
    let r = &third.results[0];
    assert_eq!(r.outcome.status, Status::FileError, "{r:#?}");
    assert!(
        r.file_errors[0].reason.starts_with("the cache is full"),
        "{r:#?}"
    );
}

#[test]
fn a_cancelled_request_ends_every_command_at_once() {
    let _one = serial();
    let cancel = moat::Cancel::new();
    let opts = ExecOptions {
        cgroup: None,
        cancel: Some(cancel.clone()),
        pool: None,
    };
    let mut a = sh("sleep 30");
    a.stdout = Output::Pipe("p".into());
    let mut b = sh("cat; sleep 30");
    b.stdin = Input::Pipe("p".into());
    let request = Request {
        commands: vec![a, b, sh("sleep 30")],
        pipes: vec![Pipe {
            name: "p".into(),
            record: None,
            from: None,
            to: None,
        }],
        ..Request::default()
    };
    let stopper = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.cancel(libc::SIGTERM);
        })
    };
    let started = Instant::now();
    let response = moat::request::exec_with(&request, &FileCache::default(), &opts);
    stopper.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    for r in &response.results {
        assert_eq!(r.outcome.status, Status::Cancelled, "{r:#?}");
        assert_eq!(r.outcome.cancelled_by, Some(libc::SIGTERM));
    }
}
