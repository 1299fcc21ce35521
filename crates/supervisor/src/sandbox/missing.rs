//! The parts of the sandbox a host can withhold, each with what it costs
//! and how to get it.

use std::fmt;

/// A part of the sandbox this host does not give the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// Not root: no namespaces, no uid of its own per streamlet, no
    /// bounding set.
    Root,
    /// The seccomp programs could not be built (why).
    Seccomp(String),
    /// No cgroup tree the daemon may write (why): no limits, no accounting.
    Cgroups(String),
}

impl Missing {
    /// How to get this part.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::Root => "run streamletd as root (streamletd.service does)",
            Self::Seccomp(_) => {
                "run on x86_64 or aarch64 (the architectures the policy covers), under a kernel built with CONFIG_SECCOMP_FILTER"
            }
            Self::Cgroups(_) => {
                "give the daemon a cgroup tree it may write: start it from streamletd.service (Delegate=yes gives it its own), or name a directory it may write with [sandbox] cgroup_root (cgroup v1 needs root)"
            }
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => f.write_str(
                "not running as root: streamlets keep the daemon's user, network and mounts (no namespaces, no run-as user), so a hostile streamlet can signal the daemon and reach everything its user can",
            )?,
            Self::Seccomp(why) => write!(f, "no seccomp filter: {why}")?,
            Self::Cgroups(why) => write!(f, "no cgroup limits or accounting: {why}")?,
        }
        write!(f, "; to fix: {}", self.fix())
    }
}

/// The refusal of a daemon whose sandbox is required: each part missing on
/// a line of its own with its fix, then the way to start without it.
pub(super) fn refusal(missing: &[Missing]) -> String {
    let mut text = "the sandbox is required ([sandbox] required = true) but incomplete:".to_owned();
    for part in missing {
        text.push_str("\n  - ");
        text.push_str(&part.to_string());
    }
    text.push_str(
        "\n  or, to run with what this host gives (and a warning at every start), set [sandbox] required = false",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_each_missing_part_and_its_fix() {
        let text = refusal(&[
            Missing::Root,
            Missing::Cgroups("cgroup directory /sys/fs/cgroup/x is not writable (Permission denied)".into()),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].contains("not running as root") && lines[1].contains("to fix: run streamletd as root"));
        assert!(lines[2].contains("/sys/fs/cgroup/x is not writable") && lines[2].contains("[sandbox] cgroup_root"));
        assert!(lines[2].contains("Delegate=yes"), "{text}");
        assert!(lines[3].contains("required = false"), "{text}");
        let seccomp = Missing::Seccomp("no seccomp policy for architecture riscv64".into()).to_string();
        assert!(seccomp.contains("riscv64") && seccomp.contains("x86_64 or aarch64"), "{seccomp}");
    }
}
