//! The jail: clone into new namespaces and carry out the Plan, nothing else.
//!
//! Owns: the clone, the child's stages (ids, mounts, hostname, loopback, init, the
//! program's privileges and filter, exec), the numbering of those stages, and the raw
//! system calls they make. After the clone the child allocates nothing and takes no
//! lock. May use: `plan`. Decides nothing: every value it uses was computed by the
//! planner.

pub mod child;
pub mod idmap;
pub mod init;
pub mod mnt;
pub mod net;
pub mod order;
pub mod pool;
pub mod privs;
pub mod spawn;
pub mod stage;
pub mod sys;
pub mod wire;
