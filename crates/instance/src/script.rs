//! A job's batch script and `sbatch` arguments, from the product, the application and the parameters.
//!
//! Who controls what: `#SBATCH` lines, modules, environment, the script body and the invocation template
//! come from the operator's config; parameter values come from the user and reach the script only as
//! single-quoted words (`export UCLOUD_PARAM_x='…'` and the rendered invocation). File parameters arrive as
//! UCloud paths and are resolved to local paths (and checked) by the caller's resolver before anything runs.

use std::path::{Path, PathBuf};

use config::{Application, Product};
use protocol::AppParameterValue;
use serde_json::Value;
use slurm::TemplateValue;

/// Parameters the Core injects that are not the application's.
pub const CORE_INJECTED: &[&str] = &["ucMetricSampleRate"];
/// Longest text value passed to a job.
const MAX_VALUE: usize = 64 * 1024;

/// Turns a UCloud path (`/<driveId>/rel`) into a local path the user may use, or says why not.
pub type FileResolver<'a> = dyn Fn(&str) -> Result<PathBuf, String> + 'a;

/// Everything about one job that is not its parameters.
pub struct JobShape<'a> {
    pub ucloud_id: &'a str,
    pub product: &'a Product,
    pub app: &'a Application,
    pub replicas: i64,
    pub minutes: i64,
    pub dir: &'a Path,
    pub account: Option<&'a str>,
}

/// The typed value of each parameter, in name order; file paths resolved.
pub fn typed_parameters(
    parameters: &std::collections::BTreeMap<String, AppParameterValue>,
    resolve: &FileResolver<'_>,
) -> Result<Vec<(String, TemplateValue)>, String> {
    let mut out = Vec::with_capacity(parameters.len());
    for (name, value) in parameters {
        if CORE_INJECTED.contains(&name.as_str()) {
            continue;
        }
        if !slurm::valid_env_name(name) || name.len() > 64 {
            return Err(format!("Parameter name '{name}' is not allowed"));
        }
        let typed = match (value.kind.as_str(), &value.value) {
            ("text" | "textarea", Value::String(s)) => TemplateValue::Text(s.clone()),
            ("integer", Value::Number(n)) if n.is_i64() => TemplateValue::Integer(n.as_i64().unwrap_or_default()),
            ("floating_point", Value::Number(n)) if n.as_f64().is_some_and(f64::is_finite) => {
                TemplateValue::Float(n.as_f64().unwrap_or_default())
            }
            ("boolean", Value::Bool(b)) => TemplateValue::Bool(*b),
            ("file", _) => {
                let path = value.path.as_deref().ok_or_else(|| format!("File parameter '{name}' has no path"))?;
                let local = resolve(path).map_err(|why| format!("File parameter '{name}': {why}"))?;
                let local = local.to_str().ok_or_else(|| format!("File parameter '{name}': the path is not UTF-8"))?;
                TemplateValue::Text(local.to_string())
            }
            (kind @ ("text" | "textarea" | "integer" | "floating_point" | "boolean"), v) => {
                return Err(format!("Parameter '{name}' of type {kind} has a malformed value {v}"));
            }
            (kind, _) => return Err(format!("Parameter '{name}': type '{kind}' is not supported here yet")),
        };
        if let TemplateValue::Text(s) = &typed {
            if s.contains('\0') || s.len() > MAX_VALUE {
                return Err(format!("Parameter '{name}' has a value that cannot be passed to a job"));
            }
        }
        out.push((name.clone(), typed));
    }
    Ok(out)
}

/// The exported form of a value: what `$UCLOUD_PARAM_x` holds.
fn env_text(value: &TemplateValue) -> String {
    match value {
        TemplateValue::Text(s) => s.clone(),
        TemplateValue::Integer(i) => i.to_string(),
        TemplateValue::Float(f) => f.to_string(),
        TemplateValue::Bool(b) => b.to_string(),
    }
}

/// The `sbatch` arguments: ucim's own resources. They win over any `#SBATCH` line of the same option.
pub fn sbatch_args(shape: &JobShape<'_>) -> Vec<String> {
    let p = shape.product;
    let dir = shape.dir;
    let mut args = vec![
        format!("--job-name=ucloud-{}", shape.ucloud_id),
        format!("--partition={}", p.partition),
        format!("--nodes={}", shape.replicas),
        "--ntasks-per-node=1".to_string(),
        format!("--cpus-per-task={}", p.cpus),
        format!("--mem={}G", p.memory_gb),
        format!("--time={}", shape.minutes),
        format!("--chdir={}", dir.display()),
        format!("--output={}", dir.join("stdout.txt").display()),
        format!("--error={}", dir.join("stderr.txt").display()),
    ];
    if p.gpus > 0 {
        args.push(format!("--gres=gpu:{}", p.gpus));
    }
    if let Some(qos) = &p.qos {
        args.push(format!("--qos={qos}"));
    }
    if let Some(constraint) = &p.constraint {
        args.push(format!("--constraint={constraint}"));
    }
    if let Some(account) = shape.account {
        args.push(format!("--account={account}"));
    }
    args
}

/// The batch script: operator directives, then exports (job id, parameters, the application's
/// environment), then module loads, the application's script and its rendered invocation.
pub fn job_script(shape: &JobShape<'_>, params: &[(String, TemplateValue)]) -> Result<slurm::ScriptSpec, String> {
    let app = shape.app;
    let directives = shape.product.sbatch.iter().chain(&app.sbatch).cloned().collect();
    let mut env = vec![("UCLOUD_JOB_ID".to_string(), shape.ucloud_id.to_string())];
    env.extend(params.iter().map(|(name, v)| (format!("UCLOUD_PARAM_{name}"), env_text(v))));
    env.extend(app.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut body = String::new();
    for module in &app.modules {
        let m = slurm::shell_quote(module);
        body.push_str(&format!("module load {m} || {{ echo \"ucim: module {m} could not be loaded\" >&2; exit 1; }}\n"));
    }
    if !app.script.trim().is_empty() {
        body.push_str(&app.script);
        if !body.ends_with('\n') {
            body.push('\n');
        }
    }
    if let Some(template) = &app.invocation {
        let line = slurm::render_template(template, params).map_err(|e| format!("Cannot build the command line: {e}"))?;
        body.push_str(&line);
        if !body.ends_with('\n') {
            body.push('\n');
        }
    }
    Ok(slurm::ScriptSpec { directives, env, body })
}

#[cfg(test)]
#[path = "script_tests.rs"]
mod tests;
