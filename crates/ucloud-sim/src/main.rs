//! `ucloud-sim`: run the stand-in UCloud Core, or drive a running one through its `/sim` control API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rand::RngCore;
use serde_json::{json, Map, Value};
use ucloud_sim::{Sim, SimConfig};

#[derive(Parser)]
#[command(
    name = "ucloud-sim",
    about = "A stand-in UCloud Core for tests and demos (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Core endpoints and the /sim control API until interrupted.
    Serve {
        #[arg(long)]
        provider_id: String,
        #[arg(long, default_value = "127.0.0.1:8888")]
        listen: SocketAddr,
        #[arg(long, default_value = "http://127.0.0.1:8889")]
        provider_url: String,
        /// Holds private.pem, public.pem and public.b64 (generated if absent).
        #[arg(long)]
        key_dir: PathBuf,
        /// The provider's refresh token; created with a random 32-byte hex token (mode 0600) if missing.
        #[arg(long)]
        refresh_token_file: PathBuf,
        #[arg(long, default_value = "cloud.sdu.dk")]
        issuer: String,
    },
    /// Submit a job as a user: the sim sends jobs.create to the provider.
    CreateJob {
        #[arg(long, default_value = "http://127.0.0.1:8888")]
        sim: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        product: String,
        #[arg(long)]
        category: String,
        #[arg(long)]
        app: String,
        /// name=value; integers are sent as integer parameters, anything else as text.
        #[arg(long = "param")]
        params: Vec<String>,
        #[arg(long)]
        minutes: Option<i64>,
    },
    /// Terminate a job: the sim sends jobs.terminate to the provider.
    Terminate {
        #[arg(long, default_value = "http://127.0.0.1:8888")]
        sim: String,
        job_id: String,
    },
    /// Print a job's state and the updates the Core applied, as JSON.
    Job {
        #[arg(long, default_value = "http://127.0.0.1:8888")]
        sim: String,
        job_id: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            provider_id,
            listen,
            provider_url,
            key_dir,
            refresh_token_file,
            issuer,
        } => {
            let refresh_token = load_or_create_refresh_token(&refresh_token_file)?;
            let sim = Sim::start(SimConfig {
                provider_id,
                listen,
                provider_url,
                key_dir,
                refresh_token,
                issuer,
            })
            .await?;
            tracing::info!(
                url = %sim.url(),
                public_key = %sim.public_key_b64_path().display(),
                refresh_token_file = %refresh_token_file.display(),
                "ucloud-sim serving; Ctrl-C to stop"
            );
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::CreateJob {
            sim,
            user,
            product,
            category,
            app,
            params,
            minutes,
        } => {
            let mut parameters = Map::new();
            for p in &params {
                let Some((name, value)) = p.split_once('=') else {
                    bail!("--param wants name=value, got {p:?}")
                };
                let v = match value.parse::<i64>() {
                    Ok(n) => json!({"type": "integer", "value": n}),
                    Err(_) => json!({"type": "text", "value": value}),
                };
                parameters.insert(name.to_string(), v);
            }
            let time = minutes.map(|m| json!({"hours": m / 60, "minutes": m % 60, "seconds": 0}));
            let body = json!({
                "username": user,
                "product": {"id": product, "category": category},
                "application": app,
                "parameters": parameters,
                "timeAllocation": time,
            });
            let answer = request(
                reqwest::Method::POST,
                &format!("{}/sim/jobs", base(&sim)),
                Some(body),
            )
            .await?;
            println!("{}", answer["jobId"].as_str().unwrap_or_default());
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        Command::Terminate { sim, job_id } => {
            let url = format!("{}/sim/jobs/{job_id}/terminate", base(&sim));
            let answer = request(reqwest::Method::POST, &url, None).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        Command::Job { sim, job_id } => {
            let answer = request(
                reqwest::Method::GET,
                &format!("{}/sim/jobs/{job_id}", base(&sim)),
                None,
            )
            .await?;
            let out = json!({"state": answer["state"], "updates": answer["updates"]});
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

async fn request(method: reqwest::Method, url: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("contacting {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        bail!("{url}: {status}: {value}");
    }
    Ok(value)
}

/// Reads the refresh token, or writes a fresh random one (32 bytes, hex, like the Core's) with mode 0600.
fn load_or_create_refresh_token(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        let token =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let token = token.trim().to_string();
        if token.is_empty() {
            bail!("{} is empty", path.display());
        }
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{token}")?;
    Ok(token)
}
