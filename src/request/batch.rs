//! A stream of requests (JSON Lines in, one response line out per request, in the
//! order asked), run `parallel` at a time, sharing one file cache.
//!
//! "Compile once, run on 50 tests" is one stream: a request that puts in a file cached
//! under an id an earlier request of the stream makes waits until that request is
//! done, whatever `parallel` is. Requests are taken in order, so the one waited for is
//! always running or done: nothing waits forever.

use super::cache::FileCache;
use super::exec::{ExecOptions, Shared};
use super::{wire, CacheAs, FileSource, Input, Request, RequestError, Response};
use crate::plan::ldso::cache::LdCache;
use crate::watch::cancel::Cancel;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// After a cancel, how long lines already read are still taken (to be answered as
/// cancelled).
const GRACE: Duration = Duration::from_millis(50);

/// How a batch runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// How many requests run at once (at least 1).
    pub parallel: usize,
    /// The longest request line taken; a longer one gets an error response.
    pub max_line: usize,
    /// The cgroup and cancel token of every run.
    pub exec: ExecOptions,
}

impl Default for BatchOptions {
    fn default() -> BatchOptions {
        BatchOptions {
            parallel: 1,
            max_line: 256 << 20,
            exec: ExecOptions::default(),
        }
    }
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Requests answered.
    pub requests: u64,
    /// Of them, bad requests (nothing ran).
    pub bad: u64,
    /// Whether the batch stopped early because its cancel token fired.
    pub cancelled: bool,
}

enum Line {
    Text(String),
    TooLong(usize),
    Failed(io::Error),
}

/// Reads one line of at most `max` bytes; None at the end of input.
fn read_line(input: &mut dyn BufRead, max: usize) -> Option<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Some(Line::Failed(e)),
        };
        if buf.is_empty() {
            if line.is_empty() && !too_long {
                return None;
            }
            break;
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (&buf[..at], at + 1),
            None => (buf, buf.len()),
        };
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let ended = done > chunk.len();
        input.consume(done);
        if ended {
            break;
        }
    }
    if too_long {
        return Some(Line::TooLong(max));
    }
    Some(match String::from_utf8(line) {
        Ok(s) => Line::Text(s),
        Err(_) => Line::Failed(io::Error::new(
            io::ErrorKind::InvalidData,
            "the line is not UTF-8",
        )),
    })
}

struct Job {
    index: usize,
    request: Result<Request, (Option<serde_json::Value>, RequestError)>,
    /// Earlier requests that cache a file this one puts in.
    after: Vec<usize>,
}

/// The order requests must keep through the cache: a request that puts in a file
/// cached under an id runs after the last earlier one that caches it (read after
/// write); one that caches under an id runs after every earlier one that cached it or
/// put it in since (write after write, write after read). Whatever `--parallel` is, a
/// request sees the cache as it would in order.
#[derive(Debug, Default)]
struct Order {
    last_maker: HashMap<String, usize>,
    readers: HashMap<String, Vec<usize>>,
}

impl Order {
    /// The earlier requests request `index` must wait for.
    fn after(&mut self, index: usize, needs: &[String], makes: &[String]) -> Vec<usize> {
        let mut after: Vec<usize> = Vec::new();
        for id in needs {
            after.extend(self.last_maker.get(id));
        }
        for id in makes {
            after.extend(self.last_maker.get(id));
            after.extend(self.readers.get(id).into_iter().flatten());
        }
        for id in needs {
            self.readers.entry(id.clone()).or_default().push(index);
        }
        for id in makes {
            self.last_maker.insert(id.clone(), index);
            self.readers.remove(id);
        }
        after.sort_unstable();
        after.dedup();
        after.retain(|&i| i != index);
        after
    }
}

/// The ids a request puts in from the cache, and those it caches under an id it names.
fn cache_ids(r: &Request) -> (Vec<String>, Vec<String>) {
    let mut needs = Vec::new();
    let mut makes = Vec::new();
    for c in &r.commands {
        if let Input::Cached(id) = &c.stdin {
            needs.push(id.clone());
        }
        for f in c.files_in.values() {
            if let FileSource::Cached { id, .. } = f {
                needs.push(id.clone());
            }
        }
        for f in &c.files_out {
            if let CacheAs::Id(id) = &f.cache {
                makes.push(id.clone());
            }
        }
    }
    (needs, makes)
}

/// Runs every request of `input`, writing one response line each to `output` in the
/// order of the requests. Returns at the end of the input, or when the cancel token
/// fires (the requests already read then end as `cancelled`; the thread reading the
/// input is left blocked on it until it ends). Err only when `output` fails.
pub fn batch(
    input: Box<dyn BufRead + Send>,
    output: &mut (dyn Write + Send),
    cache: &FileCache,
    opts: &BatchOptions,
) -> io::Result<BatchSummary> {
    let parallel = opts.parallel.max(1);
    let (line_tx, line_rx) = mpsc::sync_channel::<Line>(parallel);
    let max_line = opts.max_line;
    // The reader may block on its input past a cancel, so it is not joined.
    let _ = std::thread::Builder::new()
        .name("batch-input".into())
        .spawn(move || {
            let mut input = input;
            while let Some(line) = read_line(&mut *input, max_line) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
    let ld = LdCache::load().unwrap_or_default();
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(parallel);
    let job_rx = Mutex::new(job_rx);
    let done: (Mutex<BTreeSet<usize>>, Condvar) = (Mutex::new(BTreeSet::new()), Condvar::new());
    let (out_tx, out_rx) = mpsc::channel::<(usize, String, bool)>();
    let cancel = opts.exec.cancel.clone();
    let cancelled = || cancel.as_ref().and_then(Cancel::cancelled).is_some();
    // The runs' own token: the caller's cancel reaches it, and so does the loss of the
    // output (nobody would read the responses, so nothing more is run).
    let (stop, _link) = match &cancel {
        Some(c) => {
            let (stop, link) = c.child();
            (stop, Some(link))
        }
        None => (Cancel::new(), None),
    };
    let exec_opts = ExecOptions {
        cancel: Some(stop.clone()),
        ..opts.exec.clone()
    };
    let shared = Shared {
        cache,
        opts: &exec_opts,
        ld: &ld,
    };
    let gone = AtomicBool::new(false);

    std::thread::scope(|scope| {
        let (stop_w, gone_w) = (&stop, &gone);
        let writer = scope.spawn(move || -> io::Result<(u64, u64)> {
            let mut pending: BTreeMap<usize, (String, bool)> = BTreeMap::new();
            let mut next = 0;
            let (mut answered, mut bad) = (0, 0);
            let mut failed: Option<io::Error> = None;
            for (index, line, is_bad) in out_rx {
                pending.insert(index, (line, is_bad));
                while let Some((line, is_bad)) = pending.remove(&next) {
                    next += 1;
                    answered += 1;
                    bad += u64::from(is_bad);
                    if failed.is_none() {
                        let written = output
                            .write_all(line.as_bytes())
                            .and_then(|()| output.write_all(b"\n"))
                            .and_then(|()| output.flush());
                        failed = written.err();
                        if failed.is_some() {
                            gone_w.store(true, Ordering::SeqCst);
                            stop_w.cancel(0);
                        }
                    }
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok((answered, bad)),
            }
        });
        for _ in 0..parallel {
            let (job_rx, done, out_tx, shared) = (&job_rx, &done, out_tx.clone(), &shared);
            scope.spawn(move || loop {
                // Taken in order: whatever a job waits for was taken before it.
                let job = match job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                    Ok(job) => job,
                    Err(_) => break,
                };
                {
                    let mut finished = done.0.lock().unwrap_or_else(|e| e.into_inner());
                    while !job.after.iter().all(|i| finished.contains(i)) {
                        finished = done.1.wait(finished).unwrap_or_else(|e| e.into_inner());
                    }
                }
                let (response, is_bad) = match &job.request {
                    Ok(r) => {
                        let resp = shared.exec(r);
                        let bad = resp.error.is_some();
                        (resp, bad)
                    }
                    Err((id, e)) => (
                        Response {
                            id: id.clone(),
                            results: Vec::new(),
                            pipes: BTreeMap::new(),
                            error: Some(e.clone()),
                        },
                        true,
                    ),
                };
                done.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(job.index);
                done.1.notify_all();
                if out_tx
                    .send((job.index, response.to_json(), is_bad))
                    .is_err()
                {
                    break;
                }
            });
        }
        drop(out_tx);
        let mut order = Order::default();
        let mut index = 0;
        let mut stopped = false;
        let mut grace = false;
        loop {
            if !grace && cancelled() {
                // What was read before the signal still gets its (cancelled) response:
                // take what the reader has handed over, then stop.
                stopped = true;
                grace = true;
            }
            if gone.load(Ordering::SeqCst) {
                break;
            }
            let wait = if grace {
                GRACE
            } else {
                Duration::from_millis(100)
            };
            let line = match line_rx.recv_timeout(wait) {
                Ok(l) => l,
                Err(mpsc::RecvTimeoutError::Timeout) if grace => break,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let request = match line {
                Line::Text(t) if t.trim().is_empty() => continue,
                Line::Text(t) => wire::parse(&t).map_err(|e| (wire::id_of(&t), e)),
                Line::TooLong(max) => Err((
                    None,
                    RequestError::at("", format!("the request line is longer than {max} bytes")),
                )),
                Line::Failed(e) => Err((
                    None,
                    RequestError::at("", format!("cannot read the request: {e}")),
                )),
            };
            let after = match &request {
                Ok(r) => {
                    let (needs, makes) = cache_ids(r);
                    order.after(index, &needs, &makes)
                }
                Err(_) => Vec::new(),
            };
            if job_tx
                .send(Job {
                    index,
                    request,
                    after,
                })
                .is_err()
            {
                break;
            }
            index += 1;
        }
        drop(job_tx);
        let (requests, bad) = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the response writer failed")))?;
        Ok(BatchSummary {
            requests,
            bad,
            cancelled: stopped,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[u8], max: usize) -> Vec<String> {
        let mut input: &[u8] = text;
        let mut out = Vec::new();
        while let Some(l) = read_line(&mut input, max) {
            out.push(match l {
                Line::Text(t) => t,
                Line::TooLong(m) => format!("too long ({m})"),
                Line::Failed(e) => format!("failed: {e}"),
            });
        }
        out
    }

    #[test]
    fn the_cache_is_seen_as_in_order() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut o = Order::default();
        assert_eq!(o.after(0, &[], &ids(&["bin"])), Vec::<usize>::new());
        assert_eq!(o.after(1, &ids(&["bin"]), &[]), [0]);
        assert_eq!(o.after(2, &ids(&["bin"]), &[]), [0]);
        // Re-caching waits for the earlier maker and every reader since.
        assert_eq!(o.after(3, &[], &ids(&["bin"])), [0, 1, 2]);
        assert_eq!(o.after(4, &ids(&["bin", "other"]), &[]), [3]);
        assert_eq!(o.after(5, &ids(&["bin"]), &ids(&["bin"])), [3, 4]);
        assert_eq!(o.after(6, &ids(&["bin"]), &[]), [5]);
    }

    #[test]
    fn lines_are_bounded() {
        assert_eq!(lines(b"a\nbb\n\nccc", 10), ["a", "bb", "", "ccc"]);
        assert_eq!(lines(b"12345678901\nok\n", 10), ["too long (10)", "ok"]);
        assert_eq!(lines(b"\xff\n", 10), ["failed: the line is not UTF-8"]);
        assert!(lines(b"", 10).is_empty());
    }
}
