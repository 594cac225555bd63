//! ucim's configuration: one TOML file, parsed strictly (unknown keys are errors) and validated before the
//! process does anything. Every error names the file, the key and what is wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod ingress;
mod users;
pub use ingress::IngressConfig;
mod storage;
pub use storage::{DriveKind, StorageProduct, PLACEHOLDERS};
pub use users::{UserMode, UsersConfig};

pub const DEFAULT_PATH: &str = "/etc/ucim/config.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The provider id UCloud knows this centre by; every call is under `/ucloud/{provider_id}`.
    pub provider_id: String,
    pub core: CoreConfig,
    pub server: ServerConfig,
    #[serde(default)]
    pub slurm: SlurmConfig,
    /// Machine types, keyed by product name.
    pub products: BTreeMap<String, Product>,
    /// Applications users may run, keyed by UCloud application name.
    #[serde(default)]
    pub applications: BTreeMap<String, Application>,
    #[serde(default)]
    pub users: UsersConfig,
    /// `ucim ingress`, the public TLS entry point; absent when the server is reached directly.
    #[serde(default)]
    pub ingress: Option<IngressConfig>,
    /// Storage products (drives), keyed by product name.
    #[serde(default)]
    pub storage: BTreeMap<String, StorageProduct>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CoreConfig {
    /// Base URL of UCloud/Core, e.g. `https://cloud.sdu.dk`.
    pub url: String,
    /// The Core's public key for this provider: PEM or the base64 DER UCloud hands out.
    pub public_key_file: PathBuf,
    /// The provider's refresh token, readable by the service user only.
    pub refresh_token_file: PathBuf,
    #[serde(default = "default_issuer")]
    pub issuer: String,
}

fn default_issuer() -> String {
    "cloud.sdu.dk".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// The unix socket instances and `ucim admin` talk to.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The binary `sudo` runs as each user; must match the sudoers rule exactly.
    #[serde(default = "default_instance_command")]
    pub instance_command: PathBuf,
    #[serde(default = "default_first_port")]
    pub first_instance_port: u16,
    #[serde(default = "default_max_instances")]
    pub max_instances: u16,
    /// Users below this uid are never mapped or launched.
    #[serde(default = "default_min_uid")]
    pub min_uid: u32,
    /// Folder under each user's home where job scripts and outputs go.
    #[serde(default = "default_job_root")]
    pub job_root: String,
    /// How the users' browsers reach this module (e.g. `https://hpc.example.org`), for pages it serves
    /// them such as the connect instructions.
    #[serde(default)]
    pub public_url: Option<String>,
    /// An instance that served no call for this long stops; 0 keeps instances until the server stops.
    #[serde(default = "default_idle_secs")]
    pub instance_idle_secs: u64,
    /// Append-only JSON-lines record of every user call (who, as whom, what, outcome).
    #[serde(default = "default_audit_log")]
    pub audit_log: PathBuf,
}

fn default_database() -> PathBuf {
    "/var/lib/ucim/ucim.sqlite3".into()
}
fn default_socket() -> PathBuf {
    "/run/ucim/ucim.sock".into()
}
fn default_instance_command() -> PathBuf {
    "/usr/local/lib/ucim/ucim".into()
}
fn default_first_port() -> u16 {
    42000
}
fn default_max_instances() -> u16 {
    1000
}
fn default_min_uid() -> u32 {
    1000
}
fn default_idle_secs() -> u64 {
    1800
}
fn default_audit_log() -> PathBuf {
    "/var/log/ucim/audit.jsonl".into()
}
fn default_job_root() -> String {
    "ucloud-jobs".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// Where squeue/sbatch/... live; `None` searches PATH.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub command_timeout_ms: u64,
    /// `sbatch --account`, if the site needs one.
    #[serde(default)]
    pub account: Option<String>,
    /// Report jobs that connected users submit with plain `sbatch` to UCloud too (same poll, no extra call).
    #[serde(default)]
    pub outside_jobs: bool,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            bin_dir: None,
            poll_interval_ms: default_poll_ms(),
            command_timeout_ms: default_timeout_ms(),
            account: None,
            outside_jobs: false,
        }
    }
}

fn default_poll_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    10_000
}

/// A machine type: what UCloud sells and which Slurm resources it becomes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub category: String,
    pub partition: String,
    pub cpus: u32,
    pub memory_gb: u32,
    #[serde(default)]
    pub gpus: u32,
    /// Units charged per core-minute (the category is accounted per minute).
    pub price: i64,
    #[serde(default)]
    pub description: String,
    /// `sbatch --qos`, if the site sells this machine type under a QoS.
    #[serde(default)]
    pub qos: Option<String>,
    /// `sbatch --constraint` (node features), e.g. `"intel&ib"`.
    #[serde(default)]
    pub constraint: Option<String>,
    /// Extra `#SBATCH --…` lines for every job on this product (e.g. `"#SBATCH --exclusive"`).
    #[serde(default)]
    pub sbatch: Vec<String>,
}

/// An application: how a job of it runs at this site. The batch script loads `modules`, exports
/// `environment` and every job parameter (as `UCLOUD_PARAM_<name>`, single-quoted: data, never code), then
/// runs `script` (bash, as written) and the command line rendered from `invocation`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Bash written by the operator, run as is (not a template).
    #[serde(default)]
    pub script: String,
    /// A command-line template (minijinja syntax) over the job's parameters, e.g.
    /// `"python3 {{ script }} --n {{ n }}"`. Every value becomes one single-quoted shell word.
    #[serde(default)]
    pub invocation: Option<String>,
    /// Environment modules, loaded in order (`module load NAME`) before the job's commands.
    #[serde(default)]
    pub modules: Vec<String>,
    /// Fixed environment variables for the job (the operator's values, exported quoted).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Extra `#SBATCH --…` lines for every job of this application.
    #[serde(default)]
    pub sbatch: Vec<String>,
}

/// A configuration problem: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "config {}: {}", self.file.display(), self.problem)
        } else {
            write!(f, "config {}: key `{}`: {}", self.file.display(), self.key, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.into(),
            key: String::new(),
            problem: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let err = |key: String, problem: String| ConfigError { file: path.into(), key, problem };
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            // toml's message carries line and column; keep its first line plus the detail.
            let problem = e.inner().message().to_string();
            let problem = match e.inner().span() {
                Some(span) => format!("{problem} (at line {})", line_of(text, span.start)),
                None => problem,
            };
            err(key, problem)
        })?;
        config.validate().map_err(|(key, problem)| err(key, problem))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, problem: &str| Err((key.to_string(), problem.to_string()));
        if !valid_name(&self.provider_id) {
            return bad("provider_id", "must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'");
        }
        if !(self.core.url.starts_with("http://") || self.core.url.starts_with("https://")) {
            return bad("core.url", "must start with http:// or https://");
        }
        if self.core.issuer.is_empty() {
            return bad("core.issuer", "must not be empty");
        }
        if !self.server.instance_command.is_absolute() {
            return bad("server.instance_command", "must be an absolute path (it is matched by the sudoers rule)");
        }
        if !self.server.socket.is_absolute() {
            return bad("server.socket", "must be an absolute path");
        }
        if self.server.first_instance_port < 1024 {
            return bad("server.first_instance_port", "must be 1024 or above");
        }
        if self.server.max_instances == 0
            || u32::from(self.server.first_instance_port) + u32::from(self.server.max_instances) > 65536
        {
            return bad("server.max_instances", "must be at least 1 and keep ports below 65536");
        }
        if self.server.min_uid == 0 {
            return bad("server.min_uid", "must be above 0: root is never mapped");
        }
        if self.server.job_root.is_empty()
            || self.server.job_root.starts_with('/')
            || self.server.job_root.split('/').any(|c| c == ".." || c == "." || c.is_empty())
        {
            return bad("server.job_root", "must be a relative path below the home folder, without '..'");
        }
        if self.slurm.poll_interval_ms < 100 {
            return bad("slurm.poll_interval_ms", "must be at least 100");
        }
        if self.slurm.command_timeout_ms < 500 {
            return bad("slurm.command_timeout_ms", "must be at least 500");
        }
        if self.products.is_empty() {
            return bad("products", "at least one product is needed");
        }
        for (name, p) in &self.products {
            let key = |field: &str| format!("products.{name}.{field}");
            if !valid_name(name) {
                return Err((format!("products.{name}"), "product names are 1-64 characters of a-z, A-Z, 0-9, '-' or '_'".into()));
            }
            if !valid_name(&p.category) {
                return Err((key("category"), "must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'".into()));
            }
            if !valid_name(&p.partition) {
                return Err((key("partition"), "must be a Slurm partition name".into()));
            }
            if p.cpus == 0 {
                return Err((key("cpus"), "must be at least 1".into()));
            }
            if p.memory_gb == 0 {
                return Err((key("memory_gb"), "must be at least 1".into()));
            }
            if p.price < 0 {
                return Err((key("price"), "must not be negative".into()));
            }
            if p.qos.as_deref().is_some_and(|q| !valid_name(q)) {
                return Err((key("qos"), "must be a Slurm QoS name (a-z, A-Z, 0-9, '-' or '_')".into()));
            }
            if p.constraint.as_deref().is_some_and(|c| !valid_constraint(c)) {
                return Err((key("constraint"), "must be a Slurm constraint: letters, digits and _ - . & | , * ! [ ] ( ) : only".into()));
            }
            check_directives(&p.sbatch).map_err(|problem| (key("sbatch"), problem))?;
        }
        for (name, app) in &self.applications {
            let key = |field: &str| format!("applications.{name}.{field}");
            if !valid_name(name) {
                return Err((format!("applications.{name}"), "application names are 1-64 characters of a-z, A-Z, 0-9, '-' or '_'".into()));
            }
            let invocation = app.invocation.as_deref().unwrap_or_default();
            if app.script.trim().is_empty() && invocation.trim().is_empty() {
                return Err((key("script"), "an application needs a script or an invocation".into()));
            }
            if app.script.contains('\0') {
                return Err((key("script"), "must not contain NUL".into()));
            }
            if app.invocation.is_some() {
                if invocation.contains(['\0', '\u{E000}', '\u{E001}']) {
                    return Err((key("invocation"), "must not contain NUL or the characters U+E000/U+E001".into()));
                }
                let env = minijinja::Environment::new();
                if let Err(e) = env.template_from_str(invocation) {
                    return Err((key("invocation"), format!("is not a valid template: {e}")));
                }
            }
            if let Some(m) = app.modules.iter().find(|m| !valid_module(m)) {
                return Err((key("modules"), format!("{m:?} is not a module name (letters, digits and _ - . + / only)")));
            }
            if let Some(v) = app.environment.keys().find(|v| !valid_env_name(v) || v.starts_with("UCLOUD_") || v.starts_with("SLURM_")) {
                return Err((key("environment"), format!("{v:?} is not allowed: names match [A-Za-z_][A-Za-z0-9_]* and do not start with UCLOUD_ or SLURM_")));
            }
            if app.environment.values().any(|v| v.contains('\0')) {
                return Err((key("environment"), "values must not contain NUL".into()));
            }
            check_directives(&app.sbatch).map_err(|problem| (key("sbatch"), problem))?;
        }
        if let Some(url) = &self.server.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.ends_with('/') {
                return bad("server.public_url", "must start with http:// or https:// and not end with '/'");
            }
        }
        if self.server.instance_idle_secs != 0 && self.server.instance_idle_secs < 2 {
            return bad("server.instance_idle_secs", "must be 0 (never stop) or at least 2");
        }
        if let Some(ingress) = &self.ingress {
            ingress.validate()?;
        }
        self.users.validate(self.server.public_url.as_deref())?;
        storage::validate(&self.storage, self.users.mode)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Product, category, application and provider names.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Operator `#SBATCH` lines: each one line starting `#SBATCH --`, so nothing but a directive can be written.
fn check_directives(lines: &[String]) -> Result<(), String> {
    for line in lines {
        if !line.starts_with("#SBATCH --") || line.contains(['\n', '\r', '\0']) || line.len() > 1024 {
            return Err(format!("{line:?}: each line must start with `#SBATCH --` and be one line"));
        }
    }
    Ok(())
}

/// Slurm feature expressions (`--constraint`).
fn valid_constraint(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.&|,*![]():".contains(&b))
}

/// Environment module names such as `python/3.11.4` or `gcc/12.2.0+cuda`.
fn valid_module(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.+/".contains(&b))
}

/// Names bash accepts in `export NAME=…`.
pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A portable unix user name: starts with a lowercase letter or '_', then lowercase letters, digits, '_' or '-'.
pub fn valid_unix_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_lowercase() || b == b'_' => {}
        _ => return false,
    }
    s.len() <= 32 && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests;
