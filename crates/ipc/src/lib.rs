//! Server ⇄ instance (and ⇄ `ucim admin`) messages over a unix socket.
//!
//! Frames are a 4-byte big-endian length and a JSON body, at most [`MAX_FRAME`] bytes. Who is talking is
//! never taken from a message: the server reads the peer's uid from the kernel (`SO_PEERCRED`) when it
//! accepts a connection, and authorises every request against it.

mod messages;

use std::io;
use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

pub use messages::*;

/// Upper bound on one frame: requests are small; this stops a client from making the server allocate.
pub const MAX_FRAME: usize = 1 << 20;

/// The kernel's word on who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

pub struct Connection {
    stream: UnixStream,
}

impl Connection {
    pub async fn connect(path: &Path) -> io::Result<Connection> {
        Ok(Connection { stream: UnixStream::connect(path).await? })
    }

    pub fn peer(&self) -> io::Result<PeerCred> {
        let cred = self.stream.peer_cred()?;
        Ok(PeerCred { uid: cred.uid(), gid: cred.gid(), pid: cred.pid() })
    }

    pub async fn send<T: Serialize>(&mut self, message: &T) -> io::Result<()> {
        let body = serde_json::to_vec(message).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if body.len() > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "ipc frame too large"));
        }
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await
    }

    /// `Ok(None)` on a clean end of stream between frames.
    pub async fn receive<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("ipc frame of {len} bytes refused")));
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await?;
        serde_json::from_slice(&body).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// One request, one response.
    pub async fn call(&mut self, request: &Request) -> io::Result<Response> {
        self.send(request).await?;
        self.receive().await?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"))
    }
}

/// A client that keeps its connections: each call takes an idle connection (or opens one) and puts it
/// back once answered, so steady traffic costs no connect/accept/`SO_PEERCRED` per call. A connection is
/// only put back after a whole exchange, so a call cut short (its future dropped) never leaves half a
/// frame for the next one.
pub struct Client {
    path: std::path::PathBuf,
    idle: std::sync::Mutex<Vec<Connection>>,
}

/// Idle connections kept per client; more concurrent calls open (and then close) their own.
const IDLE_CONNECTIONS: usize = 8;

impl Client {
    pub fn new(path: impl Into<std::path::PathBuf>) -> Client {
        Client { path: path.into(), idle: std::sync::Mutex::new(Vec::new()) }
    }

    /// One request, one response. A failed call drops its connection.
    pub async fn call(&self, request: &Request) -> io::Result<Response> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => Connection::connect(&self.path).await?,
        };
        let response = conn.call(request).await?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
        Ok(response)
    }
}

/// The listening side. The socket file is made connectable by every local user: authorisation is per
/// request, from the peer's uid.
pub struct Listener {
    inner: UnixListener,
}

impl Listener {
    pub fn bind(path: &Path) -> io::Result<Listener> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let inner = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        Ok(Listener { inner })
    }

    pub async fn accept(&self) -> io::Result<(Connection, PeerCred)> {
        let (stream, _) = self.inner.accept().await?;
        let conn = Connection { stream };
        let peer = conn.peer()?;
        Ok((conn, peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_with_peer_credentials() {
        let (dir, path, listener) = temp_socket("ucim-ipc-test");
        let server = tokio::spawn(async move {
            let (mut conn, peer) = listener.accept().await.unwrap();
            let req: Request = conn.receive().await.unwrap().unwrap();
            assert_eq!(req, Request::ListUsers);
            conn.send(&Response::Error { message: format!("uid {}", peer.uid) }).await.unwrap();
            // Every response shape serialises (internally tagged enums cannot hold bare lists).
            let users = vec![UserInfo { ucloud_user: "a".into(), unix_user: "a".into(), uid: 1, source: "admin".into(), expires_at: None }];
            conn.send(&Response::Users { users }).await.unwrap();
            // A client that sends a huge length prefix is refused without allocating it.
            let (mut conn, _) = listener.accept().await.unwrap();
            let e = conn.receive::<Request>().await.unwrap_err();
            assert!(e.to_string().contains("refused"));
        });
        let mut client = Connection::connect(&path).await.unwrap();
        let resp = client.call(&Request::ListUsers).await.unwrap();
        let me = nix_uid();
        assert_eq!(resp, Response::Error { message: format!("uid {me}") });
        let users: Response = client.receive().await.unwrap().unwrap();
        assert!(matches!(users, Response::Users { users } if users.len() == 1));
        let mut raw = UnixStream::connect(&path).await.unwrap();
        raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        server.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_client_reuses_its_connection() {
        let (dir, path, listener) = temp_socket("ucim-ipc-client-test");
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    while let Ok(Some(Request::ListUsers)) = conn.receive::<Request>().await {
                        let _ = conn.send(&Response::Error { message: format!("connection {n}") }).await;
                    }
                });
            }
        });
        let client = Client::new(&path);
        for _ in 0..3 {
            assert_eq!(client.call(&Request::ListUsers).await.unwrap(), Response::Error { message: "connection 1".into() });
        }
        // Two calls at once: the second opens its own connection; both are kept.
        let (a, b) = tokio::join!(client.call(&Request::ListUsers), client.call(&Request::ListUsers));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh folder holding a bound socket; the test removes the folder.
    fn temp_socket(tag: &str) -> (std::path::PathBuf, std::path::PathBuf, Listener) {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = Listener::bind(&path).unwrap();
        (dir, path, listener)
    }

    fn nix_uid() -> u32 {
        // The test compares the kernel's answer with our own uid, read independently.
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}
