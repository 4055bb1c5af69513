//! The program's standard streams: passed through by default, redirected to files on
//! request, relayed and cut exactly at the output cap (nothing below the cap lost, even
//! when the program is killed), and usable interactively through pipes without deadlock.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

const MIB: usize = 1 << 20;

/// One `moat run` with the program's bytes kept exactly as written.
#[derive(Debug)]
struct RawRun {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    report: Value,
}

impl RawRun {
    fn status(&self) -> &str {
        report_status(&self.report)
    }

    /// Everything about the run, with the streams shortened, for failure messages.
    fn show(&self) -> String {
        let cut = |b: &[u8]| {
            let s = String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
            format!(
                "{} bytes: {s:?}{}",
                b.len(),
                if b.len() > 300 { "..." } else { "" }
            )
        };
        format!(
            "code={} status={}\nstdout {}\nstderr {}\nreport {:#}",
            self.code,
            self.status(),
            cut(&self.stdout),
            cut(&self.stderr),
            self.report
        )
    }

    /// Asserts the run's verdict and exit code, showing the run on failure.
    #[track_caller]
    fn assert_verdict(&self, ctx: &str, status: &str, code: i32) {
        assert!(
            self.status() == status && self.code == code,
            "{ctx}: {}",
            self.show()
        );
    }
}

fn run_raw(caller: Caller, args: &[&str], stdin: &[u8]) -> RawRun {
    let report = ReportFile::new();
    let out = spawn_with_stdin(report.run(command(caller), args), stdin);
    RawRun {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: out.stderr,
        report: report.read(),
    }
}

/// The bytes io_pattern writes: byte k of a stream is ALPHA[(k * step + k / 4099) % 62].
fn pattern(step: usize, len: usize) -> Vec<u8> {
    const ALPHA: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..len)
        .map(|k| ALPHA[(k * step + k / 4099) % 62])
        .collect()
}

/// Asserts two byte strings are equal, naming the first difference instead of dumping
/// megabytes.
#[track_caller]
fn assert_bytes(what: &str, got: &[u8], want: &[u8], run: &RawRun) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "{what}: got {} bytes, want {}; first difference at {:?}\n{}",
        got.len(),
        want.len(),
        first,
        run.show()
    );
}

/// Stdin input with every byte value, longer than a pipe buffer.
fn binary_input() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend(pattern(5, 200 * 1024));
    v.extend(b"\0end\n");
    v
}

#[test]
fn streams_pass_through_by_default() {
    let prog = fixture("io_echo");
    let input = binary_input();
    for caller in callers() {
        let run = run_raw(caller, &["--", path_str(&prog)], &input);
        run.assert_verdict(&format!("{caller:?}"), "ok", 0);
        assert_bytes(
            &format!("{caller:?} stdout"),
            &run.stdout,
            &[b"out:".as_slice(), &input].concat(),
            &run,
        );
        assert_bytes(
            &format!("{caller:?} stderr"),
            &run.stderr,
            &[b"err:".as_slice(), &input].concat(),
            &run,
        );
    }
}

fn read_file(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

#[test]
fn redirects_go_to_files_and_not_to_moats_streams() {
    let prog = fixture("io_echo");
    let input = binary_input();
    let want_out = [b"out:".as_slice(), &input].concat();
    let want_err = [b"err:".as_slice(), &input].concat();
    for caller in callers() {
        // Without and with an output cap (the relay writes into the files then).
        for cap in [None, Some("1MiB")] {
            let dir = scratch();
            let (fin, fout, ferr) = (
                dir.path().join("in"),
                dir.path().join("out"),
                dir.path().join("err"),
            );
            std::fs::write(&fin, &input).unwrap();
            // A stale longer file must be truncated, not overwritten in place.
            std::fs::write(&ferr, vec![b'x'; 400 * 1024]).unwrap();
            std::fs::set_permissions(&ferr, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .unwrap();
            let mut args = vec![
                "--stdin",
                path_str(&fin),
                "--stdout",
                path_str(&fout),
                "--stderr",
                path_str(&ferr),
            ];
            if let Some(c) = cap {
                args.extend(["--output", c]);
            }
            args.extend(["--", path_str(&prog)]);
            // moat's own stdin carries something else: the program must not see it.
            let run = run_raw(caller, &args, b"not this\n");
            let ctx = format!("{caller:?} cap={cap:?}");
            run.assert_verdict(&ctx, "ok", 0);
            assert!(
                run.stdout.is_empty() && run.stderr.is_empty(),
                "{ctx}: output leaked onto moat's own streams: {}",
                run.show()
            );
            assert_bytes(
                &format!("{ctx} --stdout file"),
                &read_file(&fout),
                &want_out,
                &run,
            );
            assert_bytes(
                &format!("{ctx} --stderr file"),
                &read_file(&ferr),
                &want_err,
                &run,
            );
        }

        // Only stdout redirected: stderr still passes through.
        let dir = scratch();
        let fout = dir.path().join("out");
        let run = run_raw(
            caller,
            &["--stdout", path_str(&fout), "--", path_str(&prog)],
            b"abc\n",
        );
        assert!(
            run.status() == "ok" && run.code == 0 && run.stdout.is_empty(),
            "{caller:?} stdout only: {}",
            run.show()
        );
        assert_bytes(
            &format!("{caller:?} stdout file"),
            &read_file(&fout),
            b"out:abc\n",
            &run,
        );
        assert_bytes(
            &format!("{caller:?} stderr"),
            &run.stderr,
            b"err:abc\n",
            &run,
        );
    }
}

#[test]
fn output_cap_cuts_exactly_and_loses_nothing_below_it() {
    let prog = fixture("io_pattern");
    let n = (600 * 1024).to_string();
    for caller in callers() {
        // To moat's own streams, and into --stdout/--stderr files.
        for to_files in [false, true] {
            let dir = scratch();
            let (fout, ferr) = (dir.path().join("out"), dir.path().join("err"));
            let mut args = vec!["--output", "1MiB"];
            if to_files {
                args.extend(["--stdout", path_str(&fout), "--stderr", path_str(&ferr)]);
            }
            args.extend(["--", path_str(&prog), &n, &n]);
            let run = run_raw(caller, &args, b"");
            let ctx = format!("{caller:?} to_files={to_files}");
            run.assert_verdict(&ctx, "output_limit", 153);
            let (out, err) = if to_files {
                assert!(
                    run.stdout.is_empty() && run.stderr.is_empty(),
                    "{ctx}: {}",
                    run.show()
                );
                (read_file(&fout), read_file(&ferr))
            } else {
                (run.stdout.clone(), run.stderr.clone())
            };
            assert_bytes(
                &format!("{ctx} stdout"),
                &out,
                &pattern(7, 600 * 1024),
                &run,
            );
            assert_bytes(
                &format!("{ctx} stderr"),
                &err,
                &pattern(11, MIB - 600 * 1024),
                &run,
            );
            assert_eq!(
                run.report["output_bytes"],
                serde_json::json!([600 * 1024, MIB - 600 * 1024]),
                "{ctx}: {}",
                run.show()
            );
        }
    }
}

#[test]
fn output_below_the_cap_survives_a_wall_time_kill() {
    let prog = fixture("io_pattern");
    let n = (500 * 1024).to_string();
    for caller in callers() {
        let run = run_raw(
            caller,
            &[
                "--output",
                "1MiB",
                "--wall-time",
                "1s",
                "--",
                path_str(&prog),
                &n,
                "0",
                "sleep",
            ],
            b"",
        );
        run.assert_verdict(&format!("{caller:?}"), "wall_time_limit", 124);
        assert_bytes(
            &format!("{caller:?} stdout"),
            &run.stdout,
            &pattern(7, 500 * 1024),
            &run,
        );
        assert_bytes(&format!("{caller:?} stderr"), &run.stderr, b"", &run);
        assert_eq!(
            run.report["output_bytes"],
            serde_json::json!([500 * 1024, 0]),
            "{caller:?}: {}",
            run.show()
        );
    }
}

/// Drives io_interactive through pipes: one line out, one answer back, 100 times, then
/// end of input. A watchdog kills moat after 30 s so a deadlock fails instead of hanging.
fn converse(caller: Caller, extra: &[&str]) {
    let prog = fixture("io_interactive");
    let report = ReportFile::new();
    let mut cmd = report.run(command(caller), extra);
    cmd.arg("--")
        .arg(&prog)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run moat");
    let pid = child.id() as i32;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let fired = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let fired = fired.clone();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) =
                done_rx.recv_timeout(Duration::from_secs(30))
            {
                fired.store(true, Ordering::SeqCst);
                // SAFETY: kill with a plain pid (our own child, not yet reaped).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        })
    };
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let ctx = format!("{caller:?} {extra:?}");
    let mut failure = None;
    for i in 1..=100 {
        let line = format!("line {i} of the conversation");
        if let Err(e) = input
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| input.flush())
        {
            failure = Some(format!("writing line {i}: {e}"));
            break;
        }
        let mut answer = String::new();
        if let Err(e) = output.read_line(&mut answer) {
            failure = Some(format!("reading answer {i}: {e}"));
            break;
        }
        let want = format!("{i}:{}\n", line.chars().rev().collect::<String>());
        if answer != want {
            failure = Some(format!("answer {i}: got {answer:?}, want {want:?}"));
            break;
        }
    }
    drop(input); // end of input: the program exits
    let mut rest = Vec::new();
    let _ = output.read_to_end(&mut rest);
    let status = child.wait().unwrap();
    let _ = done_tx.send(());
    watchdog.join().unwrap();
    let err = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    let report = report.read();
    assert!(
        !fired.load(Ordering::SeqCst),
        "{ctx}: deadlock: moat was still running after 30 s and was killed ({failure:?})"
    );
    assert!(
        failure.is_none(),
        "{ctx}: {failure:?}; stderr {err:?}; report {report:#}"
    );
    assert!(
        report["status"] == "ok" && status.code() == Some(0) && rest.is_empty() && err.is_empty(),
        "{ctx}: status {status:?}, trailing stdout {:?}, stderr {err:?}, report {report:#}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn interactive_conversation_through_pipes() {
    for caller in callers() {
        converse(caller, &[]);
    }
}

#[test]
fn interactive_conversation_through_the_output_relay() {
    for caller in callers() {
        converse(caller, &["--output", "1MiB"]);
    }
}
