//! A whole stack for one test: the stand-in Core in this process, and the real `ucim server` (the
//! installed binary) as the service user `ucloud`, with real Slurm, users and sudo. Needs root and
//! `dev/setup.sh` (which `dev/test.sh` runs); without `UCIM_E2E=1` the tests say so and do nothing.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use protocol::{JobState, ProductReference, SimpleDuration};
use serde_json::{json, Map, Value};
use ucloud_sim::{Sim, SimConfig};

/// The installed binary the sudoers rule names; `UCIM_BIN` points elsewhere (with a matching rule) when
/// several checkouts test on one machine.
pub fn ucim() -> String {
    std::env::var("UCIM_BIN").unwrap_or_else(|_| "/usr/local/lib/ucim/ucim".into())
}
pub const PROVIDER: &str = "e2e";

pub fn enabled() -> bool {
    if std::env::var("UCIM_E2E").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("UCIM_E2E is not 1: end-to-end test not run (use dev/test.sh)");
    false
}

pub struct Stack {
    pub name: String,
    pub sim: Sim,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub socket: PathBuf,
    pub provider_url: String,
    pub job_root: String,
    server: Option<Child>,
    ingress: Option<Child>,
    /// `https://127.0.0.1:PORT` when an ingress runs.
    pub ingress_url: Option<String>,
    /// The test CA (PEM) the ingress's certificate is signed by.
    pub ca_pem: Option<String>,
}

fn chown_ucloud(path: &Path) {
    let ok = Command::new("chown").args(["ucloud:ucloud"]).arg(path).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "chown ucloud {}", path.display());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

pub fn home_of(user: &str) -> PathBuf {
    let out = Command::new("getent").args(["passwd", user]).output().unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().split(':').nth(5).unwrap())
}

/// Extra configuration for one stack.
#[derive(Default, Clone)]
pub struct Options {
    /// TOML lines added to `[server]`.
    pub server: String,
    /// TOML lines of a `[users]` section.
    pub users: String,
    /// `server.max_instances` (20 if unset).
    pub max_instances: Option<u16>,
    /// TOML appended at the end (whole sections, e.g. `[storage.home]`).
    pub extra: String,
    /// TOML lines added to `[slurm]`.
    pub slurm: String,
    /// `slurm.poll_interval_ms` (300 if unset: tests want to see changes quickly).
    pub poll_interval_ms: Option<u64>,
    /// Put `ucim ingress` (TLS, with a CA made for the test) in front: the sim then calls the ingress.
    pub ingress: Option<IngressOptions>,
}

#[derive(Default, Clone)]
pub struct IngressOptions {
    /// The ingress's loopback port.
    pub port: u16,
    /// TOML lines added to `[ingress]`.
    pub extra: String,
}

impl Stack {
    /// `port_base`: first instance port; each test uses its own range so tests can run in parallel.
    pub async fn start(name: &str, port_base: u16) -> Stack {
        Stack::start_with(name, port_base, Options::default()).await
    }

    pub async fn start_with(name: &str, port_base: u16, options: Options) -> Stack {
        let dir = PathBuf::from(format!("/tmp/ucim-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["", "sim", "db", "run"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        chown_ucloud(&dir.join("db"));
        chown_ucloud(&dir.join("run"));
        let refresh_token = format!("refresh-{name}-{}", std::process::id());
        let provider_port = free_port();
        let provider_url = format!("http://127.0.0.1:{provider_port}");
        let sim = Sim::start(SimConfig {
            provider_id: PROVIDER.into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            provider_url: provider_url.clone(),
            key_dir: dir.join("sim"),
            refresh_token: refresh_token.clone(),
            issuer: "cloud.sdu.dk".into(),
        })
        .await
        .unwrap();
        // What an operator installs from UCloud: the public key as base64 DER, the refresh token 0600.
        std::fs::copy(sim.public_key_b64_path(), dir.join("ucloud_key.pub")).unwrap();
        let token_path = dir.join("refresh_token");
        std::fs::write(&token_path, &refresh_token).unwrap();
        std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        chown_ucloud(&token_path);

        let socket = dir.join("run/ucim.sock");
        let job_root = format!("ucloud-jobs/e2e-{name}");
        let config = format!(
            r#"provider_id = "{PROVIDER}"

[core]
url = "{sim_url}"
public_key_file = "{dir}/ucloud_key.pub"
refresh_token_file = "{dir}/refresh_token"

[server]
listen = "127.0.0.1:{provider_port}"
database = "{dir}/db/ucim.sqlite3"
socket = "{socket}"
first_instance_port = {port_base}
max_instances = {max_instances}
job_root = "{job_root}"
instance_command = "{ucim}"
public_url = "{provider_url}"
audit_log = "{dir}/db/audit.jsonl"
{server_extra}

[slurm]
poll_interval_ms = {poll_interval_ms}
{slurm_extra}

[products.cpu-1]
category = "cpu"
partition = "cpu"
cpus = 1
memory_gb = 1
price = 1

[applications.print-id]
script = '''
id
sleep "${{UCLOUD_PARAM_seconds:-0}}"
'''

[applications.exit-code]
script = 'exit "$UCLOUD_PARAM_code"'

[applications.echo]
script = 'printf "%s" "$UCLOUD_PARAM_value" > echoed.txt'

[users]
{users}

{extra}
"#,
            extra = options.extra,
            ucim = ucim(),
            max_instances = options.max_instances.unwrap_or(20),
            server_extra = options.server,
            slurm_extra = options.slurm,
            poll_interval_ms = options.poll_interval_ms.unwrap_or(300),
            users = options.users,
            sim_url = sim.url(),
            dir = dir.display(),
            socket = socket.display(),
        );
        let mut config = config;
        let mut ca_pem = None;
        if let Some(ingress) = &options.ingress {
            let (ca, cert, key) = test_certificates();
            for (name, pem) in [("ingress-cert.pem", &cert), ("ingress-key.pem", &key)] {
                std::fs::write(dir.join(name), pem).unwrap();
                chown_ucloud(&dir.join(name));
            }
            std::fs::set_permissions(dir.join("ingress-key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
            config.push_str(&format!(
                "\n[ingress]\nlisten = \"127.0.0.1:{}\"\ntls_cert = \"{}/ingress-cert.pem\"\ntls_key = \"{}/ingress-key.pem\"\n{}\n",
                ingress.port,
                dir.display(),
                dir.display(),
                ingress.extra
            ));
            ca_pem = Some(ca);
        }
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut stack = Stack {
            name: name.into(),
            sim,
            dir,
            config_path,
            socket,
            provider_url,
            job_root,
            server: None,
            ingress: None,
            ingress_url: None,
            ca_pem,
        };
        stack.start_server().await;
        if let Some(ingress) = &options.ingress {
            stack.start_ingress(ingress.port).await;
        }
        stack
    }

    /// Starts `ucim ingress` as the service user, waits for its port, and points the sim at it.
    pub async fn start_ingress(&mut self, port: u16) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("ingress.log")).unwrap();
        let child = Command::new("runuser")
            .args(["-u", "ucloud", "--", &ucim(), "ingress", "--config"])
            .arg(&self.config_path)
            .env("UCIM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.ingress = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let url = format!("https://127.0.0.1:{port}");
                self.sim.trust_root_pem(self.ca_pem.as_deref().unwrap().as_bytes()).unwrap();
                self.sim.set_provider_url(&url);
                self.ingress_url = Some(url);
                return;
            }
            if let Some(Ok(Some(status))) = self.ingress.as_mut().map(|c| c.try_wait()) {
                panic!("ucim ingress exited ({status}); log:\n{}", self.ingress_log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ucim ingress did not come up; log:\n{}", self.ingress_log());
    }

    pub fn ingress_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ingress.log")).unwrap_or_default()
    }

    /// The ingress's pid (the child of runuser).
    pub fn ingress_pid(&self) -> Option<u32> {
        let pattern = format!("{} ingress --config {}", ucim(), self.config_path.display());
        let out = Command::new("pgrep").args(["-u", "ucloud", "-f", &pattern]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).lines().next()?.trim().parse().ok()
    }

    pub fn kill_ingress(&mut self) {
        if let Some(mut child) = self.ingress.take() {
            let _ = Command::new("pkill").args(["-KILL", "-f", &format!("{} ingress --config {}", ucim(), self.config_path.display())]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `ucim server` as the service user and waits until its socket answers.
    pub async fn start_server(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log")).unwrap();
        let child = Command::new("runuser")
            .args(["-u", "ucloud", "--", &ucim(), "server", "--config"])
            .arg(&self.config_path)
            .env("UCIM_LOG", "info,ucim=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.server = Some(child);
        for _ in 0..200 {
            if self.admin(&["users"]).status.success() {
                return;
            }
            if let Some(Ok(Some(status))) = self.server.as_mut().map(|c| c.try_wait()) {
                panic!("ucim server exited ({status}); log:\n{}", self.server_log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ucim server did not come up; log:\n{}", self.server_log());
    }

    pub fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            // runuser's child is the server: kill the whole process group member by pid of the server.
            let _ = Command::new("pkill").args(["-KILL", "-f", &format!("{} server --config {}", ucim(), self.config_path.display())]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server as an operator would (SIGTERM) and waits for it to exit.
    pub fn stop_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = Command::new("pkill").args(["-TERM", "-f", &format!("{} server --config {}", ucim(), self.config_path.display())]).status();
            let _ = child.wait();
        }
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn admin(&self, args: &[&str]) -> Output {
        Command::new(ucim()).arg("admin").arg("--socket").arg(&self.socket).args(args).output().unwrap()
    }

    /// Runs `ucim ARGS` as `user`.
    pub fn ucim_as(&self, user: &str, args: &[&str]) -> Output {
        Command::new("runuser").args(["-u", user, "--", &ucim()]).args(args).output().unwrap()
    }

    /// The loopback port of `unix_user`'s running instance (browser endpoints are served there; in
    /// production the ingress forwards to it).
    pub fn instance_port(&self, unix_user: &str) -> Option<u16> {
        let out = self.admin(&["--json", "instances"]);
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        list.as_array()?.iter().find(|i| i["unix_user"] == unix_user)?["port"].as_u64().map(|p| p as u16)
    }

    pub fn map(&self, ucloud_user: &str, unix_user: &str) {
        let out = self.admin(&["map", ucloud_user, unix_user]);
        assert!(out.status.success(), "map failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn product() -> ProductReference {
        ProductReference { id: "cpu-1".into(), category: "cpu".into(), provider: PROVIDER.into() }
    }

    /// Builds and sends `jobs.create` as the Core would; returns the job id and the provider's answer.
    pub async fn submit(&self, user: &str, app: &str, params: Value, minutes: i64) -> (String, ucloud_sim::CallResult) {
        let params: Map<String, Value> = params.as_object().cloned().unwrap_or_default();
        let job = self.sim.new_job(user, Self::product(), app, params, Some(SimpleDuration { hours: 0, minutes, seconds: 0 }));
        let id = job["id"].as_str().unwrap().to_string();
        let result = self.sim.create_job(&job).await.unwrap();
        (id, result)
    }

    pub async fn wait_state(&self, job: &str, state: JobState, secs: u64) {
        if let Err(e) = self.sim.wait_for_state(job, state, Duration::from_secs(secs)).await {
            panic!("job {job} did not reach {state:?}: {e}\nserver log:\n{}", self.server_log());
        }
    }

    /// States applied by the Core, in order, each change once.
    pub fn states(&self, job: &str) -> Vec<JobState> {
        let mut out: Vec<JobState> = Vec::new();
        for u in self.sim.job_updates(job) {
            if let Some(s) = u.state {
                if out.last() != Some(&s) {
                    out.push(s);
                }
            }
        }
        out
    }

    pub fn job_dir(&self, user: &str, job: &str) -> PathBuf {
        home_of(user).join(&self.job_root).join(job)
    }

    pub fn slurm_id(&self, job: &str) -> u64 {
        // The provider's answer to create carried the Slurm id; the sim keeps it as providerGeneratedId.
        let j = self.sim.job(job).expect("job known to the Core");
        j["providerGeneratedId"].as_str().and_then(|s| s.parse().ok()).expect("providerGeneratedId")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_ingress();
        self.kill_server();
        self.sim.shutdown();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kept {} for inspection", self.dir.display());
        }
    }
}

/// A CA and a leaf for 127.0.0.1 and localhost signed by it: (CA PEM, leaf PEM, leaf key PEM).
pub fn test_certificates() -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "ucim e2e test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

pub fn squeue_state(slurm_id: u64) -> String {
    let out = Command::new("squeue").args(["-h", "-t", "all", "-j", &slurm_id.to_string(), "-o", "%T"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until Slurm itself says the job has ended (or has forgotten it), whatever ucim has seen.
pub async fn wait_slurm_ended(slurm_id: u64, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let state = squeue_state(slurm_id);
        if !matches!(state.as_str(), "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "SUSPENDED") {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "Slurm job {slurm_id} still {state} after {secs}s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls `check` every 200 ms until it holds; panics naming `what` after `secs`.
pub async fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

pub fn text(v: &str) -> Value {
    json!({"type": "text", "value": v})
}

pub fn int(v: i64) -> Value {
    json!({"type": "integer", "value": v})
}
