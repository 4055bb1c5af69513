//! Ending runs from outside: a [`Cancel`] token handed to runs through
//! [`RunOptions`](super::run::RunOptions). Cancelling kills every jail registered with
//! the token (and any started with it later); each such run then ends as `cancelled`,
//! with its report, its cgroups removed and nothing left behind. `moat run` cancels
//! its run with the signal (SIGTERM, SIGINT, SIGHUP) moat itself got.

use crate::jail::spawn::Jail;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

/// How many jails at once [`Cancel::cancel_from_signal_handler`] can reach.
const HANDLER_SLOTS: usize = 8;

/// A token that ends the runs it is given to. Cheap to clone; clones share the state.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// 0 until cancelled; then the signal given (or -1 for none).
    signal: AtomicI32,
    /// The jails of the runs in progress: (run number, the jail's killer).
    jails: Mutex<Vec<(u64, Killer)>>,
    next: std::sync::atomic::AtomicU64,
    /// The same jails as pidfds a signal handler may use without taking a lock: each
    /// slot holds a registration's own copy of its jail's pidfd, plus one (0: free).
    slots: [AtomicI32; HANDLER_SLOTS],
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("signal", &self.signal.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// Kills one jail.
type Killer = Arc<dyn Fn() + Send + Sync>;

impl Cancel {
    /// A token no one has cancelled yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Ends every run holding this token, now and from now on. `signal` is why (the
    /// signal moat got, which the report names and the exit status carries), or 0.
    pub fn cancel(&self, signal: i32) {
        self.set_reason(signal);
        let jails: Vec<_> = self.lock().iter().map(|(_, k)| Arc::clone(k)).collect();
        for kill in jails {
            kill();
        }
    }

    /// Marks the token cancelled with `signal` (0: none named). The first reason given
    /// is the one reported. Lock-free, so a signal handler may call it.
    fn set_reason(&self, signal: i32) {
        let value = if signal > 0 { signal } else { -1 };
        let _ = self
            .inner
            .signal
            .compare_exchange(0, value, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether the token was cancelled, and with which signal (0 for none).
    pub fn cancelled(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            s if s < 0 => Some(0),
            s => Some(s),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Killer)>> {
        self.inner.jails.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a running jail: a cancel from now on kills it, and one that came
    /// before kills it at once. The registration ends when the guard is dropped.
    pub(crate) fn register(&self, jail: &Jail) -> Registered<'_> {
        let mut reg = self.add(jail.killer());
        // The slot is filled before the token is looked at again, and a handler sets
        // the signal before it looks at the slots: one of the two sees the other.
        if let Some(fd) = jail.pidfd_copy() {
            let raw = fd.as_raw_fd();
            if let Some(i) = self.inner.slots.iter().position(|s| {
                s.compare_exchange(0, raw + 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            }) {
                reg.slot = Some((i, fd));
            }
        }
        if self.cancelled().is_some() {
            jail.kill();
        }
        reg
    }

    /// What a signal handler may call (it takes no lock and allocates nothing): ends
    /// every run registered with this token as [`cancel`](Self::cancel) does, with
    /// `signal` as the reason. Tokens made with `child` are not reached: cancel those
    /// from a thread. At most eight jails at once are reached this way, which is
    /// meant for a process running one jail at a time, as `moat run` does.
    pub fn cancel_from_signal_handler(&self, signal: i32) {
        self.set_reason(signal);
        for slot in &self.inner.slots {
            let v = slot.load(Ordering::SeqCst);
            if v > 0 {
                crate::jail::sys::pidfd_kill_raw(v - 1);
            }
        }
    }

    /// A token cancelled when this one is (with its signal), and on its own: what a
    /// batch gives its runs, so it can end them itself (when nobody reads its output)
    /// without cancelling its caller's token. The link ends when the guard is dropped.
    pub(crate) fn child(&self) -> (Cancel, Registered<'_>) {
        let child = Cancel::new();
        let (c, parent) = (child.clone(), Arc::clone(&self.inner));
        let link = self.add(Arc::new(move || {
            let signal = Cancel {
                inner: Arc::clone(&parent),
            }
            .cancelled()
            .unwrap_or(0);
            c.cancel(signal);
        }));
        (child, link)
    }

    fn add(&self, kill: Killer) -> Registered<'_> {
        let id = self.inner.next.fetch_add(1, Ordering::SeqCst);
        self.lock().push((id, Arc::clone(&kill)));
        if self.cancelled().is_some() {
            kill();
        }
        Registered {
            cancel: self,
            id,
            slot: None,
        }
    }
}

/// A jail's registration with a [`Cancel`]; dropping it unregisters the jail.
pub(crate) struct Registered<'a> {
    cancel: &'a Cancel,
    id: u64,
    /// The handler slot taken, with the pidfd copy it names (closed only once the slot
    /// is free again).
    slot: Option<(usize, OwnedFd)>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some((i, fd)) = self.slot.take() {
            self.cancel.inner.slots[i].store(0, Ordering::SeqCst);
            drop(fd);
        }
        self.cancel.lock().retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_is_kept() {
        let c = Cancel::new();
        assert_eq!(c.cancelled(), None);
        c.cancel(libc::SIGTERM);
        c.cancel(libc::SIGINT);
        assert_eq!(c.cancelled(), Some(libc::SIGTERM));
        let d = Cancel::new();
        d.cancel(0);
        assert_eq!(d.cancelled(), Some(0));
        let e = d.clone();
        assert_eq!(e.cancelled(), Some(0));
    }

    #[test]
    fn a_handler_cancel_keeps_the_first_reason_and_reaches_later_runs() {
        let c = Cancel::new();
        c.cancel_from_signal_handler(libc::SIGINT);
        c.cancel_from_signal_handler(libc::SIGTERM);
        c.cancel(libc::SIGHUP);
        assert_eq!(c.cancelled(), Some(libc::SIGINT));
        assert!(c.inner.slots.iter().all(|s| s.load(Ordering::SeqCst) == 0));
    }

    #[test]
    fn a_child_follows_its_parent_but_not_the_other_way() {
        let parent = Cancel::new();
        let (child, link) = parent.child();
        child.cancel(0);
        assert_eq!((parent.cancelled(), child.cancelled()), (None, Some(0)));
        drop(link);
        let (child, _link) = parent.child();
        parent.cancel(libc::SIGHUP);
        assert_eq!(child.cancelled(), Some(libc::SIGHUP));
        let (late, _late_link) = parent.child();
        assert_eq!(
            late.cancelled(),
            Some(libc::SIGHUP),
            "a child of a cancelled token starts cancelled"
        );
    }
}
