//! The `[users]` section: how UCloud users become local users.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::valid_unix_name;

/// How a UCloud user gets a local account.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UserMode {
    /// The operator maps users with `ucim admin map` (and `users.map`); UCloud shows no connect step.
    #[default]
    Admin,
    /// One-to-one with existing accounts: connecting gives the user a one-time ticket, which they redeem on
    /// the cluster as themselves with `ucim connect TICKET`.
    Ticket,
    /// One-to-one with accounts made on demand: connecting runs `users.create_hook`, which creates (or
    /// finds) the account and answers its name.
    Hook,
    /// Every UCloud user runs as `users.shared_user`. The kernel can then no longer tell users apart, so ucim
    /// enforces every check itself and audits every call.
    ManyToOne,
}

impl UserMode {
    /// Does UCloud need a connect step (manifest `enabled`)?
    pub fn needs_connection(self) -> bool {
        !matches!(self, UserMode::Admin)
    }

    /// One UCloud user per local account?
    pub fn one_to_one(self) -> bool {
        matches!(self, UserMode::Ticket | UserMode::Hook)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsersConfig {
    #[serde(default)]
    pub mode: UserMode,
    /// Fixed mappings from UCloud username to unix user, in addition to those in the database.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Local accounts must belong to this group to be mapped: it is the run-as group of the sudo rule.
    #[serde(default = "default_group")]
    pub group: String,
    /// How long a connection ticket can be redeemed.
    #[serde(default = "default_ticket_ttl")]
    pub ticket_ttl_secs: u64,
    /// Connections end after this long and must be renewed in UCloud (sent as the manifest's
    /// `expireAfterMs`); none means they last until unlinked.
    #[serde(default)]
    pub connection_expiry_hours: Option<u64>,
    /// `hook` mode: the command (argv, no shell) that makes or finds the account. Gets JSON on stdin,
    /// answers JSON on stdout.
    #[serde(default)]
    pub create_hook: Vec<String>,
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout_secs: u64,
    /// `many-to-one` mode: the one local user.
    #[serde(default)]
    pub shared_user: Option<String>,
    /// Where the browser goes once a connection is made without a ticket (`hook`, `many-to-one`); defaults
    /// to `core.url`.
    #[serde(default)]
    pub return_url: Option<String>,
}

impl Default for UsersConfig {
    fn default() -> Self {
        UsersConfig {
            mode: UserMode::default(),
            map: BTreeMap::new(),
            group: default_group(),
            ticket_ttl_secs: default_ticket_ttl(),
            connection_expiry_hours: None,
            create_hook: Vec::new(),
            hook_timeout_secs: default_hook_timeout(),
            shared_user: None,
            return_url: None,
        }
    }
}

fn default_group() -> String {
    "ucim-users".into()
}
fn default_ticket_ttl() -> u64 {
    3600
}
fn default_hook_timeout() -> u64 {
    30
}

impl UsersConfig {
    pub(crate) fn validate(&self, public_url: Option<&str>) -> Result<(), (String, String)> {
        let bad = |key: &str, problem: String| Err((format!("users.{key}"), problem));
        for (ucloud, unix) in &self.map {
            if !valid_unix_name(unix) {
                return Err((format!("users.map.\"{ucloud}\""), format!("`{unix}` is not a valid unix user name")));
            }
        }
        if !valid_unix_name(&self.group) {
            return bad("group", format!("`{}` is not a valid group name", self.group));
        }
        if !(60..=7 * 24 * 3600).contains(&self.ticket_ttl_secs) {
            return bad("ticket_ttl_secs", "must be between 60 and 604800 (one week)".into());
        }
        if self.connection_expiry_hours == Some(0) {
            return bad("connection_expiry_hours", "must be at least 1 (leave it out for no expiry)".into());
        }
        if !(1..=600).contains(&self.hook_timeout_secs) {
            return bad("hook_timeout_secs", "must be between 1 and 600".into());
        }
        if let Some(url) = &self.return_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return bad("return_url", "must start with http:// or https://".into());
            }
        }
        match self.mode {
            UserMode::Ticket if public_url.is_none() => Err((
                "server.public_url".into(),
                "is needed in ticket mode: the connect instructions page is served there".into(),
            )),
            UserMode::Hook => match self.create_hook.first() {
                None => bad("create_hook", "is needed in hook mode (e.g. [\"sudo\", \"-n\", \"/usr/local/lib/ucim/create-user\"])".into()),
                Some(program) if !program.starts_with('/') && program != "sudo" => {
                    bad("create_hook", "the program must be an absolute path (or sudo)".into())
                }
                Some(_) => Ok(()),
            },
            UserMode::ManyToOne => match &self.shared_user {
                Some(user) if valid_unix_name(user) => Ok(()),
                Some(user) => bad("shared_user", format!("`{user}` is not a valid unix user name")),
                None => bad("shared_user", "is needed in many-to-one mode".into()),
            },
            _ => Ok(()),
        }
    }

    pub fn connection_expiry_ms(&self) -> Option<i64> {
        self.connection_expiry_hours.map(|h| (h as i64) * 3_600_000)
    }
}
