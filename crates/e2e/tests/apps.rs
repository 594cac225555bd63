//! Applications on the real cluster: a template with file, text, integer and boolean parameters runs and
//! receives every value verbatim; a hostile text value executes nothing and adds no `#SBATCH` directive;
//! file parameters outside the user's drive are refused before `sbatch`. And jobs submitted with plain
//! `sbatch` by a connected user appear in UCloud when `[slurm] outside_jobs` is on, and only then.


use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use protocol::JobState;
use serde_json::{json, Value};

const APPS: &str = r#"
[applications.show-params]
modules = []
invocation = "printf '%s\\0' {{ note }} {{ n }} {{ verbose }} {{ input }} > args.bin; cat {{ input }} > copied.txt"
"#;

const MARKER: &str = "/tmp/ucim-e2e-apps-pwned";
const NASTY: &str = "$(touch /tmp/ucim-e2e-apps-pwned) `touch /tmp/ucim-e2e-apps-pwned` it's \"quoted\" \\ $HOME\n#SBATCH --mem=999G\nnext; touch /tmp/ucim-e2e-apps-pwned";

fn file(path: &str) -> Value {
    json!({"type": "file", "path": path, "readOnly": false, "mountPath": ""})
}

/// A folder in alice's home with an input file and a symlink leading out of the home.
fn alice_files(name: &str) -> String {
    let rel = format!("ucim-e2e-{name}-{}", std::process::id());
    let dir = home_of("alice").join(&rel);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("in.txt"), "input data\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("escape")).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let ok = Command::new("chown").args(["-hR", "alice:alice"]).arg(&dir).status().unwrap().success();
    assert!(ok);
    rel
}

fn no_slurm_job_named(name: &str) -> bool {
    let out = Command::new("squeue").args(["-h", "-t", "all", "-n", name, "-o", "%A"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

#[tokio::test]
async fn template_parameters_arrive_verbatim_and_execute_nothing() {
    if !enabled() {
        return;
    }
    let _ = std::fs::remove_file(MARKER);
    let stack = Stack::start_with("apps", 48000, Options { server: APPS.into(), ..Default::default() }).await;
    stack.map("alice#1234", "alice");
    let rel = alice_files("apps");
    let params = json!({
        "note": text(NASTY),
        "n": int(-7),
        "verbose": {"type": "boolean", "value": true},
        "input": file(&format!("/3/{rel}/in.txt")),
    });
    let (job, answer) = stack.submit("alice#1234", "show-params", params, 5).await;
    assert!(answer.accepted_by_core(), "{answer:?}\n{}", stack.server_log());
    stack.wait_state(&job, JobState::Success, 60).await;

    let dir = stack.job_dir("alice", &job);
    let args = std::fs::read(dir.join("args.bin")).expect("the job wrote its arguments");
    let args: Vec<String> = args.split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    let input = home_of("alice").join(&rel).join("in.txt");
    assert_eq!(args, [NASTY, "-7", "true", input.to_str().unwrap(), ""]);
    assert_eq!(std::fs::read_to_string(dir.join("copied.txt")).unwrap(), "input data\n");
    assert!(!Path::new(MARKER).exists(), "a parameter value executed");
    // The newline + `#SBATCH` in the value is no directive: the job got the product's 1 GiB.
    let slurm_id = stack.slurm_id(&job);
    // (slurmdbd may answer late or not at all while the cluster is busy: ask a few times.)
    let mut tres = String::new();
    for _ in 0..20 {
        let out = Command::new("sacct").args(["-X", "-n", "-P", "-j", &slurm_id.to_string(), "-o", "ReqTRES"]).output().unwrap();
        tres = format!("{}{}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim());
        if tres.contains("mem=") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(tres.contains("mem=1G") || tres.contains("mem=1024M"), "ReqTRES {tres:?}");

    // Outside the drive: `..`, a symlink out of it, a path that is no UCloud path. Refused with 400 before
    // sbatch (the Core deletes the job; Slurm never sees one).
    for path in [format!("/3/{rel}/../../../etc/passwd"), format!("/3/{rel}/escape"), "/etc/passwd".to_string()] {
        let params = json!({"note": text("x"), "n": int(1), "verbose": {"type": "boolean", "value": false}, "input": file(&path)});
        let (job, answer) = stack.submit("alice#1234", "show-params", params, 5).await;
        assert_eq!(answer.status, 400, "{path}: {answer:?}");
        assert!(answer.why().unwrap_or_default().contains("File parameter 'input'"), "{path}: {answer:?}");
        assert!(no_slurm_job_named(&format!("ucloud-{job}")), "{path}: a Slurm job exists");
    }
    let _ = std::fs::remove_dir_all(home_of("alice").join(&rel));
}

/// `sbatch --wrap 'sleep 5'` as alice; returns the Slurm id.
fn sbatch_as_alice() -> u64 {
    let out = Command::new("runuser")
        .args(["-u", "alice", "--", "sbatch", "--parsable", "-p", "cpu", "-c", "1", "--mem=100M", "-t", "2"])
        .args(["-J", "outside-e2e", "-o", "/dev/null", "--chdir", "/tmp", "--wrap", "sleep 5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().split(';').next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("sbatch: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

/// The UCloud job the server registered for `slurm_id`, if any (found by its first status).
fn registered(stack: &Stack, slurm_id: u64) -> Option<String> {
    let words = format!("Found in Slurm as job {slurm_id},");
    stack.sim.received_updates().into_iter().find(|u| u.update.status.as_deref().is_some_and(|s| s.contains(&words))).map(|u| u.id)
}

#[tokio::test]
async fn outside_jobs_appear_when_enabled() {
    if !enabled() {
        return;
    }
    let stack = Stack::start_with("outside-on", 48100, Options { slurm: "outside_jobs = true".into(), ..Default::default() }).await;
    stack.map("alice#1234", "alice");
    let slurm_id = sbatch_as_alice();
    let mut job = None;
    for _ in 0..100 {
        job = registered(&stack, slurm_id);
        if job.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = job.unwrap_or_else(|| panic!("Slurm job {slurm_id} was not registered\n{}", stack.server_log()));
    let record = stack.sim.job(&job).expect("the Core has the job");
    assert_eq!(record["owner"]["createdBy"], "alice#1234");
    assert_eq!(record["providerGeneratedId"], slurm_id.to_string());
    assert_eq!(record["specification"]["product"]["id"], "cpu-1");
    stack.wait_state(&job, JobState::Success, 60).await;
    assert_eq!(stack.states(&job), [JobState::Running, JobState::Success]);
}

#[tokio::test]
async fn outside_jobs_stay_outside_when_disabled() {
    if !enabled() {
        return;
    }
    let stack = Stack::start("outside-off", 48200).await;
    stack.map("alice#1234", "alice");
    // A UCloud job keeps the monitor polling, so the outside job would be seen if it were looked for.
    let (ucloud_job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": int(8)}), 5).await;
    assert!(answer.accepted_by_core(), "{answer:?}");
    let slurm_id = sbatch_as_alice();
    stack.wait_state(&ucloud_job, JobState::Success, 60).await;
    assert_eq!(registered(&stack, slurm_id), None);
    assert_eq!(stack.sim.received_updates().iter().filter(|u| u.id != ucloud_job).count(), 0);
}
