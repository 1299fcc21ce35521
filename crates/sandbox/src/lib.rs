//! How a streamlet process is made.
//!
//! [`spawn`] clones (as the init of a pid namespace of its own, when the plan
//! asks) and execs the streamlet binary with its control channel as
//! descriptor 3 and nothing else inherited: every other descriptor is closed at
//! exec, the environment is cleared, the child is in a session of its own (no
//! controlling terminal; a terminal's Ctrl-C reaches only the daemon, which
//! stops its streamlets in order), its stderr is a pipe the daemon reads, and
//! `PR_SET_PDEATHSIG` kills it if the daemon dies.
//!
//! The confinement (cgroups, namespaces, mounts, dropped capabilities, the
//! seccomp filter: a [`plan::ChildPlan`]) is applied in the same step between fork
//! and exec.

pub mod cgroup;
mod child;
pub mod mounts;
pub mod plan;
pub mod seccomp;
mod spawn;
pub mod uids;

pub use child::Child;
pub use spawn::{spawn, SpawnError, SpawnSpec, CONTROL_FD};
