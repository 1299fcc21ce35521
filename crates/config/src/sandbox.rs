//! The `[sandbox]` table and each pool's sandbox keys: `limits`, `network`,
//! `user`, `group`, `readonly_root`.

use serde::Deserialize;

use super::units;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSandbox {
    required: Option<bool>,
    cgroup_root: Option<String>,
    uids: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    cpu: Option<CpuValue>,
    memory: Option<String>,
    pids: Option<u64>,
    nofile: Option<u64>,
    core: Option<String>,
    fsize: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected a number of cores, like 0.5 or \"0.5\"")]
enum CpuValue {
    Text(String),
    Number(f64),
}

/// The daemon-wide sandbox settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxConfig {
    /// Refuse to start, rather than warn, when a part of the sandbox cannot
    /// be had (not root, no writable cgroup tree, ...).
    pub required: bool,
    /// v2: the delegated cgroup directory (absolute); v1: the directory name
    /// under the daemon's own cgroup in each hierarchy. `None`: found from
    /// `/proc/self/cgroup` (v2) or derived from the socket path (v1).
    pub cgroup_root: Option<String>,
    /// The uids (and gids) streamlets get one each of, when the daemon is
    /// root and the pool names no user.
    pub uids: (u32, u32),
    /// Whether `uids` was written: a daemon takes exactly that range (and
    /// refuses to start if another daemon holds any of it); otherwise a
    /// slice of [`AUTO_UIDS_SLICE`] uids of it that no other daemon holds.
    pub uids_given: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self { required: false, cgroup_root: None, uids: DEFAULT_UIDS, uids_given: false }
    }
}

/// The range systemd leaves for dynamic users.
pub const DEFAULT_UIDS: (u32, u32) = (61184, 65519);

/// Without `[sandbox] uids`, a daemon takes a slice this large of
/// [`DEFAULT_UIDS`]: eight daemons on one host get disjoint slices.
pub const AUTO_UIDS_SLICE: u32 = 512;

/// What one streamlet of a pool may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub cpu_cores: Option<f64>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub nofile: u64,
    pub core: u64,
    pub fsize: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self { cpu_cores: None, memory: None, pids: None, nofile: 1024, core: 0, fsize: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// A new, empty network namespace: only the sockets handed over.
    #[default]
    None,
    /// The host's network.
    Host,
}

/// Whom a pool's streamlets run as (when the daemon is root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// A uid and gid of its own for each streamlet, from `[sandbox] uids`.
    Dynamic,
    /// One user and group for every streamlet of the pool.
    User { uid: u32, gid: u32 },
}

pub(super) fn sandbox(raw: RawSandbox) -> Result<SandboxConfig, (&'static str, String)> {
    let uids_given = raw.uids.is_some();
    let uids = match raw.uids {
        None => DEFAULT_UIDS,
        Some(text) => uid_range(&text).map_err(|r| ("sandbox.uids", r))?,
    };
    if let Some(root) = &raw.cgroup_root {
        cgroup_root(root).map_err(|r| ("sandbox.cgroup_root", r))?;
    }
    Ok(SandboxConfig { required: raw.required.unwrap_or(false), cgroup_root: raw.cgroup_root, uids, uids_given })
}

/// An absolute directory (v2's delegated cgroup) without `.` or `..`
/// components, or a plain name (v1's directory under the daemon's cgroup):
/// anything else could name the daemon's own cgroup, whose processes the
/// start-up clean-up would kill.
fn cgroup_root(root: &str) -> Result<(), String> {
    let plain = |c: &str| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let ok = match root.strip_prefix('/') {
        Some(rest) => {
            !rest.is_empty()
                && rest.split('/').all(|c| plain(c) || c.contains('.') && c != "." && c != ".." && !c.contains('\0'))
        }
        None => plain(root),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{root:?}: write an absolute cgroup directory (cgroup v2) or a plain name of letters, digits, '-' and '_' (cgroup v1)"
        ))
    }
}

fn uid_range(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{text:?} is not a uid range: write \"FIRST-LAST\", like \"61184-65519\"");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b): (u32, u32) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a == 0 || a > b || b >= 1 << 31 {
        return Err(format!("{text:?}: the range must start above 0, end at or after its start and below 2^31"));
    }
    Ok((a, b))
}

/// Resolves `limits`, keyed errors as `(key under the pool, reason)`.
pub(super) fn limits(raw: Option<RawLimits>) -> Result<Limits, (&'static str, String)> {
    let raw = raw.unwrap_or_default();
    let defaults = Limits::default();
    let cpu_cores = match raw.cpu {
        None => None,
        Some(CpuValue::Text(t)) => Some(units::cores(&t).map_err(|r| ("limits.cpu", r))?),
        Some(CpuValue::Number(n)) => Some(units::cores(&n.to_string()).map_err(|r| ("limits.cpu", r))?),
    };
    let memory = raw.memory.map(|m| units::bytes(&m)).transpose().map_err(|r| ("limits.memory", r))?;
    if memory.is_some_and(|m| m < 4 << 20) {
        return Err(("limits.memory", "must be at least 4MiB: a streamlet needs a few MiB to start".into()));
    }
    if raw.pids == Some(0) {
        return Err(("limits.pids", "must be at least 1".into()));
    }
    let nofile = raw.nofile.unwrap_or(defaults.nofile);
    if nofile < 16 {
        return Err(("limits.nofile", "must be at least 16: a streamlet needs some descriptors of its own".into()));
    }
    let core = raw.core.map(|c| units::bytes(&c)).transpose().map_err(|r| ("limits.core", r))?.unwrap_or(defaults.core);
    let fsize = raw.fsize.map(|f| units::bytes(&f)).transpose().map_err(|r| ("limits.fsize", r))?;
    Ok(Limits { cpu_cores, memory, pids: raw.pids, nofile, core, fsize })
}

/// Resolves `user` and `group` to ids.
pub(super) fn run_as(user: Option<&str>, group: Option<&str>) -> Result<RunAs, (&'static str, String)> {
    let Some(user) = user else {
        return match group {
            Some(_) => Err(("group", "a group needs a user: set user too".into())),
            None => Ok(RunAs::Dynamic),
        };
    };
    let entry = nix::unistd::User::from_name(user)
        .map_err(|e| ("user", format!("cannot look up user {user:?}: {e}")))?
        .ok_or_else(|| ("user", format!("there is no user {user:?} on this host")))?;
    let gid = match group {
        None => entry.gid.as_raw(),
        Some(name) => nix::unistd::Group::from_name(name)
            .map_err(|e| ("group", format!("cannot look up group {name:?}: {e}")))?
            .ok_or_else(|| ("group", format!("there is no group {name:?} on this host")))?
            .gid
            .as_raw(),
    };
    let uid = entry.uid.as_raw();
    if uid == 0 || gid == 0 {
        return Err(("user", "a streamlet never runs as root or with group root".into()));
    }
    Ok(RunAs::User { uid, gid })
}

/// Why a streamlet running as `uid` and `gid` could connect to the control
/// socket (mode 0660) of `owner` and `group`, if it could: it would then be
/// a client of the daemon, with the role `[access]` gives whoever connects.
/// `member` tells whether the user is listed in `group`.
pub fn socket_reach(uid: u32, gid: u32, member: bool, owner: u32, group: Option<u32>) -> Option<String> {
    if uid == owner {
        return Some(format!("uid {uid} owns the control socket"));
    }
    let group = group?;
    if gid == group {
        return Some(format!("gid {gid} is the control socket's group"));
    }
    member.then(|| format!("uid {uid} is a member of the control socket's group (gid {group})"))
}

/// [`socket_reach`] for a pool's `user` and `group`, looking up whether the
/// user is a member of `group`; keyed errors as `(key under the pool, reason)`.
pub fn check_socket_reach(run_as: RunAs, owner: u32, group: Option<u32>) -> Result<(), (&'static str, String)> {
    let RunAs::User { uid, gid } = run_as else { return Ok(()) };
    let member = group.is_some_and(|group| {
        let name = nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name);
        let entry = nix::unistd::Group::from_gid(group.into()).ok().flatten();
        let primary = nix::unistd::User::from_uid(uid.into()).ok().flatten().is_some_and(|u| u.gid.as_raw() == group);
        primary || entry.zip(name).is_some_and(|(entry, name)| entry.mem.contains(&name))
    });
    match socket_reach(uid, gid, member, owner, group) {
        None => Ok(()),
        Some(why) => Err((
            if gid == group.unwrap_or(u32::MAX) { "group" } else { "user" },
            format!(
                "{why}: its streamlets could connect to the daemon and act as a client (close other tenants' streams); run them as a user and group that cannot reach the socket"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamlet_that_could_reach_the_socket_is_named() {
        assert_eq!(socket_reach(100, 100, false, 0, Some(50)), None);
        assert_eq!(socket_reach(100, 100, false, 0, None), None);
        assert!(socket_reach(0, 100, false, 0, None).unwrap().contains("owns"));
        assert!(socket_reach(100, 50, false, 0, Some(50)).unwrap().contains("gid 50 is the control socket's group"));
        assert!(socket_reach(100, 100, true, 0, Some(50)).unwrap().contains("member"));
        assert_eq!(socket_reach(100, 100, true, 0, None), None, "no group: membership of nothing");
    }

    #[test]
    fn a_pool_user_is_checked_by_its_ids_and_memberships() {
        // nobody's primary group is nogroup (65534) on this kind of host.
        assert!(check_socket_reach(RunAs::User { uid: 65534, gid: 1 }, 0, Some(65534)).is_err());
        let (key, why) = check_socket_reach(RunAs::User { uid: 65534, gid: 65534 }, 0, Some(65534)).unwrap_err();
        assert_eq!(key, "group");
        assert!(why.contains("socket's group"), "{why}");
        assert!(check_socket_reach(RunAs::User { uid: 65534, gid: 1 }, 0, Some(3)).is_ok());
        assert!(check_socket_reach(RunAs::Dynamic, 0, Some(65534)).is_ok());
    }
}
