//! The jail's PID 1, child side. It exists so the program is not PID 1: the kernel
//! ignores signals PID 1 sends itself without a handler, so `abort()` in a PID-1
//! program would surface as a SIGSEGV instead of SIGABRT. Init reaps every orphan and
//! leaves when the program ends; its exit tears down the PID namespace, killing
//! whatever the program left behind.

/// Reaps children until `program` ends, then exits with its status. No allocation.
pub fn reap_until(program: libc::pid_t) -> ! {
    loop {
        let mut status = 0;
        // SAFETY: wait4 on our own children with a stack status word.
        let r = unsafe { libc::wait4(-1, &mut status, libc::__WALL, std::ptr::null_mut()) };
        if r == program {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
            // SAFETY: leaving without running any destructor or atexit handler of the
            // parent's copy of the address space.
            unsafe { libc::_exit(code) };
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // SAFETY: as above.
            unsafe { libc::_exit(125) };
        }
    }
}
