//! Reaping as the init of a pid namespace: orphans (what a command started
//! and left when it exited) become the streamlet's children, and their
//! zombies would count against the pool's `pids` limit until the streamlet
//! died. Their exit statuses are nobody's; those of the commands the
//! streamlet itself started are awaited by their handlers, and must not be
//! taken from them. So the reaper never waits for "any child": on each
//! SIGCHLD it lists its children from `/proc` (the namespace's own) and
//! reaps, by pid, each zombie no handler has [`claim`]ed.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Pids of children whose exit a handler waits for.
static CLAIMED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// A child a handler reaps itself, while the guard lives. Claim it right
/// after the spawn, before any `.await`: the reaper runs on the same
/// thread, so it cannot come in between.
#[derive(Debug)]
pub(crate) struct Claim(u32);

pub(crate) fn claim(pid: Option<u32>) -> Option<Claim> {
    let pid = pid?;
    CLAIMED.lock().unwrap_or_else(|p| p.into_inner()).insert(pid);
    Some(Claim(pid))
}

impl Drop for Claim {
    fn drop(&mut self) {
        CLAIMED.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
    }
}

pub(super) async fn reap() {
    let Ok(mut sigchld) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) else {
        eprintln!("streamlet-worker: cannot watch SIGCHLD; orphans stay zombies");
        return;
    };
    while sigchld.recv().await.is_some() {
        let entries: Vec<std::fs::DirEntry> =
            std::fs::read_dir("/proc").map(|d| d.flatten().collect()).unwrap_or_default();
        reap_unclaimed(&entries);
    }
}

fn reap_unclaimed(entries: &[std::fs::DirEntry]) {
    let me = std::process::id();
    for entry in entries {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if !orphan_zombie(&stat, me) || CLAIMED.lock().unwrap_or_else(|p| p.into_inner()).contains(&pid) {
            continue;
        }
        let mut status = 0;
        // SAFETY: waitpid of one child of ours by pid, never blocking.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    }
}

/// Whether a `/proc/PID/stat` line is a zombie child of `parent`.
pub(super) fn orphan_zombie(stat: &str, parent: u32) -> bool {
    // After the command's name in parentheses: the state, then the ppid.
    let mut fields = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace()).into_iter().flatten();
    let state = fields.next();
    let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
    state == Some("Z") && ppid == Some(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_child_is_told_from_the_stat_line() {
        assert!(orphan_zombie("7 (sleep) Z 1 7 7 0 -1 4194564", 1));
        assert!(!orphan_zombie("7 (sleep) S 1 7 7 0 -1 4194564", 1), "running");
        assert!(!orphan_zombie("7 (sleep) Z 5 7 7 0 -1 4194564", 1), "another's child");
        assert!(orphan_zombie("9 (a) Z (b) Z 1 9", 1), "a name with parentheses and spaces");
        assert!(!orphan_zombie("garbage", 1));
    }

    #[test]
    fn a_claim_lasts_as_long_as_its_guard() {
        let claim = claim(Some(u32::MAX - 1)).unwrap();
        assert!(CLAIMED.lock().unwrap().contains(&(u32::MAX - 1)));
        drop(claim);
        assert!(!CLAIMED.lock().unwrap().contains(&(u32::MAX - 1)));
        assert!(super::claim(None).is_none());
    }
}
