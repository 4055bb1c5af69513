//! Identity: how the jail's user namespace maps its ids to the host's.
//!
//! Inside, the program is `uid`/`gid` (1000 by default), never 0. Outside, that id is
//! the caller's own when moat runs unprivileged (rootless is the normal case), and an
//! unprivileged id (65534, `nobody`) when the caller is root: a sandboxee must never be
//! real root towards the files it can reach.

use std::fs;
use std::io;

/// The outside id a root caller's sandboxee runs as.
pub const ROOT_CALLER_OUTSIDE_ID: u32 = 65534;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub inside_uid: u32,
    pub inside_gid: u32,
    pub outside_uid: u32,
    pub outside_gid: u32,
    /// Whether the caller is real root (it may then keep setgroups open so the jail can
    /// drop root's supplementary groups; an unprivileged caller must deny setgroups
    /// before it may write gid_map).
    pub privileged: bool,
}

impl IdMaps {
    pub fn new(caller_euid: u32, caller_egid: u32, inside_uid: u32, inside_gid: u32) -> IdMaps {
        let privileged = caller_euid == 0;
        let (outside_uid, outside_gid) = if privileged {
            (ROOT_CALLER_OUTSIDE_ID, ROOT_CALLER_OUTSIDE_ID)
        } else {
            (caller_euid, caller_egid)
        };
        IdMaps {
            inside_uid,
            inside_gid,
            outside_uid,
            outside_gid,
            privileged,
        }
    }

    pub fn for_current_caller(inside_uid: u32, inside_gid: u32) -> IdMaps {
        Self::new(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
            inside_uid,
            inside_gid,
        )
    }

    pub fn uid_map(&self) -> String {
        format!("{} {} 1\n", self.inside_uid, self.outside_uid)
    }

    pub fn gid_map(&self) -> String {
        format!("{} {} 1\n", self.inside_gid, self.outside_gid)
    }

    /// Whether the jail may call setgroups (only to drop the supplementary groups it
    /// inherited from a root caller).
    pub fn may_setgroups(&self) -> bool {
        self.privileged
    }

    /// Writes the maps of the freshly cloned `pid`, which waits until this is done.
    pub fn write(&self, pid: i32) -> io::Result<()> {
        let proc = format!("/proc/{pid}");
        let with_path = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("writing {proc}/{what}: {e}"))
        };
        fs::write(format!("{proc}/uid_map"), self.uid_map())
            .map_err(|e| with_path("uid_map", e))?;
        if !self.may_setgroups() {
            fs::write(format!("{proc}/setgroups"), "deny")
                .map_err(|e| with_path("setgroups", e))?;
        }
        fs::write(format!("{proc}/gid_map"), self.gid_map())
            .map_err(|e| with_path("gid_map", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_caller_maps_to_nobody_never_zero() {
        let m = IdMaps::new(0, 0, 1000, 1000);
        assert_eq!(m.uid_map(), "1000 65534 1\n");
        assert_eq!(m.gid_map(), "1000 65534 1\n");
        assert!(m.may_setgroups());
    }

    #[test]
    fn unprivileged_caller_maps_to_itself() {
        let m = IdMaps::new(1234, 100, 1000, 1000);
        assert_eq!(m.uid_map(), "1000 1234 1\n");
        assert_eq!(m.gid_map(), "1000 100 1\n");
        assert!(!m.may_setgroups());
    }
}
