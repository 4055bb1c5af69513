//! Pipes between commands: a kernel pipe whose ends go to two jails, or two pipes with
//! moat between them, copying and keeping up to a cap of what passes.
//!
//! Ends must end: moat keeps no copy of a jail's end once the jail has it (the run
//! closes its copies right after the spawn), so a reader sees end of file when its
//! writer is gone and a writer gets EPIPE when its reader is. The proxy passes both on:
//! end of file from the writer closes its side toward the reader; a reader gone (its
//! pipe reports an error on poll) closes its side toward the writer, even when nothing
//! is being written at the time.

use super::check::Schedule;
use super::{Pipe, Recorded};
use crate::jail::sys;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// moat between two pipes: what the writer writes is read from `from` and written to
/// `to`, the first `cap` bytes kept.
pub struct Proxy {
    from: OwnedFd,
    to: OwnedFd,
    cap: u64,
}

/// The pipes of one group of commands.
#[derive(Default)]
pub struct Plumbing {
    /// The end each (command, fd) gets.
    pub ends: BTreeMap<(usize, i32), OwnedFd>,
    /// The proxies of recorded pipes, by pipe index.
    pub proxies: Vec<(usize, Proxy)>,
}

/// Makes every pipe whose writer is one of `members`.
pub fn make(pipes: &[Pipe], schedule: &Schedule, members: &[usize]) -> io::Result<Plumbing> {
    let mut out = Plumbing::default();
    for (k, (w, r)) in schedule.ends.iter().enumerate() {
        if !members.contains(&w.command) {
            continue;
        }
        let (read, write) = sys::pipe()?;
        match pipes[k].record {
            None => {
                out.ends.insert((w.command, w.fd), write);
                out.ends.insert((r.command, r.fd), read);
            }
            Some(cap) => {
                let (read2, write2) = sys::pipe()?;
                out.ends.insert((w.command, w.fd), write);
                out.ends.insert((r.command, r.fd), read2);
                out.proxies.push((
                    k,
                    Proxy {
                        from: read,
                        to: write2,
                        cap,
                    },
                ));
            }
        }
    }
    Ok(out)
}

fn poll2(fds: &mut [libc::pollfd; 2]) -> io::Result<()> {
    loop {
        // SAFETY: poll on a live array of two pollfd.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

impl Proxy {
    /// Copies until the writer is done or the reader gone; what passed. Both ends are
    /// closed on return, which passes the end on to the other side.
    pub fn run(self) -> Recorded {
        let mut rec = Recorded::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.from.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                // No events asked: poll still reports POLLERR once the reader is gone.
                libc::pollfd {
                    fd: self.to.as_raw_fd(),
                    events: 0,
                    revents: 0,
                },
            ];
            if poll2(&mut fds).is_err() || fds[1].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                break;
            }
            if fds[0].revents == 0 {
                continue;
            }
            // SAFETY: read into our buffer of the given length.
            let n =
                unsafe { libc::read(self.from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if n <= 0 {
                break;
            }
            let chunk = &buf[..n as usize];
            let room = rec.bytes.len() as u64;
            let keep = (self.cap.saturating_sub(room) as usize).min(chunk.len());
            rec.bytes.extend_from_slice(&chunk[..keep]);
            rec.total += n as u64;
            if sys::write_all(self.to.as_raw_fd(), chunk).is_err() {
                break;
            }
        }
        rec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    /// A proxy between two fresh pipes: (the writer's end, the reader's end, the proxy).
    fn proxy(cap: u64) -> (std::fs::File, std::fs::File, Proxy) {
        let (from, w) = sys::pipe().unwrap();
        let (r, to) = sys::pipe().unwrap();
        (w.into(), r.into(), Proxy { from, to, cap })
    }

    #[test]
    fn everything_passes_the_first_bytes_are_kept_and_the_end_passes_on() {
        let (mut w, mut r, p) = proxy(1000);
        let t = std::thread::spawn(move || p.run());
        let writer = std::thread::spawn(move || {
            for i in 0..100u8 {
                w.write_all(&[i; 1000]).unwrap();
            }
        });
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        writer.join().unwrap();
        let rec = t.join().unwrap();
        assert_eq!(all.len(), 100_000);
        assert_eq!((rec.bytes, rec.total), (vec![0; 1000], 100_000));
    }

    #[test]
    fn a_reader_gone_is_an_epipe_for_the_writer_even_when_nothing_flows() {
        let (mut w, r, p) = proxy(10);
        let t = std::thread::spawn(move || p.run());
        w.write_all(b"hi").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(r);
        let started = Instant::now();
        let rec = t.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(rec.bytes, b"hi");
        let err = w.write_all(&[0; 100_000]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }
}
