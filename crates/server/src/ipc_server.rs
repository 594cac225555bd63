//! The server's side of the unix socket. Every request is authorised from the peer uid the kernel
//! reports, never from anything in the message.

use std::sync::Arc;

use ipc::{Connection, JobInfo, PeerCred, Request, Response};
use store::{Inserted, JobLimits};

use crate::connect;
use crate::instances::Handshake;
use crate::monitor::{phase_to_text, submitted_update};
use crate::Server;

pub async fn serve(server: Arc<Server>, listener: ipc::Listener) {
    loop {
        match listener.accept().await {
            Ok((conn, peer)) => {
                tokio::spawn(connection(server.clone(), conn, peer));
            }
            Err(e) => {
                tracing::warn!("ipc accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(server: Arc<Server>, mut conn: Connection, peer: PeerCred) {
    // A launched instance's control connection: Hello, Ready, then silence until it exits.
    let mut control: Option<String> = None;
    loop {
        let request = match conn.receive::<Request>().await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(uid = peer.uid, "ipc: bad request: {e}");
                break;
            }
        };
        let response = match request {
            Request::Hello { nonce } => match server.instances.hello(&nonce, peer.uid) {
                Handshake::Accepted(setup) => {
                    control = Some(nonce);
                    Response::Setup(Box::new(setup))
                }
                Handshake::Refused(why) => Response::Error { message: why },
            },
            Request::Ready { port } => match &control {
                Some(nonce) if server.instances.ready(nonce, peer.uid, port) => Response::Ok,
                _ => Response::Error { message: "Ready without a valid Hello".into() },
            },
            other => handle(&server, peer, other).await,
        };
        if conn.send(&response).await.is_err() {
            break;
        }
    }
    if let Some(nonce) = control {
        server.instances.exited(peer.uid, &nonce).await;
    }
}

fn error(message: impl Into<String>) -> Response {
    Response::Error { message: message.into() }
}

/// uid 0 and the service user itself may administer.
fn is_admin(peer: PeerCred) -> bool {
    peer.uid == 0 || peer.uid == nix::unistd::geteuid().as_raw()
}

pub async fn handle(server: &Arc<Server>, peer: PeerCred, request: Request) -> Response {
    let store = &server.store;
    match request {
        Request::Hello { .. } | Request::Ready { .. } => error("unexpected handshake message"),
        Request::RegisterJob { ucloud_id, ucloud_user, memory_mb, time_limit_minutes } => {
            if !server.users.maps_to(&ucloud_user, peer.uid) {
                tracing::warn!(uid = peer.uid, ucloud_user, "refused to register a job for another user");
                return error(format!("{ucloud_user} is not mapped to uid {}", peer.uid));
            }
            let queued = phase_to_text(&slurm::watch::Phase::Queued);
            match store.insert_job(&ucloud_id, &ucloud_user, peer.uid, &queued, JobLimits { memory_mb, time_limit_minutes }) {
                Ok(Inserted::New) => Response::Ok,
                Ok(Inserted::Existing(row)) if row.uid != peer.uid => error(format!("Job {ucloud_id} belongs to someone else")),
                Ok(Inserted::Existing(row)) => match row.slurm_id {
                    Some(slurm_id) => Response::AlreadySubmitted { slurm_id },
                    None => Response::Ok,
                },
                Err(e) => internal(e),
            }
        }
        Request::ConfirmJob { ucloud_id, slurm_id } => {
            match own_job(server, peer, &ucloud_id) {
                Ok(_) => {}
                Err(r) => return r,
            }
            let update = serde_json::to_string(&submitted_update(slurm_id)).expect("update serialises");
            match store.confirm_submission(&ucloud_id, slurm_id, &[update]) {
                Ok(true) => {
                    server.monitor.track(slurm_id, &ucloud_id);
                    server.outbox_wake.notify_one();
                    Response::Ok
                }
                Ok(false) => error(format!("Job {ucloud_id} was already confirmed")),
                Err(e) => internal(e),
            }
        }
        Request::AbortJob { ucloud_id } => match own_job(server, peer, &ucloud_id) {
            Ok(_) => match store.delete_unsubmitted_job(&ucloud_id) {
                Ok(_) => Response::Ok,
                Err(e) => internal(e),
            },
            Err(r) => r,
        },
        Request::LookupJob { ucloud_id } => match own_job(server, peer, &ucloud_id) {
            Ok(row) => Response::Job(JobInfo {
                ucloud_id: row.ucloud_id,
                ucloud_user: row.ucloud_user,
                slurm_id: row.slurm_id,
                ended: row.ended_at.is_some(),
            }),
            Err(r) => r,
        },
        Request::RequestCancel { ucloud_id } => match own_job(server, peer, &ucloud_id) {
            Ok(_) => match store.set_cancel_requested(&ucloud_id) {
                Ok(()) => Response::Ok,
                Err(e) => internal(e),
            },
            Err(r) => r,
        },
        Request::CheckUser { ucloud_user } => {
            if server.users.maps_to(&ucloud_user, peer.uid) {
                Response::Ok
            } else {
                error(format!("{ucloud_user} is not mapped to uid {}", peer.uid))
            }
        }
        Request::RedeemTicket { ticket } => match connect::redeem(server, peer.uid, &ticket).await {
            Ok(ucloud_user) => Response::Connected { ucloud_user },
            Err(why) => error(why),
        },
        Request::WhoAmI => {
            let users = server.users.list().into_iter().filter(|u| u.uid == peer.uid).collect();
            Response::Users { users }
        }
        Request::Disconnect { ucloud_user } => {
            if !is_admin(peer) {
                return error("only root or the service user may disconnect users");
            }
            match connect::disconnect(server, &ucloud_user).await {
                Ok(()) => Response::Ok,
                Err(why) => error(why),
            }
        }
        Request::ListConnections => {
            if !is_admin(peer) {
                return error("only root or the service user may list connections");
            }
            let tickets = match store.open_tickets() {
                Ok(t) => t,
                Err(e) => return internal(e),
            };
            Response::Connections {
                users: server.users.list(),
                tickets: tickets
                    .into_iter()
                    .map(|t| ipc::TicketInfo { ucloud_user: t.ucloud_user, created_at: t.created_at, expires_at: t.expires_at })
                    .collect(),
            }
        }
        Request::MapUser { ucloud_user, unix_user } => {
            if !is_admin(peer) {
                return error("only root or the service user may map users");
            }
            if !crate::users::valid_ucloud_username(&ucloud_user) {
                return error("malformed UCloud username");
            }
            if !config::valid_unix_name(&unix_user) {
                return error(format!("'{unix_user}' is not a valid unix user name"));
            }
            match server.users.mappable_uid(&unix_user) {
                Ok(uid) => match store.map_user(&ucloud_user, &unix_user, uid) {
                    Ok(()) => {
                        tracing::info!(ucloud_user, unix_user, uid, by = peer.uid, "user mapped");
                        crate::storage::register_soon(server.clone(), ucloud_user.clone());
                        Response::Ok
                    }
                    Err(e) => internal(e),
                },
                Err(refusal) => error(format!("cannot map {ucloud_user}: {refusal}")),
            }
        }
        Request::UnmapUser { ucloud_user } => {
            if !is_admin(peer) {
                return error("only root or the service user may unmap users");
            }
            match connect::forget(server, &ucloud_user).await {
                Ok(Some(_)) => Response::Ok,
                Ok(None) => error(format!("{ucloud_user} is not mapped")),
                Err(e) => internal(e),
            }
        }
        Request::ListUsers => {
            if !is_admin(peer) {
                return error("only root or the service user may list users");
            }
            Response::Users { users: server.users.list() }
        }
        Request::ListInstances => {
            if !is_admin(peer) {
                return error("only root or the service user may list instances");
            }
            Response::Instances { instances: server.instances.list().await }
        }
        Request::Audit { ucloud_user, action, ids, outcome } => {
            // The peer uid is the kernel's word; the instance may only speak for users mapped to it.
            let user = match server.users.resolve(&ucloud_user) {
                Ok(user) if user.uid == peer.uid => user,
                _ => {
                    tracing::warn!(uid = peer.uid, ucloud_user, "refused an audit line for a user not mapped to the peer");
                    return error(format!("{ucloud_user} is not mapped to uid {}", peer.uid));
                }
            };
            let ids: Vec<String> = ids.into_iter().take(100).collect();
            let event = crate::audit::Event { ucloud_user: &ucloud_user, unix_user: Some(&user.unix_user), action: &action, ids: &ids, outcome: &outcome };
            server.audit.record_from_instance(&event);
            Response::Ok
        }
        Request::Route { ucloud_user, start } => {
            if !is_admin(peer) {
                return error("only root or the service user may look up routes");
            }
            route(server, &ucloud_user, start).await
        }
    }
}

/// Where the ingress sends `ucloud_user`'s traffic. Unmapped users have no instance (`None`: the server
/// answers them). In many-to-one mode Core calls always go through the server, whose audit log is then the
/// only record of who did what; only browser and WebSocket traffic (`start`) goes straight to the instance.
async fn route(server: &Arc<Server>, ucloud_user: &str, start: bool) -> Response {
    let Ok(user) = server.users.resolve(ucloud_user) else {
        return Response::Route { port: None };
    };
    if !start {
        if server.config.users.mode == config::UserMode::ManyToOne {
            return Response::Route { port: None };
        }
        return Response::Route { port: server.instances.port_if_running(user.uid).await };
    }
    if let Some(port) = server.instances.port_if_running(user.uid).await {
        return Response::Route { port: Some(port) };
    }
    // The request carries only a usernameHint so far (its token is checked by the instance): ration the
    // starts such requests can cause.
    if !server.browser_starts.try_take() {
        tracing::warn!(user = user.unix_user, "route: instance start refused, too many starts by browser traffic");
        return error("too many instance starts; try again shortly");
    }
    match crate::http::start_instance(server, user.uid, &user.unix_user).await {
        Ok(port) => Response::Route { port: Some(port) },
        Err(e) => {
            tracing::warn!(user = user.unix_user, "route: instance start failed: {}", e.why);
            error("the user's instance could not be started")
        }
    }
}

/// The job row, if the peer owns it. Another user's job and a missing job get the same answer, so the
/// socket cannot be used to probe for job ids.
fn own_job(server: &Server, peer: PeerCred, ucloud_id: &str) -> Result<store::JobRow, Response> {
    match server.store.job(ucloud_id) {
        Ok(Some(row)) if row.uid == peer.uid => Ok(row),
        Ok(_) => {
            tracing::warn!(uid = peer.uid, job = ucloud_id, "job lookup refused or not found");
            Err(error(format!("Job {ucloud_id} not found")))
        }
        Err(e) => Err(internal(e)),
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("ipc: database error: {e}");
    error("internal error in the ucim server")
}
