//! The ucim binary: `server` (the service), `ingress` (the public TLS entry point), `user` (a per-user instance, started by the server through
//! sudo), `connect` (a user redeems a connect ticket), and `admin` (operator commands over the server's
//! socket).

mod log;
mod tables;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ipc::{Request, Response};

#[derive(Parser)]
#[command(name = "ucim", version, about = "UCloud integration module for Slurm clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (as the service user, never as root).
    Server {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Run the public HTTPS entry point (`[ingress]` in the config), as the service user.
    Ingress {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Run a per-user instance. Started by the server through sudo; reads its bootstrap from stdin.
    User,
    /// Connect your UCloud account to your account here, with the ticket UCloud's connect page showed you.
    /// Run it as yourself: the account is the one running this command.
    Connect {
        #[arg(long, default_value = "/run/ucim/ucim.sock")]
        socket: PathBuf,
        ticket: String,
    },
    /// Show which UCloud users are connected to your account.
    Whoami {
        #[arg(long, default_value = "/run/ucim/ucim.sock")]
        socket: PathBuf,
    },
    /// Show one of your own UCloud jobs: its Slurm id and whether it ended. Answers only for the caller's jobs.
    Job {
        #[arg(long, default_value = "/run/ucim/ucim.sock")]
        socket: PathBuf,
        ucloud_id: String,
    },
    /// Operator commands, sent to the running server over its socket (as root or the service user).
    Admin {
        /// The server's socket (`server.socket` in the config).
        #[arg(long, default_value = "/run/ucim/ucim.sock")]
        socket: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Map a UCloud user to an existing unix user.
    Map { ucloud_user: String, unix_user: String },
    /// Remove a mapping (UCloud is not told; see `disconnect`).
    Unmap { ucloud_user: String },
    /// End a user's connection, in UCloud too (the user must connect again).
    Disconnect { ucloud_user: String },
    /// List user mappings.
    Users,
    /// List connections with their expiry, and open connect tickets.
    Connections,
    /// List running instances.
    Instances,
}

fn main() {
    let cli = Cli::parse();
    log::init(matches!(cli.command, Command::Ingress { .. }));
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server { config } => {
                refuse_root("ucim server")?;
                server::run(&config).await
            }
            Command::Ingress { config } => {
                refuse_root("ucim ingress")?;
                ingress::run(&config).await
            }
            Command::User => {
                refuse_root("ucim user")?;
                instance::run().await
            }
            Command::Connect { socket, ticket } => redeem(&socket, ticket).await,
            Command::Whoami { socket } => match connect(&socket).await?.call(&Request::WhoAmI).await? {
                Response::Users { users } if users.is_empty() => {
                    println!("No UCloud user is connected to your account.");
                    Ok(())
                }
                Response::Users { users } => {
                    tables::users(&users);
                    Ok(())
                }
                Response::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer: {other:?}"),
            },
            Command::Job { socket, ucloud_id } => show_job(&socket, ucloud_id).await,
            Command::Admin { socket, json, command } => admin(&socket, json, command).await,
        }
    });
    log::flush();
    if let Err(e) = result {
        eprintln!("ucim: {e:#}");
        std::process::exit(1);
    }
}

/// The module runs beside root, never as root: a bug in it must not be a root bug.
fn refuse_root(what: &str) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() || nix::unistd::getuid().is_root() {
        bail!("{what} refuses to run as root; run it as the service user (see README)");
    }
    Ok(())
}

async fn connect(socket: &std::path::Path) -> anyhow::Result<ipc::Connection> {
    ipc::Connection::connect(socket)
        .await
        .with_context(|| format!("cannot reach the ucim server at {} (is it running?)", socket.display()))
}

async fn redeem(socket: &std::path::Path, ticket: String) -> anyhow::Result<()> {
    match connect(socket).await?.call(&Request::RedeemTicket { ticket }).await? {
        Response::Connected { ucloud_user } => {
            let me = nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name).unwrap_or_default();
            println!("Connected: the UCloud user {ucloud_user} now works as '{me}' on this cluster. Go back to UCloud.");
            Ok(())
        }
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer: {other:?}"),
    }
}

async fn show_job(socket: &std::path::Path, ucloud_id: String) -> anyhow::Result<()> {
    match connect(socket).await?.call(&Request::LookupJob { ucloud_id }).await? {
        Response::Job(job) => {
            let slurm = job.slurm_id.map(|id| id.to_string()).unwrap_or_else(|| "-".into());
            println!("ucloud job {}  user {}  slurm job {}  {}", job.ucloud_id, job.ucloud_user, slurm, if job.ended { "ended" } else { "active" });
            Ok(())
        }
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer: {other:?}"),
    }
}

async fn admin(socket: &std::path::Path, json: bool, command: AdminCommand) -> anyhow::Result<()> {
    let request = match &command {
        AdminCommand::Map { ucloud_user, unix_user } => {
            Request::MapUser { ucloud_user: ucloud_user.clone(), unix_user: unix_user.clone() }
        }
        AdminCommand::Unmap { ucloud_user } => Request::UnmapUser { ucloud_user: ucloud_user.clone() },
        AdminCommand::Disconnect { ucloud_user } => Request::Disconnect { ucloud_user: ucloud_user.clone() },
        AdminCommand::Users => Request::ListUsers,
        AdminCommand::Connections => Request::ListConnections,
        AdminCommand::Instances => Request::ListInstances,
    };
    match connect(socket).await?.call(&request).await? {
        Response::Ok => {
            if json {
                println!("{{}}");
            } else {
                println!("ok");
            }
        }
        Response::Users { users } if json => println!("{}", serde_json::to_string_pretty(&users)?),
        Response::Users { users } => tables::users(&users),
        Response::Connections { users, tickets } if json => {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"connections": users, "tickets": tickets}))?)
        }
        Response::Connections { users, tickets } => tables::connections(&users, &tickets),
        Response::Instances { instances: list } if json => println!("{}", serde_json::to_string_pretty(&list)?),
        Response::Instances { instances: list } => tables::instances(&list),
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer: {other:?}"),
    }
    Ok(())
}
