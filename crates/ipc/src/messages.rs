//! What the server, its instances and `ucim admin` say to each other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything an instance needs to serve its user. Sent by the server after the instance proved, with the
/// launch nonce and its uid, that it is the process the server started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceSetup {
    pub port: u16,
    /// The UCloud users this instance serves (all mapped to the instance's uid).
    pub ucloud_users: Vec<String>,
    pub provider_id: String,
    pub issuer: String,
    /// The Core's public key, as configured (PEM or base64 DER).
    pub public_key: String,
    pub products: BTreeMap<String, config::Product>,
    pub applications: BTreeMap<String, config::Application>,
    pub slurm: config::SlurmConfig,
    pub job_root: String,
    /// Many UCloud users share this uid: the instance must check every job's owner itself.
    #[serde(default)]
    pub many_to_one: bool,
    /// Hex HMAC key this uid's transfer tokens are signed with (derived from the server's secret, so it
    /// is the same after restarts and differs per uid).
    #[serde(default)]
    pub transfer_key: String,
    /// Where browsers reach upload/download endpoints: `server.public_url` (the ingress), without `/`.
    #[serde(default)]
    pub transfer_base_url: String,
    /// `[storage.*]`: where drives are (the instance maps a Drive to its folder with `files::drives`).
    #[serde(default)]
    pub storage: BTreeMap<String, config::StorageProduct>,
}

/// Written by the server on the instance's stdin at launch: where to connect and the one-time nonce that
/// proves the connection comes from the launched process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bootstrap {
    pub socket: std::path::PathBuf,
    pub nonce: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Instance → server, first message on its control connection.
    Hello { nonce: String },
    /// Instance → server: listening; the connection stays open as long as the instance lives.
    Ready { port: u16 },
    /// Instance → server, before `sbatch`: claim `ucloud_id` for `ucloud_user` (who must map to the peer uid).
    /// `memory_mb` (per node) and `time_limit_minutes` are what `sbatch` will be given, kept for the job's
    /// end message and for extensions.
    RegisterJob {
        ucloud_id: String,
        ucloud_user: String,
        #[serde(default)]
        memory_mb: Option<u64>,
        #[serde(default)]
        time_limit_minutes: Option<u64>,
    },
    /// Instance → server, after `sbatch`.
    ConfirmJob { ucloud_id: String, slurm_id: u64 },
    /// Instance → server: `sbatch` failed; forget the claim.
    AbortJob { ucloud_id: String },
    /// Instance → server: the Slurm id of a job the peer uid owns.
    LookupJob { ucloud_id: String },
    /// Instance → server: the user asked UCloud to stop this job (so CANCELLED means "by the user").
    RequestCancel { ucloud_id: String },
    /// Instance → server: does `ucloud_user` map to the peer uid (a user connected after the instance started)?
    CheckUser { ucloud_user: String },
    /// Instance → server: a user call the instance answered without the server seeing it (the ingress
    /// sent it straight there), for the audit log. Only for UCloud users that map to the peer uid.
    Audit { ucloud_user: String, action: String, ids: Vec<String>, outcome: String },
    /// Any local user: redeem a connect ticket for the peer uid's own account (`ucim connect`).
    RedeemTicket { ticket: String },
    /// Any local user: the UCloud users mapped to the peer uid.
    WhoAmI,
    /// Admin (uid 0 or the service user): map a UCloud user to a unix user.
    MapUser { ucloud_user: String, unix_user: String },
    /// Admin: remove a mapping.
    UnmapUser { ucloud_user: String },
    /// Admin: list mappings.
    ListUsers,
    /// Admin: end a connection, in UCloud too (`clearConnection`).
    Disconnect { ucloud_user: String },
    /// Admin: connections and open tickets.
    ListConnections,
    /// Admin: the running instances.
    ListInstances,
    /// Ingress (uid 0 or the service user): where `ucloud_user`'s instance listens. `start` starts it if it
    /// is not running (refused for unmapped users); without it a stopped instance answers `port: None`.
    Route { ucloud_user: String, start: bool },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Setup(Box<InstanceSetup>),
    /// `RegisterJob` found the job already submitted (the Core retried).
    AlreadySubmitted { slurm_id: u64 },
    Job(JobInfo),
    Users { users: Vec<UserInfo> },
    /// A ticket was redeemed: this UCloud user is now the peer's account.
    Connected { ucloud_user: String },
    Connections { users: Vec<UserInfo>, tickets: Vec<TicketInfo> },
    Instances { instances: Vec<InstanceInfo> },
    /// Answer to `Route`: the instance's loopback port, or `None` (send the call to the server).
    Route { port: Option<u16> },
    Error { message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobInfo {
    pub ucloud_id: String,
    pub ucloud_user: String,
    pub slurm_id: Option<u64>,
    pub ended: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserInfo {
    pub ucloud_user: String,
    pub unix_user: String,
    pub uid: u32,
    /// How the mapping was made: `admin`, `ticket`, `hook`, `many-to-one` or `config`.
    pub source: String,
    /// Milliseconds since the epoch when the connection ends, if it does.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// An open connect ticket (the ticket itself is never stored or shown, only who it is for).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TicketInfo {
    pub ucloud_user: String,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceInfo {
    pub unix_user: String,
    pub uid: u32,
    pub port: u16,
    pub pid: Option<i32>,
    /// Seconds since it started and since it last served a call.
    #[serde(default)]
    pub up_secs: u64,
    #[serde(default)]
    pub idle_secs: u64,
}
