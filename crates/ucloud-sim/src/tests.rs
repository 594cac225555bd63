//! In-crate tests: the Core endpoints and the Core's calls toward a tiny stub provider. No Slurm.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use protocol::{JobState, ProductReference};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::*;

const P: &str = "slurmtest";
const REFRESH: &str = "0123456789abcdef";

/// One RSA key pair for all tests (generation is slow), written once.
fn key_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ucloud-sim-test-keys-{}", std::process::id()));
        let pair = auth::generate_keypair();
        auth::write_keypair(
            &pair,
            &dir.join(PRIVATE_KEY_FILE),
            &dir.join(PUBLIC_KEY_PEM_FILE),
        )
        .unwrap();
        std::fs::write(dir.join(PUBLIC_KEY_B64_FILE), &pair.public_der_base64).unwrap();
        dir
    })
    .clone()
}

async fn start_sim(provider_url: &str) -> Sim {
    Sim::start(SimConfig {
        provider_id: P.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        provider_url: provider_url.into(),
        key_dir: key_dir(),
        refresh_token: REFRESH.into(),
        issuer: "cloud.sdu.dk".into(),
    })
    .await
    .unwrap()
}

/// POST to the sim as a provider would; returns (status, JSON body).
async fn post(sim: &Sim, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", sim.url()))
        .json(&body);
    if let Some(b) = bearer {
        req = req.header("Authorization", format!("Bearer {b}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn provider_token(sim: &Sim) -> String {
    sim.signer().provider_token(P, "cloud.sdu.dk", 600)
}

fn product_json(provider: &str) -> Value {
    json!({
        "type": "compute",
        "category": {"name": "cpu", "provider": provider, "productType": "COMPUTE",
            "accountingUnit": {"name": "Core", "namePlural": "Core", "floatingPoint": false, "displayFrequencySuffix": true},
            "accountingFrequency": "PERIODIC_MINUTE", "allowSubAllocations": true},
        "name": "cpu-1", "description": "1 core", "productType": "COMPUTE", "price": 1,
        "hiddenInGrantApplications": false, "cpu": 1, "memoryInGigs": 4
    })
}

fn cpu1() -> ProductReference {
    ProductReference {
        id: "cpu-1".into(),
        category: "cpu".into(),
        provider: P.into(),
    }
}

#[tokio::test]
async fn refresh_flow() {
    let sim = start_sim("http://127.0.0.1:1").await;
    let (status, body) = post(
        &sim,
        "/auth/providers/refresh",
        None,
        json!({"items": [{"refreshToken": REFRESH}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["responses"][0]["csrfToken"], "");
    let token = body["responses"][0]["accessToken"].as_str().unwrap();
    let key = auth::PublicKey::parse(&std::fs::read_to_string(sim.public_key_b64_path()).unwrap())
        .unwrap();
    let claims = auth::TokenVerifier::for_provider_calls(key, "cloud.sdu.dk", P)
        .verify(token)
        .unwrap();
    assert_eq!(claims.sub, format!("#P_{P}"));
    assert_eq!(claims.role, "PROVIDER");
    assert_eq!(claims.exp - claims.iat, 600);
    assert_eq!(sim.refresh_count(), 1);

    let (status, body) = post(
        &sim,
        "/auth/providers/refresh",
        None,
        json!({"items": [{"refreshToken": "nope"}]}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["why"], "Unauthorized");
    assert_eq!(body["statusCode"], 401);
    assert_eq!(sim.refresh_count(), 1);

    sim.set_unavailable(true);
    let (status, _) = post(
        &sim,
        "/auth/providers/refresh",
        None,
        json!({"items": [{"refreshToken": REFRESH}]}),
    )
    .await;
    assert_eq!(status, 503);
    let resp = reqwest::get(format!("{}/api/accounting/v2/whatever", sim.url()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let resp = reqwest::get(format!("{}/sim/products", sim.url()))
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "the control API is not the Core"
    );
    sim.set_unavailable(false);

    let resp = reqwest::get(format!("{}/api/nothing/here", sim.url()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn products_need_a_provider_token() {
    let sim = start_sim("http://127.0.0.1:1").await;
    let body = json!({"items": [product_json(P)]});
    assert_eq!(
        post(&sim, "/api/products/v2", None, body.clone()).await.0,
        403
    );
    assert_eq!(
        post(&sim, "/api/products/v2", Some("garbage"), body.clone())
            .await
            .0,
        403
    );
    // The Core's own service token is signed with the same key but is not the provider's principal.
    let service = sim.signer().service_token("cloud.sdu.dk", 600);
    assert_eq!(
        post(&sim, "/api/products/v2", Some(&service), body.clone())
            .await
            .0,
        403
    );
    let other = sim
        .signer()
        .provider_token("someoneelse", "cloud.sdu.dk", 600);
    assert_eq!(
        post(&sim, "/api/products/v2", Some(&other), body.clone())
            .await
            .0,
        403
    );
    assert!(sim.products().is_empty());

    let token = provider_token(&sim);
    let foreign = json!({"items": [product_json("someoneelse")]});
    assert_eq!(
        post(&sim, "/api/products/v2", Some(&token), foreign)
            .await
            .0,
        403
    );
    let (status, answer) = post(&sim, "/api/products/v2", Some(&token), body.clone()).await;
    assert_eq!((status, answer), (200, json!({})));
    assert_eq!(
        post(&sim, "/api/products/v2", Some(&token), body).await.0,
        200
    );
    assert_eq!(sim.products().len(), 1, "upsert, not append");
    assert_eq!(sim.products()[0].reference(), cpu1());

    let page: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/products/v2/browse?itemsPerPage=10&filterProvider={P}",
            sim.url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["name"], "cpu-1");
    assert_eq!(page["next"], Value::Null);
}

#[tokio::test]
async fn control_update_semantics() {
    let sim = start_sim("http://127.0.0.1:1").await;
    let job = sim.new_job("alice#1", cpu1(), "sleep", Map::new(), None);
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(sim.job_state(&id), Some(JobState::InQueue));
    let token = provider_token(&sim);
    let update =
        |state: &str| json!({"id": id, "update": {"state": state, "status": null, "timestamp": 0}});

    assert_eq!(
        post(
            &sim,
            "/api/jobs/control/update",
            None,
            json!({"items": [update("RUNNING")]})
        )
        .await
        .0,
        403
    );

    // One unknown id rejects the whole batch.
    let batch =
        json!({"items": [update("RUNNING"), {"id": "999", "update": {"state": "RUNNING"}}]});
    let (status, body) = post(&sim, "/api/jobs/control/update", Some(&token), batch).await;
    assert_eq!(status, 404);
    assert_eq!(body["why"], "Not found or permission denied (999)");
    assert_eq!(sim.job_state(&id), Some(JobState::InQueue));

    // expectedDifferentState dedups a repeated state.
    let mut dedup = update("RUNNING");
    dedup["update"]["expectedDifferentState"] = json!(true);
    let (status, body) = post(
        &sim,
        "/api/jobs/control/update",
        Some(&token),
        json!({"items": [dedup.clone(), dedup]}),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(sim.job_state(&id), Some(JobState::Running));
    assert_eq!(sim.job_updates(&id).len(), 1);
    assert!(
        sim.job_updates(&id)[0].timestamp > 0,
        "timestamp overwritten with now"
    );

    // A final state is sticky.
    let batch = json!({"items": [update("SUCCESS"), update("RUNNING"), update("FAILURE")]});
    assert_eq!(
        post(&sim, "/api/jobs/control/update", Some(&token), batch)
            .await
            .0,
        200
    );
    assert_eq!(sim.job_state(&id), Some(JobState::Success));
    let states: Vec<_> = sim.job_updates(&id).iter().map(|u| u.state).collect();
    assert_eq!(
        states,
        vec![Some(JobState::Running), Some(JobState::Success)]
    );
    assert_eq!(sim.received_updates().len(), 5);
    sim.wait_for_state(&id, JobState::Success, Duration::from_millis(100))
        .await
        .unwrap();
    let err = sim
        .wait_for_state(&id, JobState::Failure, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("FAILURE"), "{err}");
}

/// What the stub provider saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Stub {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// How many times `jobs.create` should still answer 449.
    busy: Arc<AtomicU32>,
    /// Status `jobs.create` answers once not busy.
    create_status: Arc<AtomicU32>,
    /// `retrieveProducts` leaves out `native.timeExtension`.
    no_extension: Arc<std::sync::atomic::AtomicBool>,
}

async fn stub_handler(State(stub): State<Stub>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let path = parts.uri.path().to_string();
    stub.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    });
    let json_answer = |status: u16, body: Value| {
        (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
    };
    match path.strip_prefix(&format!("/ucloud/{P}")).unwrap_or("") {
        "/jobs" => {
            if stub.busy.load(Ordering::SeqCst) > 0 {
                stub.busy.fetch_sub(1, Ordering::SeqCst);
                return json_answer(449, json!({"why": "Starting your instance"}));
            }
            match stub.create_status.load(Ordering::SeqCst) {
                200 => json_answer(200, json!({"responses": [{"id": "slurm-77"}]})),
                s => json_answer(s as u16, json!({"statusCode": s, "why": "Bad application"})),
            }
        }
        "/integration/init" | "/jobs/terminate" | "/jobs/extend" | "/jobs/suspend"
        | "/jobs/unsuspend" => json_answer(200, json!({})),
        "/jobs/retrieveProducts" => {
            let extension = !stub.no_extension.load(Ordering::SeqCst);
            json_answer(
                200,
                json!({"responses": [{"product": {"id": "cpu-1", "category": "cpu", "provider": P},
                        "docker": {}, "virtualMachine": {}, "native": {"enabled": true, "timeExtension": extension},
                        "queueStatus": "AVAILABLE"}]}),
            )
        }
        _ => json_answer(404, json!({"why": "Not found"})),
    }
}

async fn start_stub() -> (Stub, String) {
    let stub = Stub::default();
    stub.create_status.store(200, Ordering::SeqCst);
    let app = Router::new()
        .fallback(stub_handler)
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (stub, url)
}

#[tokio::test]
async fn init_dance_and_core_headers() {
    let (stub, url) = start_stub().await;
    let sim = start_sim(&url).await;
    stub.busy.store(2, Ordering::SeqCst);
    let mut params = Map::new();
    params.insert("seconds".into(), json!({"type": "integer", "value": 3}));
    let job = sim.new_job(
        "alice#1234",
        cpu1(),
        "sleep",
        params,
        Some(protocol::SimpleDuration::from_seconds(600)),
    );
    let id = job["id"].as_str().unwrap().to_string();
    let result = sim.create_job(&job).await.unwrap();
    assert_eq!(result.status, 200);
    assert_eq!(result.attempts, 3);
    assert!(result.accepted_by_core());
    assert_eq!(sim.job(&id).unwrap()["providerGeneratedId"], "slurm-77");

    let seen = stub.seen.lock().unwrap().clone();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    let create = format!("/ucloud/{P}/jobs");
    let init = format!("/ucloud/{P}/integration/init");
    let (c, i) = (create.as_str(), init.as_str());
    assert_eq!(paths, vec![c, i, c, i, c]);
    let key = auth::PublicKey::parse(&std::fs::read_to_string(sim.public_key_pem_path()).unwrap())
        .unwrap();
    let verifier = auth::TokenVerifier::for_core_calls(key, "cloud.sdu.dk");
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(
            s.header("content-type"),
            None,
            "the Core sends no Content-Type"
        );
        assert_eq!(s.header("ucloud-username"), Some("YWxpY2UjMTIzNA=="));
        assert_eq!(s.header("user-agent"), Some("Go-http-client/1.1"));
        let claims = verifier.verify_bearer(s.header("authorization")).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.role.as_str()),
            ("_UCloud", "SERVICE")
        );
    }
    // The token is reused across calls (fresh enough).
    assert!(seen
        .iter()
        .all(|s| s.header("authorization") == seen[0].header("authorization")));
    assert_eq!(seen[1].body, json!({"username": "alice#1234"}));
    let item = &seen[4].body["items"][0];
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["permissions"], json!({"myself": [], "others": []}));
    assert_eq!(item["specification"]["labels"], json!({}));
    assert_eq!(
        item["specification"]["parameters"]["ucMetricSampleRate"]["value"],
        "0ms"
    );
    assert_eq!(
        item["specification"]["parameters"]["seconds"]["mountPath"],
        ""
    );
    assert_eq!(
        item["specification"]["timeAllocation"],
        json!({"hours": 0, "minutes": 10, "seconds": 0})
    );
    assert_eq!(item["status"]["state"], "IN_QUEUE");
    assert_eq!(item["status"]["resolvedApplication"]["favorite"], false);
    assert_eq!(item["output"], json!({"outputFolder": null}));

    // terminate carries the job as retrieved now, on behalf of its owner.
    let r = sim.terminate_job(&id).await.unwrap();
    assert_eq!((r.status, r.attempts), (200, 1));
    let seen = stub.seen.lock().unwrap().clone();
    let last = seen.last().unwrap();
    assert_eq!(last.path, format!("/ucloud/{P}/jobs/terminate"));
    assert_eq!(last.header("ucloud-username"), Some("YWxpY2UjMTIzNA=="));
    assert_eq!(
        last.body["items"][0]["permissions"]["myself"],
        json!(["ADMIN", "READ", "EDIT"])
    );

    // System calls carry no username header; raw calls send exactly what they are given.
    sim.call(Method::GET, "/jobs/retrieveProducts", None, None)
        .await
        .unwrap();
    let r = sim
        .call_raw(Method::GET, "/jobs/retrieveProducts", None, None, None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 1);
    let seen = stub.seen.lock().unwrap().clone();
    let n = seen.len();
    assert_eq!(seen[n - 2].header("ucloud-username"), None);
    assert!(seen[n - 2]
        .header("authorization")
        .unwrap()
        .starts_with("Bearer "));
    assert_eq!(seen[n - 1].header("authorization"), None);
}

#[tokio::test]
async fn failed_create_deletes_the_job() {
    let (stub, url) = start_stub().await;
    let sim = start_sim(&url).await;
    stub.create_status.store(400, Ordering::SeqCst);
    let job = sim.new_job("bob", cpu1(), "unknown", Map::new(), None);
    let id = job["id"].as_str().unwrap().to_string();
    let r = sim.create_job(&job).await.unwrap();
    assert_eq!((r.status, r.why()), (400, Some("Bad application")));
    assert_eq!(sim.job_state(&id), None);

    // Six attempts at most when the provider keeps answering 449.
    stub.create_status.store(200, Ordering::SeqCst);
    stub.busy.store(10, Ordering::SeqCst);
    let job = sim.new_job("bob", cpu1(), "sleep", Map::new(), None);
    let id = job["id"].as_str().unwrap().to_string();
    let r = sim.create_job(&job).await.unwrap();
    assert_eq!((r.status, r.attempts), (449, 6));
    assert_eq!(sim.job_state(&id), None);

    // A provider that is not there: transport error, job deleted.
    sim.set_provider_url("http://127.0.0.1:1");
    let job = sim.new_job("bob", cpu1(), "sleep", Map::new(), None);
    let id = job["id"].as_str().unwrap().to_string();
    assert!(matches!(
        sim.create_job(&job).await,
        Err(CallError::Transport(_))
    ));
    assert_eq!(sim.job_state(&id), None);
}

#[tokio::test]
async fn control_api_drives_the_provider() {
    let (_stub, url) = start_stub().await;
    let sim = start_sim(&url).await;
    let client = reqwest::Client::new();
    let answer: Value = client
        .post(format!("{}/sim/jobs", sim.url()))
        .json(
            &json!({"username": "carol", "product": {"id": "cpu-1", "category": "cpu"},
                      "application": "sleep", "parameters": {"n": {"type": "integer", "value": 1}},
                      "timeAllocation": null}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], 200);
    let id = answer["jobId"].as_str().unwrap();
    let job: Value = client
        .get(format!("{}/sim/jobs/{id}", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "IN_QUEUE");
    assert_eq!(job["updates"], json!([]));
    let term: Value = client
        .post(format!("{}/sim/jobs/{id}/terminate", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(term["status"], 200);
    let missing = client
        .get(format!("{}/sim/jobs/1", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

/// extend, suspend and unsuspend against the stub provider.
mod job_ops;
