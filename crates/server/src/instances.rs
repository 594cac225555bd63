//! Per-user instances: started with `sudo -n -u USER <instance_command> user` (the one sudo rule), one per
//! uid, on a loopback port from the pool. The launched process gets a one-time nonce on stdin and must
//! present it over the IPC socket from the right uid before it is given anything.
//!
//! An instance lives as long as its stdin and its control connection: when the server exits (cleanly or
//! killed) both close and the instance stops by itself.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipc::{Bootstrap, InstanceInfo, InstanceSetup};
use rand::RngCore;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

const START_TIMEOUT: Duration = Duration::from_secs(15);

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
}

#[derive(Default)]
pub struct Slot {
    running: Option<Running>,
}

struct Running {
    port: u16,
    unix_user: String,
    pid: Option<u32>,
    nonce: String,
    /// Dropping these ends the instance: its stdin closes.
    _stdin: ChildStdin,
    _child: Child,
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
}

/// What the IPC handshake needs from a launch.
pub enum Handshake {
    Accepted(InstanceSetup),
    Refused(String),
}

impl Instances {
    pub fn new(config: &config::Config) -> Instances {
        Instances {
            socket: config.server.socket.clone(),
            command: config.server.instance_command.clone(),
            first_port: config.server.first_instance_port,
            max: config.server.max_instances,
            slots: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            ports: Mutex::new(BTreeSet::new()),
        }
    }

    fn slot(&self, uid: u32) -> Arc<tokio::sync::Mutex<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(uid).or_default().clone()
    }

    /// The port of `uid`'s instance if it is running; never starts one.
    pub async fn port_if_running(&self, uid: u32) -> Option<u16> {
        let slot = self.slot(uid);
        let slot = slot.try_lock().ok()?;
        slot.running.as_ref().map(|r| r.port)
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
        if let Some(r) = &slot.running {
            return Ok(r.port);
        }
        let port = self.allocate_port().ok_or(StartError::NoPort)?;
        match self.launch(uid, unix_user, setup(port)).await {
            Ok(running) => {
                tracing::info!(unix_user, uid, port, pid = ?running.pid, "instance started");
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
        Ok(Running { port, unix_user: unix_user.to_string(), pid, nonce, _stdin: stdin, _child: child })
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

    /// The instance's control connection closed: it is gone. Frees the slot if it is still that instance.
    pub async fn exited(&self, uid: u32, nonce: &str) {
        let slot = self.slot(uid);
        let mut slot = slot.lock().await;
        if slot.running.as_ref().is_some_and(|r| r.nonce == nonce) {
            let r = slot.running.take().expect("checked");
            tracing::info!(unix_user = r.unix_user, port = r.port, "instance stopped");
            self.release_port(r.port);
        }
    }

    pub async fn list(&self) -> Vec<InstanceInfo> {
        let slots: Vec<(u32, Arc<tokio::sync::Mutex<Slot>>)> =
            self.slots.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut out = Vec::new();
        for (uid, slot) in slots {
            if let Some(r) = &slot.lock().await.running {
                out.push(InstanceInfo { unix_user: r.unix_user.clone(), uid, port: r.port, pid: r.pid.map(|p| p as i32) });
            }
        }
        out.sort_by_key(|i| i.port);
        out
    }

    /// Closes every instance's stdin; they exit on their own.
    pub async fn stop_all(&self) {
        let slots: Vec<Arc<tokio::sync::Mutex<Slot>>> =
            self.slots.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for slot in slots {
            let mut slot = slot.lock().await;
            if let Some(r) = slot.running.take() {
                self.release_port(r.port);
            }
        }
    }

    fn allocate_port(&self) -> Option<u16> {
        let mut ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        let port = (0..self.max).map(|i| self.first_port + i).find(|p| !ports.contains(p))?;
        ports.insert(port);
        Some(port)
    }

    fn release_port(&self, port: u16) {
        self.ports.lock().unwrap_or_else(|p| p.into_inner()).remove(&port);
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
