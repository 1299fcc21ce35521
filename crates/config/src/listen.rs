//! `[pools.NAME] listen`: where the daemon accepts a pool's clients itself,
//! over TCP, with no gateway in between.

use std::fmt;
use std::net::SocketAddr;

/// The most addresses one pool listens on.
pub const MAX_LISTEN: usize = 16;

/// The longest name of a socket systemd passes (`FileDescriptorName=`).
pub const MAX_FD_NAME: usize = 255;

/// One place a pool accepts connections.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Listen {
    /// A TCP address the daemon binds itself: `"0.0.0.0:7000"`, `"[::1]:7000"`.
    Tcp(SocketAddr),
    /// A listening TCP socket systemd passed, by its `FileDescriptorName=`:
    /// `"fd:NAME"`.
    Systemd(String),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) => write!(f, "{addr}"),
            Listen::Systemd(name) => write!(f, "fd:{name}"),
        }
    }
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("fd:") {
            // As systemd takes them: printable ASCII, no ':' (the separator
            // of $LISTEN_FDNAMES), at most 255.
            let fits = !name.is_empty()
                && name.len() <= MAX_FD_NAME
                && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            return if fits {
                Ok(Listen::Systemd(name.to_owned()))
            } else {
                Err(format!(
                    "{text:?} names no socket systemd can pass: after fd: comes the unit's FileDescriptorName=, 1 to {MAX_FD_NAME} printable characters without ':'"
                ))
            };
        }
        text.parse::<SocketAddr>().map(Listen::Tcp).map_err(|_| {
            format!(
                "{text:?} is neither an IP address and port (like \"0.0.0.0:7000\" or \"[::]:7000\"; no host names) nor fd:NAME (a socket systemd passes, FileDescriptorName=NAME)"
            )
        })
    }
}

/// A pool's `listen` list, checked: each entry valid, none twice, at most
/// [`MAX_LISTEN`].
pub(super) fn listen(raw: &[String]) -> Result<Vec<Listen>, (&'static str, String)> {
    if raw.len() > MAX_LISTEN {
        return Err(("listen", format!("has {} entries; a pool listens on at most {MAX_LISTEN}", raw.len())));
    }
    let mut out: Vec<Listen> = Vec::with_capacity(raw.len());
    for text in raw {
        let entry: Listen = text.parse().map_err(|e| ("listen", e))?;
        if out.contains(&entry) {
            return Err(("listen", format!("names {entry} twice")));
        }
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_passed_sockets_are_told_apart() {
        assert_eq!("127.0.0.1:7000".parse(), Ok(Listen::Tcp("127.0.0.1:7000".parse().unwrap())));
        assert_eq!("[::]:7000".parse(), Ok(Listen::Tcp("[::]:7000".parse().unwrap())));
        assert_eq!("fd:echo-tcp".parse(), Ok(Listen::Systemd("echo-tcp".into())));
        assert_eq!(Listen::Systemd("x".into()).to_string(), "fd:x");
        for bad in ["localhost:7000", "7000", "0.0.0.0", "fd:", "fd:a:b", "fd:a b", &format!("fd:{}", "n".repeat(256))]
        {
            let e = bad.parse::<Listen>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "the error quotes {bad:?}: {e}");
        }
    }

    #[test]
    fn a_list_names_each_place_once_and_few_of_them() {
        assert_eq!(listen(&["fd:a".into(), "127.0.0.1:1".into()]).unwrap().len(), 2);
        assert!(listen(&["127.0.0.1:1".into(), "127.0.0.1:1".into()]).unwrap_err().1.contains("twice"));
        let many: Vec<String> = (0..=MAX_LISTEN).map(|p| format!("127.0.0.1:{}", 1000 + p)).collect();
        assert!(listen(&many).unwrap_err().1.contains("at most"));
    }
}
