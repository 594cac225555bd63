//! The site's account hook (`users.create_hook`): an executable run without a shell, given JSON about the
//! UCloud user on stdin, answering JSON naming the local account it made or found. Its stderr goes to the
//! log; it is killed if it takes longer than `users.hook_timeout_secs`.

use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest answer read from the hook.
const MAX_ANSWER: u64 = 64 * 1024;

/// What the hook is told. Fields the Core does not send on `integration/connect` are `null`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HookInput {
    pub ucloud_username: String,
    /// The name ucim's stated rule gives (see `users::suggested_unix_name`).
    pub suggested_username: String,
    /// The group the account must be in for ucim to use it.
    pub group: String,
    pub first_names: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub organization: Option<String>,
    pub project: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HookAnswer {
    pub username: String,
    #[serde(default)]
    pub uid: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HookError {
    #[error("the account hook could not be run: {0}")]
    Spawn(String),
    #[error("the account hook did not answer within {0} s")]
    Timeout(u64),
    #[error("the account hook failed ({status}): {last_line}")]
    Failed { status: String, last_line: String },
    #[error("the account hook's answer is not valid: {0}")]
    BadAnswer(String),
}

pub async fn run(argv: &[String], input: &HookInput, timeout: Duration) -> Result<HookAnswer, HookError> {
    let (program, args) = argv.split_first().ok_or_else(|| HookError::Spawn("no command configured".into()))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HookError::Spawn(format!("{program}: {e}")))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let json = serde_json::to_vec(input).expect("hook input serialises");
    let user = input.ucloud_username.clone();

    let work = async {
        // A hook that does not read its stdin must not block us: write and close in the background.
        tokio::spawn(async move {
            let _ = stdin.write_all(&json).await;
        });
        let mut answer = Vec::new();
        let read_out = async { (&mut stdout).take(MAX_ANSWER).read_to_end(&mut answer).await };
        let mut err_text = String::new();
        let read_err = async { (&mut stderr).take(MAX_ANSWER).read_to_string(&mut err_text).await };
        let _ = tokio::join!(read_out, read_err);
        let status = child.wait().await;
        (answer, err_text, status)
    };
    let (answer, err_text, status) = match tokio::time::timeout(timeout, work).await {
        Ok(done) => done,
        Err(_) => {
            // TERM first: a hook run through sudo passes it on; the kill-on-drop KILL only reaches sudo.
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
            }
            tracing::warn!(target: "ucim::hook", user, "account hook timed out after {} s", timeout.as_secs());
            return Err(HookError::Timeout(timeout.as_secs()));
        }
    };
    for line in err_text.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(target: "ucim::hook", user, "{line}");
    }
    let status = status.map_err(|e| HookError::Spawn(e.to_string()))?;
    if !status.success() {
        let last_line = err_text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)");
        return Err(HookError::Failed { status: status.to_string(), last_line: last_line.chars().take(300).collect() });
    }
    serde_json::from_slice(&answer).map_err(|e| HookError::BadAnswer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> HookInput {
        HookInput {
            ucloud_username: "Alice#1234".into(),
            suggested_username: "alice1234".into(),
            group: "ucim-users".into(),
            first_names: None,
            last_name: None,
            email: None,
            organization: None,
            project: None,
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn answers_and_failures() {
        let t = Duration::from_secs(5);
        // The hook sees the JSON on stdin and answers.
        let ok = run(&sh(r#"grep -q '"suggestedUsername":"alice1234"' && echo '{"username":"alice1234","uid":2001}'"#), &input(), t).await;
        assert_eq!(ok, Ok(HookAnswer { username: "alice1234".into(), uid: Some(2001) }));
        let failed = run(&sh("echo working >&2; echo 'useradd: group ucim-users does not exist' >&2; exit 6"), &input(), t).await;
        assert_eq!(
            failed,
            Err(HookError::Failed { status: "exit status: 6".into(), last_line: "useradd: group ucim-users does not exist".into() })
        );
        let garbage = run(&sh("echo not json"), &input(), t).await;
        assert!(matches!(garbage, Err(HookError::BadAnswer(_))), "{garbage:?}");
        let extra = run(&sh(r#"echo '{"username":"a","shell":"/bin/sh"}'"#), &input(), t).await;
        assert!(matches!(extra, Err(HookError::BadAnswer(_))), "unknown fields are refused: {extra:?}");
        let missing = run(&["/nonexistent/hook".to_string()], &input(), t).await;
        assert!(matches!(missing, Err(HookError::Spawn(_))), "{missing:?}");
    }

    #[tokio::test]
    async fn a_hanging_hook_is_stopped() {
        let started = std::time::Instant::now();
        let hung = run(&sh("exec sleep 30"), &input(), Duration::from_secs(1)).await;
        assert_eq!(hung, Err(HookError::Timeout(1)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
