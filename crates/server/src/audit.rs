//! The audit log: one JSON line per user call and per connection change, appended by the server (which
//! sees every call before an instance does). In many-to-one mode it is the only record of which UCloud
//! user did what, so there it must be writable at start.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

pub struct Audit {
    file: Mutex<Option<std::fs::File>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event<'a> {
    pub ucloud_user: &'a str,
    pub unix_user: Option<&'a str>,
    /// `POST /jobs`, `connect`, `redeem-ticket`, …
    pub action: &'a str,
    /// Resource ids the call named, when it named any.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub ids: &'a [String],
    pub outcome: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    at: i64,
    #[serde(flatten)]
    event: &'a Event<'a>,
    /// Who saw the call: absent for the server itself, `instance` for a call an instance answered
    /// directly (routed there by the ingress) and reported over the socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<&'a str>,
}

impl Audit {
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Audit { file: Mutex::new(Some(file)) })
    }

    pub fn disabled() -> Audit {
        Audit { file: Mutex::new(None) }
    }

    pub fn record(&self, event: &Event<'_>) {
        self.write(&Line { at: store::now_ms(), event, via: None });
    }

    /// A call an instance answered without the server seeing it.
    pub fn record_from_instance(&self, event: &Event<'_>) {
        self.write(&Line { at: store::now_ms(), event, via: Some("instance") });
    }

    fn write(&self, line: &Line<'_>) {
        let mut line = serde_json::to_vec(line).expect("audit line serialises");
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = file.as_mut() {
            // One write per line: O_APPEND keeps lines whole even with other writers.
            if let Err(e) = f.write_all(&line) {
                tracing::error!("audit log write failed: {e}");
            }
        }
    }
}
