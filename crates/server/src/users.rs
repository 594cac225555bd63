//! Which unix user a UCloud user is. Mappings come from the database (`ucim admin map`) and, for fixed
//! set-ups, from the config file; the unix account must exist and be at or above the minimum uid.

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
}

#[derive(Debug, PartialEq)]
pub enum Refusal {
    NotMapped,
    NoSuchAccount(String),
    UidTooLow { unix_user: String, uid: u32, min: u32 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotMapped => write!(f, "is not connected to this provider"),
            Refusal::NoSuchAccount(u) => write!(f, "is mapped to the unix user '{u}', which does not exist"),
            Refusal::UidTooLow { unix_user, uid, min } => {
                write!(f, "is mapped to '{unix_user}' (uid {uid}), below the minimum uid {min}")
            }
        }
    }
}

impl Users {
    pub fn new(store: Arc<Store>, fixed: BTreeMap<String, String>, min_uid: u32) -> Users {
        Users { store, fixed, min_uid }
    }

    pub fn min_uid(&self) -> u32 {
        self.min_uid
    }

    /// The local account of `ucloud_user`, checked against the passwd database now (accounts can vanish).
    pub fn resolve(&self, ucloud_user: &str) -> Result<LocalUser, Refusal> {
        let unix_user = match self.store.user(ucloud_user) {
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
            .map(|m| ipc::UserInfo { ucloud_user: m.ucloud_user, unix_user: m.unix_user, uid: m.uid, source: "admin".into() })
            .collect();
        for (ucloud, unix) in &self.fixed {
            if !out.iter().any(|u| &u.ucloud_user == ucloud) {
                let uid = self.account_uid(unix).unwrap_or(0);
                out.push(ipc::UserInfo { ucloud_user: ucloud.clone(), unix_user: unix.clone(), uid, source: "config".into() });
            }
        }
        out.sort_by(|a, b| a.ucloud_user.cmp(&b.ucloud_user));
        out
    }
}
