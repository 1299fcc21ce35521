//! `[access]`: who may do what on the control socket, by the peer's
//! credentials (`SO_PEERCRED`): its uid, and its primary and supplementary
//! gids.
//!
//! ```toml
//! [access]
//! socket_group = "streamlet"      # the control socket's group (mode 0660)
//! default = "gateway"             # anyone else who can connect
//! viewer = { uids = ["monitoring"], gids = [] }
//! gateway = { gids = ["streamlet"] }
//! admin = { uids = ["alice"], gids = ["wheel"] }
//! ```
//!
//! A peer gets the highest role that names its uid or one of its gids, else
//! `default`. Root and the daemon's own uid are always admin.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

/// What a client may do; each role may do what the one below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Nothing: every request is refused.
    None,
    /// Read: `status`, `workers`, `worker`, `streams`, `quota`, `subscribe`.
    Viewer,
    /// Also `open`, `close`, `lease`, `refresh`, `release`.
    Gateway,
    /// Also `drain`, `kill`, `restart` (and every operator request to come).
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Viewer => "viewer",
            Self::Gateway => "gateway",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[access]`, resolved to numeric ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The gid the daemon gives the control socket it binds.
    pub socket_group: Option<u32>,
    pub default: Role,
    /// Uids and gids per role, highest role first.
    grants: Vec<(Role, BTreeSet<u32>, BTreeSet<u32>)>,
}

impl Default for Access {
    fn default() -> Self {
        Self { socket_group: None, default: Role::Gateway, grants: Vec::new() }
    }
}

impl Access {
    /// The role of a peer with `uid` and `gids`; `daemon_uid` is the
    /// daemon's own (its operator).
    pub fn role_of(&self, uid: u32, gids: &[u32], daemon_uid: u32) -> Role {
        if uid == 0 || uid == daemon_uid {
            return Role::Admin;
        }
        self.grants
            .iter()
            .find(|(_, uids, groups)| uids.contains(&uid) || gids.iter().any(|g| groups.contains(g)))
            .map_or(self.default, |(role, _, _)| *role)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    socket_group: Option<IdOrName>,
    default: Option<Role>,
    viewer: Option<RawGrant>,
    gateway: Option<RawGrant>,
    admin: Option<RawGrant>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    #[serde(default)]
    uids: Vec<IdOrName>,
    #[serde(default)]
    gids: Vec<IdOrName>,
}

/// A user or group, by number or by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "expected a user or group: a name in quotes or a number")]
enum IdOrName {
    Id(u32),
    Name(String),
}

fn uid(id: &IdOrName) -> Result<u32, String> {
    match id {
        IdOrName::Id(n) => Ok(*n),
        IdOrName::Name(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Ok(user.uid.as_raw()),
            Ok(None) => Err(format!("no user {name:?} on this host (give a name from /etc/passwd or a number)")),
            Err(e) => Err(format!("cannot look up user {name:?}: {e}")),
        },
    }
}

fn gid(id: &IdOrName) -> Result<u32, String> {
    match id {
        IdOrName::Id(n) => Ok(*n),
        IdOrName::Name(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(group)) => Ok(group.gid.as_raw()),
            Ok(None) => Err(format!("no group {name:?} on this host (give a name from /etc/group or a number)")),
            Err(e) => Err(format!("cannot look up group {name:?}: {e}")),
        },
    }
}

pub(super) fn access(raw: RawAccess) -> Result<Access, (String, String)> {
    let socket_group = raw.socket_group.as_ref().map(gid).transpose().map_err(|r| ("access.socket_group".into(), r))?;
    let mut grants = Vec::new();
    for (role, grant) in [(Role::Admin, raw.admin), (Role::Gateway, raw.gateway), (Role::Viewer, raw.viewer)] {
        let Some(grant) = grant else { continue };
        let mut uids = BTreeSet::new();
        for (i, id) in grant.uids.iter().enumerate() {
            uids.insert(uid(id).map_err(|r| (format!("access.{role}.uids[{i}]"), r))?);
        }
        let mut gids = BTreeSet::new();
        for (i, id) in grant.gids.iter().enumerate() {
            gids.insert(gid(id).map_err(|r| (format!("access.{role}.gids[{i}]"), r))?);
        }
        grants.push((role, uids, gids));
    }
    Ok(Access { socket_group, default: raw.default.unwrap_or(Role::Gateway), grants })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Access, (String, String)> {
        access(toml::from_str(text).unwrap())
    }

    #[test]
    fn the_highest_role_that_names_the_peer_wins() {
        let a = parse("default = \"none\"\nviewer = { uids = [1000, 1001] }\nadmin = { gids = [10] }\ngateway = { uids = [1001] }").unwrap();
        assert_eq!(a.role_of(1000, &[1000], 500), Role::Viewer);
        assert_eq!(a.role_of(1001, &[1001], 500), Role::Gateway, "gateway outranks viewer");
        assert_eq!(a.role_of(1000, &[1000, 10], 500), Role::Admin, "by a supplementary group");
        assert_eq!(a.role_of(2000, &[2000], 500), Role::None, "the default");
        assert_eq!(a.role_of(0, &[0], 500), Role::Admin, "root");
        assert_eq!(a.role_of(500, &[500], 500), Role::Admin, "the daemon's own user");
    }

    #[test]
    fn without_the_table_whoever_can_connect_is_a_gateway() {
        assert_eq!(Access::default().role_of(1000, &[1000], 500), Role::Gateway);
        assert!(Role::Admin > Role::Gateway && Role::Gateway > Role::Viewer && Role::Viewer > Role::None);
    }

    #[test]
    fn names_resolve_and_unknown_ones_name_their_key() {
        let a = parse("socket_group = \"root\"\nadmin = { uids = [\"root\"] }").unwrap();
        assert_eq!(a.socket_group, Some(0));
        let (key, reason) = parse("viewer = { gids = [\"no-such-group-here\"] }").unwrap_err();
        assert_eq!(key, "access.viewer.gids[0]");
        assert!(reason.contains("no-such-group-here"), "{reason}");
        let (key, _) = parse("socket_group = \"no-such-group-here\"").unwrap_err();
        assert_eq!(key, "access.socket_group");
    }
}
