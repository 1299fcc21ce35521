//! Which daemon this is: what each daemon on a host must have of its own
//! (its cgroup subtree, its state directory, its slice of uids) is named
//! after its control socket.

use std::path::Path;

/// The system daemon's socket: its things keep their plain names.
pub const SYSTEM_SOCKET: &str = "/run/streamlet/streamletd.sock";

/// The name of the daemon on `socket`: `streamlet` for the system daemon,
/// `streamlet-<hash of the socket path>` for any other, so daemons on
/// different sockets never clean up or overwrite each other's, and a restart
/// on the same socket finds its predecessor's.
pub fn name(socket: &Path) -> String {
    if socket == Path::new(SYSTEM_SOCKET) {
        return "streamlet".to_owned();
    }
    format!("streamlet-{:08x}", hash(socket) as u32)
}

/// FNV-1a of the socket path (stable across builds, unlike the std hasher);
/// 0 for the system socket.
pub fn hash(socket: &Path) -> u64 {
    if socket == Path::new(SYSTEM_SOCKET) {
        return 0;
    }
    socket
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_distinct_per_socket() {
        assert_eq!(name(Path::new(SYSTEM_SOCKET)), "streamlet");
        assert_eq!(hash(Path::new(SYSTEM_SOCKET)), 0);
        let a = name(Path::new("/tmp/a.sock"));
        assert_eq!(a, name(Path::new("/tmp/a.sock")));
        assert_ne!(a, name(Path::new("/tmp/b.sock")));
        assert!(a.starts_with("streamlet-") && a.len() == "streamlet-".len() + 8, "{a}");
    }
}
