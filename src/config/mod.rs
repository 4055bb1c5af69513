//! Configuration: a profile (TOML) and the caller's overrides, validated and fully
//! resolved into a [`Policy`](policy::Policy). Everything a person can get wrong is
//! caught here, with the profile's file, line and column, before anything is planned.
//!
//! Owns: profile files and their layering, units, the limits table, argument
//! templates, rootfs templates, syscall groups, the Policy. May use: `seccomp` for
//! syscall and errno names and the always-denied core. Touches nothing on the host but
//! reading profile files.

pub mod args;
#[cfg(test)]
mod fuzz;
pub mod layers;
pub mod limits;
pub mod policy;
pub mod profile;
pub mod syscalls;
pub mod templates;
pub mod units;
