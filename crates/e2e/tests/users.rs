//! Issue 4 end to end: connections with tickets, the account hook, many-to-one, IPC authorisation. Real
//! users (alice, bob, carol, mallory, ucimshared from dev/setup.sh), real sudo, real Slurm.


use std::process::{Command, Output};

use crate::common::*;
use protocol::JobState;
use reqwest::Method;
use serde_json::{json, Value};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ticket_options() -> Options {
    Options { users: "mode = \"ticket\"\nconnection_expiry_hours = 24".into(), ..Default::default() }
}

/// Runs SQL against the stack's database (root may; the server keeps running).
fn sql(stack: &Stack, statement: &str) {
    let db = rusqlite::Connection::open(stack.dir.join("db/ucim.sqlite3")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.execute(statement, []).unwrap();
}

async fn connect_for_ticket(stack: &Stack, ucloud_user: &str) -> String {
    let r = stack.sim.connect_user(ucloud_user).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    let to = r.body["redirectTo"].as_str().unwrap().to_string();
    let prefix = format!("{}/ucloud/{PROVIDER}/connection-instructions?ticket=", stack.provider_url);
    assert!(to.starts_with(&prefix), "{to}");
    to[prefix.len()..].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn ticket_connection_from_connect_to_unlink() {
    if !enabled() {
        return;
    }
    let stack = Stack::start_with("ticket", 43300, ticket_options()).await;
    let sock = stack.socket.to_str().unwrap().to_string();
    let manifest = stack.sim.call(Method::GET, "/integration/retrieveManifest", None, None).await.unwrap();
    assert_eq!(manifest.body, json!({"enabled": true, "expireAfterMs": 86_400_000}));

    let ticket = connect_for_ticket(&stack, "alice#1234").await;
    assert_eq!(ticket.len(), 40);
    // The instructions page: no Core token needed, shows the one command, locked down.
    let page_url = format!("{}/ucloud/{PROVIDER}/connection-instructions?ticket={ticket}", stack.provider_url);
    let page = reqwest::get(&page_url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("ucim connect {ticket}")), "{html}");
    assert!(html.contains("alice#1234"));
    let unknown = reqwest::get(format!("{}/ucloud/{PROVIDER}/connection-instructions?ticket={}", stack.provider_url, "0".repeat(40))).await.unwrap();
    assert_eq!(unknown.status(), 404);

    // Not connected yet: calls are refused and nothing starts.
    let (_, r) = stack.submit("alice#1234", "print-id", json!({}), 5).await;
    assert_eq!(r.status, 403, "{r:?}");

    // The wrong accounts: refused with a clear message, and nothing changes.
    let refusals: Vec<(Output, &str)> = vec![
        (Command::new(ucim()).args(["connect", "--socket", &sock, &ticket]).output().unwrap(), "system account"),
        (stack.ucim_as("mallory", &["connect", "--socket", &sock, &ticket]), "not in the group 'ucim-users'"),
        (stack.ucim_as("alice", &["connect", "--socket", &sock, "not-a-ticket"]), "not a connect ticket"),
        (stack.ucim_as("alice", &["connect", "--socket", &sock, &"ab".repeat(20)]), "Unknown ticket"),
    ];
    for (out, expect) in &refusals {
        assert!(!out.status.success(), "{out:?}");
        assert!(stderr(out).contains(expect), "{expect}: {}", stderr(out));
    }
    // carol already stands for another UCloud user: one account, one UCloud user.
    stack.map("carol#5", "carol");
    let out = stack.ucim_as("carol", &["connect", "--socket", &sock, &ticket]);
    assert!(stderr(&out).contains("already connected to the UCloud user carol#5"), "{}", stderr(&out));
    assert!(!stack.sim.is_connected("alice#1234"));
    assert!(!stdout(&stack.admin(&["users"])).contains("alice#1234"));

    // The Core is down when alice redeems: undone, and the same ticket works afterwards.
    stack.sim.set_unavailable(true);
    let out = stack.ucim_as("alice", &["connect", "--socket", &sock, &ticket]);
    assert!(stderr(&out).contains("nothing changed"), "{}", stderr(&out));
    assert!(!stdout(&stack.admin(&["users"])).contains("alice#1234"));
    stack.sim.set_unavailable(false);

    // The right account, as itself.
    let out = stack.ucim_as("alice", &["connect", "--socket", &sock, &ticket.to_uppercase()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("alice#1234 now works as 'alice'"), "{}", stdout(&out));
    assert!(stack.sim.is_connected("alice#1234"), "approveConnection reached the Core");
    let users: Value = serde_json::from_slice(&stack.admin(&["--json", "users"]).stdout).unwrap();
    let alice = users.as_array().unwrap().iter().find(|u| u["ucloud_user"] == "alice#1234").unwrap();
    assert_eq!(alice["unix_user"], "alice");
    assert_eq!(alice["source"], "ticket");
    assert!(alice["expires_at"].as_i64().unwrap() > 0);
    let whoami = stack.ucim_as("alice", &["whoami", "--socket", &sock]);
    assert!(stdout(&whoami).contains("alice#1234") && !stdout(&whoami).contains("carol#5"), "{whoami:?}");

    // Twice: refused.
    let again = stack.ucim_as("bob", &["connect", "--socket", &sock, &ticket]);
    assert!(stderr(&again).contains("already been used"), "{}", stderr(&again));
    assert!(reqwest::get(&page_url).await.unwrap().text().await.unwrap().contains("Connected"));

    // Connected: a job runs as alice.
    let (job, r) = stack.submit("alice#1234", "print-id", json!({}), 5).await;
    assert!(r.accepted_by_core(), "{r:?}");
    stack.wait_state(&job, JobState::Success, 60).await;
    let out = std::fs::read_to_string(stack.job_dir("alice", &job).join("stdout.txt")).unwrap();
    assert!(out.contains("(alice)"), "{out}");

    // An expired ticket: refused, nothing mapped.
    let bob_ticket = connect_for_ticket(&stack, "bob#77").await;
    sql(&stack, "UPDATE tickets SET expires_at = 1 WHERE ucloud_user = 'bob#77'");
    let out = stack.ucim_as("bob", &["connect", "--socket", &sock, &bob_ticket]);
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    assert!(!stack.sim.is_connected("bob#77"));
    let open: Value = serde_json::from_slice(&stack.admin(&["--json", "connections"]).stdout).unwrap();
    assert!(open["tickets"].as_array().unwrap().is_empty(), "{open}");

    // A connection past its expiry stops working.
    sql(&stack, "UPDATE user_map SET expires_at = 1 WHERE ucloud_user = 'alice#1234'");
    let (_, r) = stack.submit("alice#1234", "print-id", json!({}), 5).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.why().unwrap().contains("expired"), "{r:?}");
    sql(&stack, "UPDATE user_map SET expires_at = NULL WHERE ucloud_user = 'alice#1234'");

    // Unlinked in UCloud: the mapping goes, and with it alice's instance.
    let r = stack.sim.unlink_user("alice#1234").await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    assert!(!stdout(&stack.admin(&["users"])).contains("alice#1234"));
    assert!(!stdout(&stack.admin(&["instances"])).contains("alice"), "{}", stdout(&stack.admin(&["instances"])));
    let (_, r) = stack.submit("alice#1234", "print-id", json!({}), 5).await;
    assert_eq!(r.status, 403, "{r:?}");

    // An operator's disconnect reaches the Core too.
    let ticket = connect_for_ticket(&stack, "bob#1").await;
    assert!(stack.ucim_as("bob", &["connect", "--socket", &sock, &ticket]).status.success());
    assert!(stack.sim.is_connected("bob#1"));
    let out = stack.admin(&["disconnect", "bob#1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stack.sim.is_connected("bob#1"));
    assert!(!stdout(&stack.admin(&["users"])).contains("bob#1"));

    // Every step is in the audit log.
    let audit = std::fs::read_to_string(stack.dir.join("db/audit.jsonl")).unwrap();
    for action in ["connect (ticket issued)", "redeem ticket", "unlinked", "disconnect", "POST /jobs"] {
        assert!(audit.contains(action), "{action} missing from the audit log:\n{audit}");
    }
}

/// A raw IPC exchange from a process running as `user`: length-prefixed JSON frames, as any local program
/// could send them, so the server's checks are tested without the `ucim` CLI's help.
fn ipc_as(user: &str, socket: &str, requests: &[Value]) -> Vec<Value> {
    const CLIENT: &str = r#"
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
for req in sys.argv[2:]:
    b = req.encode()
    s.sendall(struct.pack(">I", len(b)) + b)
    n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
    print(s.recv(n, socket.MSG_WAITALL).decode())
"#;
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", user, "--", "python3", "-c", CLIENT, socket]);
    for r in requests {
        cmd.arg(r.to_string());
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ipc_answers_by_peer_uid_only() {
    if !enabled() {
        return;
    }
    let stack = Stack::start("ipcauth", 43420).await;
    stack.map("alice#1234", "alice");
    stack.map("bob#1", "bob");
    let (job, r) = stack.submit("alice#1234", "print-id", json!({"seconds": int(60)}), 5).await;
    assert!(r.accepted_by_core(), "{r:?}");
    let sock = stack.socket.to_str().unwrap();
    let answers = ipc_as(
        "bob",
        sock,
        &[
            json!({"type": "register_job", "ucloud_id": "999999", "ucloud_user": "alice#1234"}),
            json!({"type": "lookup_job", "ucloud_id": job}),
            json!({"type": "request_cancel", "ucloud_id": job}),
            json!({"type": "abort_job", "ucloud_id": job}),
            json!({"type": "check_user", "ucloud_user": "alice#1234"}),
            json!({"type": "map_user", "ucloud_user": "alice#1234", "unix_user": "bob"}),
            json!({"type": "unmap_user", "ucloud_user": "alice#1234"}),
            json!({"type": "disconnect", "ucloud_user": "alice#1234"}),
            json!({"type": "list_users"}),
            json!({"type": "list_connections"}),
            json!({"type": "list_instances"}),
            json!({"type": "hello", "nonce": "guess"}),
            // An audit line in alice's name, from bob's uid.
            json!({"type": "audit", "ucloud_user": "alice#1234", "action": "POST /jobs/terminate", "ids": [job], "outcome": "200"}),
            json!({"type": "who_am_i"}),
        ],
    );
    for (i, a) in answers[..13].iter().enumerate() {
        assert_eq!(a["type"], "error", "request {i} was answered for bob: {a}");
    }
    let audit = std::fs::read_to_string(stack.dir.join("db/audit.jsonl")).unwrap_or_default();
    assert!(!audit.contains("POST /jobs/terminate"), "a forged audit line was written: {audit}");
    // bob learns about himself only.
    assert_eq!(answers[13]["users"].as_array().unwrap().len(), 1, "{}", answers[13]);
    assert_eq!(answers[13]["users"][0]["ucloud_user"], "bob#1");
    // Nothing changed for alice.
    let users = stdout(&stack.admin(&["users"]));
    assert!(users.contains("alice#1234") && users.contains("alice"), "{users}");
    let slurm_id = stack.slurm_id(&job);
    assert_ne!(squeue_state(slurm_id), "CANCELLED");
    assert!(ipc_as("alice", sock, &[json!({"type": "lookup_job", "ucloud_id": job})])[0]["type"] == "job");
    assert!(stack.sim.terminate_job(&job).await.unwrap().accepted_by_core());
}

fn userdel(name: &str) {
    let _ = Command::new("sacctmgr").args(["-i", "delete", "user", name]).output();
    let _ = Command::new("userdel").args(["-r", name]).output();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_account_hook_makes_accounts_and_never_takes_over_one() {
    if !enabled() {
        return;
    }
    let hook = "create_hook = [\"sudo\", \"-n\", \"/usr/local/lib/ucim/hooks/create-user\"]";
    let stack = Stack::start_with("hook", 43320, Options { users: format!("mode = \"hook\"\n{hook}"), ..Default::default() }).await;
    let tag = std::process::id() % 100_000;
    let fresh = format!("Zed.Hooktest#{tag}");
    let fresh_unix = format!("zedhooktest{tag}");
    // Someone already owns the name the rule gives this user: the hook must pick another.
    let taken_unix = format!("ykhook{tag}");
    let taken_ucloud = format!("YK-hook#{tag}");
    for u in [&fresh_unix, &taken_unix, &format!("{taken_unix}-2")] {
        userdel(u);
    }
    assert!(Command::new("useradd").args(["-M", &taken_unix]).status().unwrap().success());

    let r = stack.sim.connect_user(&fresh).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    // On a loaded machine the hook may outlast the answer window: then it finishes in the background.
    if r.body["redirectTo"] != stack.sim.url() {
        assert!(r.body["redirectTo"].as_str().unwrap().ends_with("/connection-instructions?pending"), "{r:?}");
        wait_connected(&stack, &fresh, 60).await;
    }
    assert!(stack.sim.is_connected(&fresh));
    let groups = stdout(&Command::new("id").args(["-nG", &fresh_unix]).output().unwrap());
    assert!(groups.contains("ucim-users"), "{groups}");
    let users = stdout(&stack.admin(&["users"]));
    assert!(users.lines().any(|l| l.contains(&fresh) && l.contains(&fresh_unix) && l.contains("hook")), "{users}");
    // The new account works: a job runs as it.
    let (job, r) = stack.submit(&fresh, "print-id", json!({}), 5).await;
    assert!(r.accepted_by_core(), "{r:?}");
    stack.wait_state(&job, JobState::Success, 60).await;
    // Connecting again finds the same account.
    assert!(stack.sim.connect_user(&fresh).await.unwrap().accepted_by_core());
    assert!(stdout(&stack.admin(&["users"])).contains(&fresh_unix));

    let r = stack.sim.connect_user(&taken_ucloud).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    wait_connected(&stack, &taken_ucloud, 60).await;
    let users = stdout(&stack.admin(&["users"]));
    assert!(users.lines().any(|l| l.contains(&taken_ucloud) && l.contains(&format!("{taken_unix}-2"))), "{users}");
    let untouched = stdout(&Command::new("id").args(["-nG", &taken_unix]).output().unwrap());
    assert!(!untouched.contains("ucim-users"), "the existing account was changed: {untouched}");

    for u in [&fresh_unix, &taken_unix, &format!("{taken_unix}-2")] {
        userdel(u);
    }
}

async fn wait_connected(stack: &Stack, ucloud_user: &str, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !stack.sim.is_connected(ucloud_user) {
        assert!(std::time::Instant::now() < deadline, "{ucloud_user} not connected within {secs}s:\n{}", stack.server_log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_hook_is_answered_in_time_and_connects_later() {
    if !enabled() {
        return;
    }
    let runs = format!("/tmp/ucim-e2e-slowhook-runs-{}", std::process::id());
    let _ = std::fs::remove_file(&runs);
    let hook = format!(r#"["/bin/sh", "-c", "echo run >> {runs}; sleep 6; echo '{{\"username\": \"bob\"}}'"]"#);
    let users = format!("mode = \"hook\"\nhook_timeout_secs = 30\ncreate_hook = {hook}");
    let stack = Stack::start_with("hookslow", 43440, Options { users, ..Default::default() }).await;
    let started = std::time::Instant::now();
    let r = stack.sim.connect_user("Slow#7").await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "answered after {:?}", started.elapsed());
    assert_eq!(r.status, 200, "{r:?}");
    let page = r.body["redirectTo"].as_str().unwrap().to_string();
    assert!(page.ends_with("/ucloud/e2e/connection-instructions?pending"), "{page}");
    assert!(!stack.sim.is_connected("Slow#7"), "approved before the account exists");
    // Connecting again meanwhile waits for the same hook run.
    let again = stack.sim.connect_user("Slow#7").await.unwrap();
    assert_eq!(again.body["redirectTo"], page.as_str(), "{again:?}");
    let html = reqwest::get(&page).await.unwrap();
    assert_eq!(html.status(), 200);
    assert!(html.text().await.unwrap().contains("is being made"));
    wait_connected(&stack, "Slow#7", 30).await;
    assert!(stdout(&stack.admin(&["users"])).lines().any(|l| l.contains("Slow#7") && l.contains("bob")));
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1, "the hook ran once");
    let _ = std::fs::remove_file(&runs);
    let audit = std::fs::read_to_string(stack.dir.join("db/audit.jsonl")).unwrap();
    assert!(audit.lines().any(|l| l.contains("Slow#7") && l.contains("connect (hook)") && l.contains("\"ok\"")), "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_or_hanging_hooks_make_nothing() {
    if !enabled() {
        return;
    }
    let cases = [
        ("hookfail", 43340, r#"["/bin/sh", "-c", "echo 'useradd: cannot lock /etc/passwd' >&2; exit 3"]"#, "failed"),
        ("hookhang", 43341, r#"["/bin/sleep", "60"]"#, "did not answer within 2 s"),
        ("hookroot", 43342, r#"["/bin/sh", "-c", "echo '{\"username\": \"root\"}'"]"#, "below the minimum uid"),
        ("hookgarbage", 43343, r#"["/bin/echo", "yes"]"#, "not valid"),
    ];
    for (name, port, hook, expect) in cases {
        let users = format!("mode = \"hook\"\nhook_timeout_secs = 2\ncreate_hook = {hook}");
        let stack = Stack::start_with(name, port, Options { users, ..Default::default() }).await;
        let started = std::time::Instant::now();
        let r = stack.sim.connect_user("Nina#42").await.unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{name} took {:?}", started.elapsed());
        assert_eq!(r.status, 500, "{name}: {r:?}");
        assert!(r.why().unwrap().contains("could not be made") && r.why().unwrap().contains(expect), "{name}: {r:?}");
        assert!(!stack.sim.is_connected("Nina#42"), "{name}");
        assert!(!stdout(&stack.admin(&["users"])).contains("Nina#42"), "{name}: half-made mapping");
        let (_, r) = stack.submit("Nina#42", "print-id", json!({}), 5).await;
        assert_eq!(r.status, 403, "{name}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn many_to_one_keeps_users_apart() {
    if !enabled() {
        return;
    }
    let users = "mode = \"many-to-one\"\nshared_user = \"ucimshared\"".to_string();
    let stack = Stack::start_with("manytoone", 43360, Options { users, ..Default::default() }).await;
    assert!(stack.server_log().contains("MANY-TO-ONE MODE"), "startup must say so loudly");
    for u in ["ann#1", "ben#2"] {
        let r = stack.sim.connect_user(u).await.unwrap();
        assert!(r.accepted_by_core(), "{r:?}");
        assert!(stack.sim.is_connected(u));
    }
    let (ann_job, r) = stack.submit("ann#1", "print-id", json!({"seconds": int(120)}), 5).await;
    assert!(r.accepted_by_core(), "{r:?}");
    stack.wait_state(&ann_job, JobState::Running, 60).await;
    let slurm_id = stack.slurm_id(&ann_job);
    // Slurm says RUNNING before slurmstepd has opened the output file.
    let out_path = stack.job_dir("ucimshared", &ann_job).join("stdout.txt");
    let read = || std::fs::read_to_string(&out_path).unwrap_or_default();
    wait_until("ann's job to print its id", 30, || read().contains("(ucimshared)")).await;

    // ben runs as the same unix user, so only ucim stands between him and ann's job.
    let job_json = stack.sim.job(&ann_job).unwrap();
    let r = stack.sim.call(Method::POST, "/jobs/terminate", Some("ben#2"), Some(json!({"items": [job_json]}))).await.unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(squeue_state(slurm_id), "RUNNING");
    assert_eq!(stack.sim.job_state(&ann_job), Some(JobState::Running));

    // ann can.
    assert!(stack.sim.terminate_job(&ann_job).await.unwrap().accepted_by_core());
    stack.wait_state(&ann_job, JobState::Success, 60).await;

    let audit = std::fs::read_to_string(stack.dir.join("db/audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ben_try = lines.iter().find(|l| l["ucloudUser"] == "ben#2" && l["action"] == "POST /jobs/terminate").expect("audited");
    assert_eq!(ben_try["outcome"], "404");
    assert_eq!(ben_try["ids"], json!([ann_job]));
    assert!(lines.iter().any(|l| l["ucloudUser"] == "ann#1" && l["action"] == "POST /jobs" && l["unixUser"] == "ucimshared"));
}
