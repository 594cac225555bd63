//! Per-user instances: started with `sudo -n -u USER <instance_command> user` (the one sudo rule), one per
//! uid, on a loopback port from the pool. The launched process gets a one-time nonce on stdin and must
//! present it over the IPC socket from the right uid before it is given anything.
//!
//! An instance lives as long as its stdin and its control connection: when the server exits (cleanly or
//! killed) both close and the instance stops by itself. The server stops an instance the same way (closing
//! its stdin) when it has been idle too long or when its user's unix groups changed (a process keeps the
//! groups it started with). An instance that dies on its own is a crash: it is started again after a
//! backoff that grows with repeated crashes.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc::{Bootstrap, InstanceInfo, InstanceSetup};
use rand::RngCore;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stopped instance gets to exit by itself before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// An instance that ran this long before crashing counts as healthy: the backoff starts again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A crashed instance to restart: uid and unix user.
pub type Crash = (u32, String);

pub struct Instances {
    socket: PathBuf,
    command: PathBuf,
    first_port: u16,
    max: u16,
    /// One async lock per uid: concurrent first calls for a user start one instance, not several.
    slots: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<Slot>>>>,
    /// Launched but not yet proven: nonce → what the instance may receive.
    pending: Mutex<HashMap<String, Pending>>,
    ports: Mutex<BTreeSet<u16>>,
    crashes: mpsc::UnboundedSender<Crash>,
}

#[derive(Default)]
pub struct Slot {
    running: Option<Running>,
    /// Crashes in a row (reset by a healthy run) and when the last one happened.
    crashes: u32,
    last_crash: Option<Instant>,
}

struct Running {
    port: u16,
    unix_user: String,
    pid: Option<u32>,
    nonce: String,
    /// The unix groups the process started with.
    groups: Vec<u32>,
    started: Instant,
    last_used: Instant,
    /// Dropping stdin ends the instance.
    stdin: ChildStdin,
    child: Child,
}

struct Pending {
    uid: u32,
    setup: InstanceSetup,
    ready: Option<oneshot::Sender<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no free instance port")]
    NoPort,
    #[error("cannot start the instance for {user}: {detail}")]
    Launch { user: String, detail: String },
    #[error("the instance for {0} did not become ready in time")]
    Timeout(String),
    #[error("the instance for {user} crashed {crashes} times in a row; next start in {secs} s")]
    Backoff { user: String, crashes: u32, secs: u64 },
}

/// What the IPC handshake needs from a launch.
#[allow(clippy::large_enum_variant)] // one per instance start: boxing would buy nothing
pub enum Handshake {
    Accepted(InstanceSetup),
    Refused(String),
}

impl Instances {
    /// The instances, and where crashed instances are reported for a restart.
    pub fn new(config: &config::Config) -> (Instances, mpsc::UnboundedReceiver<Crash>) {
        let (crashes, crashed) = mpsc::unbounded_channel();
        let instances = Instances {
            socket: config.server.socket.clone(),
            command: config.server.instance_command.clone(),
            first_port: config.server.first_instance_port,
            max: config.server.max_instances,
            slots: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            ports: Mutex::new(BTreeSet::new()),
            crashes,
        };
        (instances, crashed)
    }

    fn slot(&self, uid: u32) -> Arc<tokio::sync::Mutex<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(uid).or_default().clone()
    }

    /// The port of `uid`'s instance if it is running, counting as use; never starts one.
    pub async fn port_if_running(&self, uid: u32) -> Option<u16> {
        let slot = self.slot(uid);
        let mut slot = slot.try_lock().ok()?;
        let running = slot.running.as_mut()?;
        running.last_used = Instant::now();
        Some(running.port)
    }

    /// Starts `unix_user`'s instance unless it runs; returns its port. `setup` is built only when needed.
    pub async fn ensure_running(
        &self,
        uid: u32,
        unix_user: &str,
        setup: impl FnOnce(u16) -> InstanceSetup,
    ) -> Result<u16, StartError> {
        let slot = self.slot(uid);
        let mut slot = slot.lock().await;
        if let Some(r) = &mut slot.running {
            r.last_used = Instant::now();
            return Ok(r.port);
        }
        if let Some(wait) = slot.backoff_left() {
            return Err(StartError::Backoff { user: unix_user.to_string(), crashes: slot.crashes, secs: wait.as_secs() + 1 });
        }
        let port = self.allocate_port().ok_or(StartError::NoPort)?;
        match self.launch(uid, unix_user, setup(port)).await {
            Ok(running) => {
                tracing::info!(unix_user, uid, port, pid = ?running.pid, groups = ?running.groups, "instance started");
                slot.running = Some(running);
                Ok(port)
            }
            Err(e) => {
                self.release_port(port);
                Err(e)
            }
        }
    }

    async fn launch(&self, uid: u32, unix_user: &str, setup: InstanceSetup) -> Result<Running, StartError> {
        let port = setup.port;
        let nonce = random_hex(32);
        let (ready_tx, ready_rx) = oneshot::channel();
        self.pending_map().insert(nonce.clone(), Pending { uid, setup, ready: Some(ready_tx) });
        let fail = |detail: String| StartError::Launch { user: unix_user.to_string(), detail };
        let groups = groups_of(unix_user);

        // argv only; unix_user was validated against the passwd database by the caller.
        let mut child = Command::new("sudo")
            .args(["-n", "-u", unix_user, "--"])
            .arg(&self.command)
            .arg("user")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| fail(format!("cannot run sudo: {e}")))?;
        let pid = child.id();
        if let Some(stderr) = child.stderr.take() {
            let user = unix_user.to_string();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(target: "ucim::instance", user, "{line}");
                }
            });
        }
        let mut stdin = child.stdin.take().ok_or_else(|| fail("no stdin pipe".into()))?;
        let bootstrap = Bootstrap { socket: self.socket.clone(), nonce: nonce.clone() };
        let mut line = serde_json::to_vec(&bootstrap).expect("bootstrap serialises");
        line.push(b'\n');
        let written = stdin.write_all(&line).await;

        let outcome = match written {
            Err(e) => Err(fail(format!("cannot write bootstrap: {e}"))),
            Ok(()) => tokio::select! {
                r = tokio::time::timeout(START_TIMEOUT, ready_rx) => match r {
                    Ok(Ok(())) => Ok(()),
                    _ => Err(StartError::Timeout(unix_user.to_string())),
                },
                status = child.wait() => Err(fail(format!("exited during start-up ({})", status.map(|s| s.to_string()).unwrap_or_default()))),
            },
        };
        if let Err(e) = outcome {
            self.pending_map().remove(&nonce);
            // Closing stdin makes a half-started instance exit.
            drop(stdin);
            return Err(e);
        }
        let now = Instant::now();
        Ok(Running { port, unix_user: unix_user.to_string(), pid, nonce, groups, started: now, last_used: now, stdin, child })
    }

    fn pending_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Hello` of a launched instance: the nonce must be a pending launch for exactly this uid.
    pub fn hello(&self, nonce: &str, peer_uid: u32) -> Handshake {
        let map = self.pending_map();
        match map.get(nonce) {
            Some(p) if p.uid == peer_uid => Handshake::Accepted(p.setup.clone()),
            Some(p) => {
                tracing::warn!(peer_uid, expected = p.uid, "instance handshake from the wrong uid refused");
                Handshake::Refused("not the launched process".into())
            }
            None => Handshake::Refused("unknown or used launch nonce".into()),
        }
    }

    /// The instance listens: the launch is complete. Returns false if the nonce/uid/port do not match.
    pub fn ready(&self, nonce: &str, peer_uid: u32, port: u16) -> bool {
        let mut map = self.pending_map();
        match map.get(nonce) {
            Some(p) if p.uid == peer_uid && p.setup.port == port => {
                let mut p = map.remove(nonce).expect("present");
                if let Some(tx) = p.ready.take() {
                    let _ = tx.send(());
                }
                true
            }
            _ => false,
        }
    }

    /// The instance's control connection closed. If the server did not stop it, it crashed: the slot is
    /// freed and the crash reported for a restart after the backoff.
    pub async fn exited(&self, uid: u32, nonce: &str) {
        let slot = self.slot(uid);
        let mut slot = slot.lock().await;
        if slot.running.as_ref().is_none_or(|r| r.nonce != nonce) {
            return;
        }
        let r = slot.running.take().expect("checked");
        self.release_port(r.port);
        slot.crashes = if r.started.elapsed() >= HEALTHY_RUN { 1 } else { slot.crashes + 1 };
        slot.last_crash = Some(Instant::now());
        tracing::warn!(unix_user = r.unix_user, port = r.port, crashes = slot.crashes, "instance exited unexpectedly");
        let _ = self.crashes.send((uid, r.unix_user.clone()));
        reap(r, "crashed");
    }

    /// How long to wait before restarting `uid`'s crashed instance.
    pub async fn backoff(&self, uid: u32) -> Duration {
        self.slot(uid).lock().await.backoff_left().unwrap_or_default()
    }

    /// Stops `uid`'s instance if it runs (its user was disconnected, or it must restart).
    pub async fn stop(&self, uid: u32, why: &str) -> bool {
        let slot = self.slot(uid);
        let mut slot = slot.lock().await;
        match slot.running.take() {
            Some(r) => {
                tracing::info!(unix_user = r.unix_user, port = r.port, why, "stopping instance");
                self.release_port(r.port);
                reap(r, why);
                true
            }
            None => false,
        }
    }

    /// Stops instances idle longer than `idle` (if set) and those whose user's unix groups changed. Returns
    /// the latter (uid, unix user): they should start again right away. Slots busy starting are skipped.
    pub fn sweep(&self, idle: Option<Duration>) -> Vec<Crash> {
        let slots: Vec<(u32, Arc<tokio::sync::Mutex<Slot>>)> =
            self.slots.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut restart = Vec::new();
        for (uid, slot) in slots {
            let Ok(mut slot) = slot.try_lock() else { continue };
            let Some(r) = &slot.running else { continue };
            let why = if idle.is_some_and(|idle| r.last_used.elapsed() >= idle) {
                "idle"
            } else if groups_of(&r.unix_user) != r.groups {
                "unix groups changed"
            } else {
                continue;
            };
            let r = slot.running.take().expect("checked");
            tracing::info!(unix_user = r.unix_user, port = r.port, why, "stopping instance");
            self.release_port(r.port);
            if why != "idle" {
                restart.push((uid, r.unix_user.clone()));
            }
            reap(r, why);
        }
        restart
    }

    pub async fn list(&self) -> Vec<InstanceInfo> {
        let slots: Vec<(u32, Arc<tokio::sync::Mutex<Slot>>)> =
            self.slots.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut out = Vec::new();
        for (uid, slot) in slots {
            if let Some(r) = &slot.lock().await.running {
                out.push(InstanceInfo {
                    unix_user: r.unix_user.clone(),
                    uid,
                    port: r.port,
                    pid: r.pid.map(|p| p as i32),
                    up_secs: r.started.elapsed().as_secs(),
                    idle_secs: r.last_used.elapsed().as_secs(),
                });
            }
        }
        out.sort_by_key(|i| i.port);
        out
    }

    /// Stops every instance and waits (a little) for them to exit.
    pub async fn stop_all(&self) {
        let slots: Vec<Arc<tokio::sync::Mutex<Slot>>> =
            self.slots.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut exits = Vec::new();
        for slot in slots {
            let mut slot = slot.lock().await;
            if let Some(r) = slot.running.take() {
                self.release_port(r.port);
                exits.push(reap(r, "server stopping"));
            }
        }
        for exit in exits {
            let _ = exit.await;
        }
    }

    /// The lowest pool port neither given to an instance nor taken by anything else on the machine.
    fn allocate_port(&self) -> Option<u16> {
        let mut ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        let port = (0..self.max)
            .map(|i| self.first_port + i)
            .filter(|p| !ports.contains(p))
            .find(|p| std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, *p)).is_ok())?;
        ports.insert(port);
        Some(port)
    }

    fn release_port(&self, port: u16) {
        self.ports.lock().unwrap_or_else(|p| p.into_inner()).remove(&port);
    }
}

impl Slot {
    fn backoff_left(&self) -> Option<Duration> {
        let last = self.last_crash?;
        if self.crashes == 0 {
            return None;
        }
        let backoff = Duration::from_secs(1 << (self.crashes - 1).min(6)).min(MAX_BACKOFF);
        backoff.checked_sub(last.elapsed()).filter(|d| !d.is_zero())
    }
}

/// Closes the instance's stdin (it exits by itself) and reaps it, killing it if it lingers.
fn reap(r: Running, why: &str) -> tokio::task::JoinHandle<()> {
    let Running { stdin, mut child, unix_user, .. } = r;
    drop(stdin);
    let why = why.to_string();
    tokio::spawn(async move {
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(_) => tracing::debug!(unix_user, why, "instance exited"),
            Err(_) => {
                tracing::warn!(unix_user, why, "instance did not exit in time; killing it");
                let _ = child.kill().await;
            }
        }
    })
}

/// The groups a process started as `unix_user` gets (primary and supplementary), sorted.
pub fn groups_of(unix_user: &str) -> Vec<u32> {
    let Some(user) = nix::unistd::User::from_name(unix_user).ok().flatten() else { return Vec::new() };
    let Ok(name) = std::ffi::CString::new(unix_user) else { return Vec::new() };
    let mut groups: Vec<u32> = nix::unistd::getgrouplist(&name, user.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    groups.sort_unstable();
    groups.dedup();
    groups
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
