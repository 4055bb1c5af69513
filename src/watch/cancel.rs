//! Ending runs from outside: a [`Cancel`] token handed to runs through
//! [`RunOptions`](super::run::RunOptions). Cancelling kills every jail registered with
//! the token (and any started with it later); each such run then ends as `cancelled`,
//! with its report, its cgroups removed and nothing left behind. `moat run` cancels
//! its run with the signal (SIGTERM, SIGINT, SIGHUP) moat itself got.

use crate::jail::spawn::Jail;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

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
        let value = if signal > 0 { signal } else { -1 };
        // The first reason given is the one reported.
        let _ = self
            .inner
            .signal
            .compare_exchange(0, value, Ordering::SeqCst, Ordering::SeqCst);
        let jails: Vec<_> = self.lock().iter().map(|(_, k)| Arc::clone(k)).collect();
        for kill in jails {
            kill();
        }
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
        self.add(jail.killer())
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
        Registered { cancel: self, id }
    }
}

/// A jail's registration with a [`Cancel`]; dropping it unregisters the jail.
pub(crate) struct Registered<'a> {
    cancel: &'a Cancel,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
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
