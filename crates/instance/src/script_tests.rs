use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use protocol::AppParameterValue;
use serde_json::json;

fn make_product(gpus: u32) -> Product {
    Product {
        category: "cpu".into(),
        partition: "gpu".into(),
        cpus: 8,
        memory_gb: 32,
        gpus,
        price: 1,
        description: String::new(),
        qos: Some("normal".into()),
        constraint: Some("intel&ib".into()),
        sbatch: vec!["#SBATCH --exclusive".into()],
    }
}

fn app() -> Application {
    Application {
        script: "echo start\n".into(),
        invocation: Some("python3 {{ script }} --text {{ note }} --n {{ n }}{% if verbose %} --verbose{% endif %}".into()),
        modules: vec!["python/3.11".into()],
        environment: BTreeMap::from([("OMP_PROC_BIND".to_string(), "close".to_string())]),
        sbatch: vec!["#SBATCH --mail-type=END".into()],
    }
}

fn value(v: serde_json::Value) -> AppParameterValue {
    serde_json::from_value(v).unwrap()
}

/// A resolver that maps drive 7 to /home/alice, as the instance does for the home drive.
fn resolver(path: &str) -> Result<PathBuf, String> {
    match path.strip_prefix("/7/") {
        Some(rel) if !rel.split('/').any(|c| c == "..") => Ok(PathBuf::from("/home/alice").join(rel)),
        _ => Err("outside the user's drives".into()),
    }
}

fn params(note: &str) -> BTreeMap<String, AppParameterValue> {
    BTreeMap::from([
        ("script".to_string(), value(json!({"type": "file", "path": "/7/work/run.py", "readOnly": false}))),
        ("note".to_string(), value(json!({"type": "text", "value": note}))),
        ("n".to_string(), value(json!({"type": "integer", "value": 12}))),
        ("verbose".to_string(), value(json!({"type": "boolean", "value": true}))),
        ("ucMetricSampleRate".to_string(), value(json!({"type": "text", "value": "0ms"}))),
    ])
}

fn shape<'a>(product: &'a Product, app: &'a Application, dir: &'a Path) -> JobShape<'a> {
    JobShape { ucloud_id: "4821", product, app, replicas: 2, minutes: 90, dir, account: Some("proj1") }
}

/// Snapshot: an application with file, text, integer and boolean parameters renders exactly this script
/// (`script_snapshot.sh`). A change in rendering shows up as a diff of that file.
#[test]
fn renders_the_expected_script() {
    let (product, app) = (make_product(0), app());
    let dir = PathBuf::from("/home/alice/ucloud-jobs/4821");
    let shape = shape(&product, &app, &dir);
    let typed = typed_parameters(&params("it's $(id) `x`\n#SBATCH --mem=1T"), &resolver).unwrap();
    let script = slurm::render_script(&job_script(&shape, &typed).unwrap()).unwrap();
    assert_eq!(script, include_str!("script_snapshot.sh"));
}

#[test]
fn resources_become_sbatch_arguments() {
    let (product, app) = (make_product(2), app());
    let dir = PathBuf::from("/home/alice/ucloud-jobs/4821");
    let args = sbatch_args(&shape(&product, &app, &dir));
    assert_eq!(
        args,
        [
            "--job-name=ucloud-4821",
            "--partition=gpu",
            "--nodes=2",
            "--ntasks-per-node=1",
            "--cpus-per-task=8",
            "--mem=32G",
            "--time=90",
            "--chdir=/home/alice/ucloud-jobs/4821",
            "--output=/home/alice/ucloud-jobs/4821/stdout.txt",
            "--error=/home/alice/ucloud-jobs/4821/stderr.txt",
            "--gres=gpu:2",
            "--qos=normal",
            "--constraint=intel&ib",
            "--account=proj1",
        ]
    );
    // Without GPUs, QoS, constraint or account, none of their options appear.
    let plain = Product { qos: None, constraint: None, ..make_product(0) };
    let args = sbatch_args(&JobShape { account: None, ..shape(&plain, &app, &dir) });
    assert!(!args.iter().any(|a| a.starts_with("--gres") || a.starts_with("--qos") || a.starts_with("--constraint") || a.starts_with("--account")), "{args:?}");
}

#[test]
fn bad_parameters_are_refused() {
    let refuse = |name: &str, v: serde_json::Value, words: &str| {
        let p = BTreeMap::from([(name.to_string(), value(v))]);
        let e = typed_parameters(&p, &resolver).unwrap_err();
        assert!(e.contains(words), "{name}: {e}");
    };
    refuse("f", json!({"type": "file", "path": "/8/other-drive/x"}), "outside the user's drives");
    refuse("f", json!({"type": "file", "path": "/7/../../etc/passwd"}), "outside");
    refuse("f", json!({"type": "file"}), "has no path");
    refuse("n", json!({"type": "integer", "value": "12"}), "malformed");
    refuse("n", json!({"type": "integer", "value": 1.5}), "malformed");
    refuse("b", json!({"type": "boolean", "value": "true"}), "malformed");
    refuse("t", json!({"type": "text", "value": "a\u{0}b"}), "cannot be passed");
    refuse("bad-name", json!({"type": "text", "value": "x"}), "not allowed");
    refuse("p", json!({"type": "peer", "hostname": "db", "jobId": "1"}), "not supported");
}

#[test]
fn a_template_needing_a_missing_parameter_is_a_clear_error() {
    let (product, app) = (make_product(0), app());
    let dir = PathBuf::from("/tmp/x");
    let mut p = params("x");
    p.remove("n");
    let typed = typed_parameters(&p, &resolver).unwrap();
    let e = job_script(&shape(&product, &app, &dir), &typed).unwrap_err();
    assert!(e.contains("needs a parameter"), "{e}");
}
