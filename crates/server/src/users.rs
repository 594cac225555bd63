//! Which unix user a UCloud user is. Mappings come from the database (connections and `ucim admin map`)
//! and, for fixed set-ups, from the config file; the unix account must exist, be at or above the minimum
//! uid, and (when mapped) belong to the group the sudo rule lets instances run as.

use std::collections::BTreeMap;
use std::sync::Arc;

use store::Store;

#[derive(Debug, Clone, PartialEq)]
pub struct LocalUser {
    pub ucloud_user: String,
    pub unix_user: String,
    pub uid: u32,
}

pub struct Users {
    store: Arc<Store>,
    fixed: BTreeMap<String, String>,
    min_uid: u32,
    group: String,
}

#[derive(Debug, PartialEq)]
pub enum Refusal {
    NotMapped,
    Expired,
    NoSuchAccount(String),
    NotInGroup { unix_user: String, group: String },
    UidTooLow { unix_user: String, uid: u32, min: u32 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotMapped => write!(f, "is not connected to this provider"),
            Refusal::Expired => write!(f, "has a connection to this provider that expired; connect again"),
            Refusal::NotInGroup { unix_user, group } => {
                write!(f, "would be the unix user '{unix_user}', who is not in the group '{group}' allowed to use UCloud")
            }
            Refusal::NoSuchAccount(u) => write!(f, "is mapped to the unix user '{u}', which does not exist"),
            Refusal::UidTooLow { unix_user, uid, min } => {
                write!(f, "is mapped to '{unix_user}' (uid {uid}), below the minimum uid {min}")
            }
        }
    }
}

impl Users {
    pub fn new(store: Arc<Store>, config: &config::Config) -> Users {
        Users {
            store,
            fixed: config.users.map.clone(),
            min_uid: config.server.min_uid,
            group: config.users.group.clone(),
        }
    }

    pub fn min_uid(&self) -> u32 {
        self.min_uid
    }

    /// The local account of `ucloud_user`, checked against the passwd database now (accounts can vanish).
    pub fn resolve(&self, ucloud_user: &str) -> Result<LocalUser, Refusal> {
        let unix_user = match self.store.user(ucloud_user) {
            Ok(Some(m)) if m.expired(store::now_ms()) => return Err(Refusal::Expired),
            Ok(Some(m)) => m.unix_user,
            Ok(None) => self.fixed.get(ucloud_user).cloned().ok_or(Refusal::NotMapped)?,
            Err(e) => {
                tracing::error!("user map lookup failed: {e}");
                return Err(Refusal::NotMapped);
            }
        };
        let uid = self.account_uid(&unix_user)?;
        Ok(LocalUser { ucloud_user: ucloud_user.to_string(), unix_user, uid })
    }

    /// The uid of `unix_user` if it exists and may be mapped.
    pub fn account_uid(&self, unix_user: &str) -> Result<u32, Refusal> {
        let account = nix::unistd::User::from_name(unix_user)
            .ok()
            .flatten()
            .ok_or_else(|| Refusal::NoSuchAccount(unix_user.to_string()))?;
        let uid = account.uid.as_raw();
        if uid < self.min_uid {
            return Err(Refusal::UidTooLow { unix_user: unix_user.to_string(), uid, min: self.min_uid });
        }
        Ok(uid)
    }

    /// The uid of `unix_user` if it may be mapped now: exists, not a system account, in the group.
    pub fn mappable_uid(&self, unix_user: &str) -> Result<u32, Refusal> {
        let uid = self.account_uid(unix_user)?;
        if !self.in_group(unix_user) {
            return Err(Refusal::NotInGroup { unix_user: unix_user.to_string(), group: self.group.clone() });
        }
        Ok(uid)
    }

    fn in_group(&self, unix_user: &str) -> bool {
        match nix::unistd::Group::from_name(&self.group) {
            Ok(Some(group)) => crate::instances::groups_of(unix_user).contains(&group.gid.as_raw()),
            _ => false,
        }
    }

    /// Every UCloud user that maps to `uid` (database and config), sorted.
    pub fn ucloud_users_of(&self, uid: u32) -> Vec<String> {
        let mut out: Vec<String> = self
            .store
            .users_by_uid(uid)
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.ucloud_user)
            .collect();
        for (ucloud, unix) in &self.fixed {
            if self.account_uid(unix).ok() == Some(uid) && self.store.user(ucloud).ok().flatten().is_none() {
                out.push(ucloud.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Does `ucloud_user` map to `uid`?
    pub fn maps_to(&self, ucloud_user: &str, uid: u32) -> bool {
        self.resolve(ucloud_user).map(|u| u.uid == uid).unwrap_or(false)
    }

    /// All mappings, for `ucim admin`.
    pub fn list(&self) -> Vec<ipc::UserInfo> {
        let mut out: Vec<ipc::UserInfo> = self
            .store
            .users()
            .unwrap_or_default()
            .into_iter()
            .map(|m| ipc::UserInfo {
                ucloud_user: m.ucloud_user,
                unix_user: m.unix_user,
                uid: m.uid,
                source: m.source,
                expires_at: m.expires_at,
            })
            .collect();
        for (ucloud, unix) in &self.fixed {
            if !out.iter().any(|u| &u.ucloud_user == ucloud) {
                let uid = self.account_uid(unix).unwrap_or(0);
                out.push(ipc::UserInfo {
                    ucloud_user: ucloud.clone(),
                    unix_user: unix.clone(),
                    uid,
                    source: "config".into(),
                    expires_at: None,
                });
            }
        }
        out.sort_by(|a, b| a.ucloud_user.cmp(&b.ucloud_user));
        out
    }
}

/// The unix name the default account hook is offered for a UCloud user: the part before `#`, lowercased,
/// letters and digits only, at most 20 characters, then the digits after `#` (at most 8). A name that
/// would not start with a letter gets a `u` in front. `Alice.Smith#1234` → `alicesmith1234`. The hook
/// appends `-2`, `-3`, … when the name is taken by an account made for someone else.
pub fn suggested_unix_name(ucloud_user: &str) -> String {
    let (base, tag) = ucloud_user.split_once('#').unwrap_or((ucloud_user, ""));
    let mut name: String =
        base.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).take(20).collect();
    name.extend(tag.chars().filter(char::is_ascii_digit).take(8));
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert(0, 'u');
    }
    name.truncate(30);
    name
}

/// What the Core may send as a username: printable, bounded.
pub fn valid_ucloud_username(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_names_are_valid_unix_names() {
        for (ucloud, want) in [
            ("Alice#1234", "alice1234"),
            ("Alice.Smith#1234", "alicesmith1234"),
            ("1337#42", "u133742"),
            ("Ærøskøbing#7", "rskbing7"),
            ("日本#1", "u1"),
            ("#", "u"),
            ("a-very-long-name-that-goes-on-and-on#123456789", "averylongnamethatgoe12345678"),
            ("bob", "bob"),
            ("x; rm -rf /#1", "xrmrf1"),
        ] {
            let got = suggested_unix_name(ucloud);
            assert_eq!(got, want, "{ucloud}");
            assert!(config::valid_unix_name(&got), "{got}");
        }
    }
}
