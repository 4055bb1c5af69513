//! Output relay: when output is capped or collected, the program writes into pipes and
//! moat copies each stream to its real destination (a descriptor, or memory), counting
//! bytes. Up to the caps every byte arrives, in order, on the stream it was written
//! to; at a cap the relay stops copying and has the jail killed, then drains the pipes
//! until every writer is gone, so nothing below the cap is lost even when the program
//! dies mid-write.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Where a relayed stream's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Written to this descriptor.
    Fd(RawFd),
    /// Kept in memory, at most `cap` bytes: one more is over the stream's own cap.
    Memory { cap: u64 },
}

/// One relayed stream: the read end of the program's pipe and where its bytes go.
pub struct Stream {
    pub from: OwnedFd,
    pub to: Sink,
    /// 0 for stdout, 1 for stderr: where it is counted.
    pub slot: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// Bytes delivered per stream, in the order given: written to the destination.
    pub delivered: [u64; 2],
    /// Why a stream's destination stopped taking bytes (a closed pipe, a full disk),
    /// per stream; what came after was read from the program and dropped.
    pub failed: [Option<String>; 2],
    /// The program wrote more than a cap (the total, or a collected stream's own).
    pub exceeded: bool,
    /// What was collected in memory, per stream.
    pub collected: [Option<Vec<u8>>; 2],
}

/// Writes `buf` to `fd`: how much was written, and the error that stopped it.
fn write_all(fd: RawFd, buf: &[u8]) -> (usize, Option<std::io::Error>) {
    let mut done = 0;
    while done < buf.len() {
        let rest = &buf[done..];
        // SAFETY: write from a live slice of the given length.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return (done, Some(e));
        }
        if n == 0 {
            return (
                done,
                Some(std::io::Error::from(std::io::ErrorKind::WriteZero)),
            );
        }
        done += n as usize;
    }
    (done, None)
}

/// Copies the streams until all reach end of file. `cap` bounds the total of all
/// streams together, a memory sink's own cap its stream; `exceeded` is called once when
/// a write would pass either.
pub fn run(streams: &[Stream], cap: u64, exceeded: &dyn Fn()) -> Relayed {
    let mut out = Relayed::default();
    for s in streams {
        if matches!(s.to, Sink::Memory { .. }) {
            out.collected[s.slot] = Some(Vec::new());
        }
    }
    let mut total = 0u64;
    let mut open: Vec<bool> = vec![true; streams.len()];
    // A destination that failed (a closed pipe on moat's side) takes nothing more, but
    // the program's verdict must not depend on who reads moat's output: its bytes are
    // still read (and counted against the cap), only not delivered.
    let mut buf = vec![0u8; 64 * 1024];
    while open.iter().any(|o| *o) {
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .zip(&open)
            .map(|(s, o)| libc::pollfd {
                fd: if *o { s.from.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll on a live array of pollfd.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.fd < 0 || pfd.revents == 0 {
                continue;
            }
            // SAFETY: read into our buffer.
            let n = unsafe { libc::read(pfd.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                open[i] = false;
                continue;
            }
            if n == 0 {
                open[i] = false;
                continue;
            }
            let n = n as u64;
            let stream = &streams[i];
            let slot = stream.slot;
            let mut room = cap.saturating_sub(total);
            if let Sink::Memory { cap: own } = stream.to {
                let kept = out.collected[slot].as_ref().map_or(0, |v| v.len() as u64);
                room = room.min(own.saturating_sub(kept));
            }
            let take = n.min(room);
            let bytes = &buf[..take as usize];
            match stream.to {
                Sink::Memory { .. } => {
                    if let Some(v) = out.collected[slot].as_mut() {
                        v.extend_from_slice(bytes);
                    }
                    out.delivered[slot] += take;
                }
                Sink::Fd(fd) if take > 0 && out.failed[slot].is_none() => {
                    let (written, error) = write_all(fd, bytes);
                    out.delivered[slot] += written as u64;
                    out.failed[slot] = error.map(|e| e.to_string());
                }
                Sink::Fd(_) => {}
            }
            total += take;
            if n > take && !out.exceeded {
                out.exceeded = true;
                exceeded();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 into a stack array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn cuts_exactly_at_the_cap_and_drains() {
        let (r1, w1) = pipe();
        let (r2, w2) = pipe();
        let (sink_r, sink_w) = pipe();
        let (sink2_r, sink2_w) = pipe();
        let writer = std::thread::spawn(move || {
            let mut f1 = std::fs::File::from(w1);
            let mut f2 = std::fs::File::from(w2);
            for _ in 0..100 {
                f1.write_all(&[b'a'; 1000]).unwrap();
                f2.write_all(&[b'b'; 10]).unwrap();
            }
        });
        let collect = |r: OwnedFd| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                std::fs::File::from(r).read_to_end(&mut v).unwrap();
                v
            })
        };
        let (c1, c2) = (collect(sink_r), collect(sink2_r));
        let hits = std::sync::atomic::AtomicUsize::new(0);
        let streams = [
            Stream {
                from: r1,
                to: Sink::Fd(sink_w.as_raw_fd()),
                slot: 0,
            },
            Stream {
                from: r2,
                to: Sink::Fd(sink2_w.as_raw_fd()),
                slot: 1,
            },
        ];
        let got = run(&streams, 50_000, &|| {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        writer.join().unwrap();
        drop(sink_w);
        drop(sink2_w);
        let (o1, o2) = (c1.join().unwrap(), c2.join().unwrap());
        assert!(got.exceeded);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(o1.len() + o2.len(), 50_000);
        assert_eq!(got.delivered, [o1.len() as u64, o2.len() as u64]);
        assert!(o1.iter().all(|b| *b == b'a') && o2.iter().all(|b| *b == b'b'));
    }

    #[test]
    fn below_the_cap_everything_arrives() {
        let (r, w) = pipe();
        let (sink_r, sink_w) = pipe();
        let writer = std::thread::spawn(move || {
            std::fs::File::from(w).write_all(b"hello").unwrap();
        });
        let got = run(
            &[Stream {
                from: r,
                to: Sink::Fd(sink_w.as_raw_fd()),
                slot: 0,
            }],
            1 << 20,
            &|| panic!("not exceeded"),
        );
        writer.join().unwrap();
        drop(sink_w);
        let mut s = String::new();
        std::fs::File::from(sink_r).read_to_string(&mut s).unwrap();
        assert_eq!(
            (s.as_str(), got.exceeded, got.delivered[0]),
            ("hello", false, 5)
        );
    }

    #[test]
    fn memory_sinks_keep_exactly_their_cap() {
        let (r1, w1) = pipe();
        let (r2, w2) = pipe();
        let writer = std::thread::spawn(move || {
            let mut f1 = std::fs::File::from(w1);
            let mut f2 = std::fs::File::from(w2);
            let _ = f1.write_all(&[b'o'; 300_000]);
            let _ = f2.write_all(b"fine");
        });
        let hits = std::sync::atomic::AtomicUsize::new(0);
        let got = run(
            &[
                Stream {
                    from: r1,
                    to: Sink::Memory { cap: 65_536 },
                    slot: 0,
                },
                Stream {
                    from: r2,
                    to: Sink::Memory { cap: 100 },
                    slot: 1,
                },
            ],
            u64::MAX,
            &|| {
                hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            },
        );
        writer.join().unwrap();
        assert!(got.exceeded);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(got.collected[0].as_ref().unwrap().len(), 65_536);
        assert_eq!(got.collected[1].as_deref(), Some(&b"fine"[..]));
        assert_eq!(got.delivered, [65_536, 4]);
    }
}
