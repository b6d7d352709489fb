//! Owners by name: a backup records the user and group names of each
//! entry's ids, and a restore at another site, whose users may have other
//! ids, gives each entry the ids its names have there (the recorded ids
//! where a name is unknown, or with `--numeric-owner`). Lookups go through
//! the system's user database (NSS), each id or name once.

use std::collections::HashMap;

use nix::unistd::{Gid, Group, Uid, User};

/// Id to name, as a backup needs it.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    /// The user name of `uid`, empty if it has none.
    pub fn user(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                User::from_uid(Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_default()
            })
            .clone()
    }

    /// The group name of `gid`, empty if it has none.
    pub fn group(&mut self, gid: u32) -> String {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                Group::from_gid(Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// Name to id, as a restore needs it.
pub struct Ids {
    numeric: bool,
    users: HashMap<String, Option<u32>>,
    groups: HashMap<String, Option<u32>>,
}

impl Ids {
    /// With `numeric`, names are ignored and the recorded ids kept.
    pub fn new(numeric: bool) -> Self {
        Self {
            numeric,
            users: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    /// The uid for an entry recorded with `uid` and user name `name`.
    pub fn uid(&mut self, uid: u32, name: &str) -> u32 {
        if self.numeric || name.is_empty() {
            return uid;
        }
        self.users
            .entry(name.to_owned())
            .or_insert_with(|| User::from_name(name).ok().flatten().map(|u| u.uid.as_raw()))
            .unwrap_or(uid)
    }

    /// The gid for an entry recorded with `gid` and group name `name`.
    pub fn gid(&mut self, gid: u32, name: &str) -> u32 {
        if self.numeric || name.is_empty() {
            return gid;
        }
        self.groups
            .entry(name.to_owned())
            .or_insert_with(|| {
                Group::from_name(name)
                    .ok()
                    .flatten()
                    .map(|g| g.gid.as_raw())
            })
            .unwrap_or(gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_round_trips_and_unknown_names_keep_their_ids() {
        let mut names = Names::default();
        assert_eq!(names.user(0), "root");
        assert_eq!(names.group(0), "root");
        let mut ids = Ids::new(false);
        assert_eq!(ids.uid(4242, "root"), 0, "a name maps to the local id");
        assert_eq!(ids.uid(4242, "no-such-user-here"), 4242);
        assert_eq!(ids.gid(4242, ""), 4242);
        let mut numeric = Ids::new(true);
        assert_eq!(numeric.uid(4242, "root"), 4242);
    }
}
