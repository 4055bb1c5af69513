//! Hooks: what the monitor asks instead of carrying every feature itself. A hook sees
//! each call the filter traced after the program's exec and may let it go on; without
//! a hook (an ordinary run) every such call is a violation. `moat learn` is a hook.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A call the filter handed to the monitor, as the kernel reported it.
#[derive(Debug, Clone, Copy)]
pub struct TracedCall {
    /// The thread that made it, as moat sees it.
    pub pid: libc::pid_t,
    /// `AUDIT_ARCH_*` of the call.
    pub arch: u32,
    pub nr: u64,
    pub args: [u64; 6],
    /// What moat's own filter returns for this call (`TRACE_DENIED`, `TRACE_CORE`,
    /// `TRACE_FILE`, …), computed by the monitor from the call itself. The value the
    /// kernel reports is not used: it is the newest filter's, which the program can
    /// stack on top of moat's.
    pub data: u16,
}

impl TracedCall {
    /// Reads a NUL-terminated path (at most PATH_MAX bytes) from the tracee's memory
    /// at `addr`, as the call would have read it.
    pub fn read_path(&self, addr: u64) -> Option<PathBuf> {
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        let mut n = read_tracee(self.pid, addr, &mut buf);
        if n == 0 {
            // A read across the end of a mapping fails as a whole; retry up to the end
            // of the string's page.
            let in_page = 4096 - (addr as usize % 4096);
            n = read_tracee(self.pid, addr, &mut buf[..in_page]);
        }
        let end = buf[..n].iter().position(|b| *b == 0)?;
        Some(PathBuf::from(OsStr::from_bytes(&buf[..end])))
    }
}

/// process_vm_readv of `buf.len()` bytes at `addr` in `pid`; how many arrived.
fn read_tracee(pid: libc::pid_t, addr: u64, buf: &mut [u8]) -> usize {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the kernel writes at most `buf.len()` bytes into our buffer; the remote
    // address is only read in the tracee, and a bad one fails with EFAULT.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    usize::try_from(n).unwrap_or(0)
}

/// What the monitor asks about traced calls.
pub trait Hook {
    /// A call the filter traced after the program's exec. Return `true` to let it go
    /// on; `false` makes it the run's violation.
    fn traced(&mut self, call: &TracedCall) -> bool;
}
