use super::*;

#[tokio::test]
async fn extend_and_suspend_send_the_cores_shapes() {
    let (stub, url) = start_stub().await;
    let sim = start_sim(&url).await;
    let job = sim.new_job(
        "alice#1234",
        cpu1(),
        "sleep",
        Map::new(),
        Some(protocol::SimpleDuration::from_seconds(600)),
    );
    let id = job["id"].as_str().unwrap().to_string();
    assert!(sim.create_job(&job).await.unwrap().accepted_by_core());
    let hour = protocol::SimpleDuration {
        hours: 1,
        minutes: 0,
        seconds: 0,
    };

    let r = sim.extend_job(&id, hour).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    let last = stub.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.path, format!("/ucloud/{P}/jobs/extend"));
    assert_eq!(last.header("ucloud-username"), Some("YWxpY2UjMTIzNA=="));
    let item = &last.body["items"][0];
    assert_eq!(item["job"]["id"], id.as_str());
    assert_eq!(
        item["job"]["specification"]["timeAllocation"],
        json!({"hours": 0, "minutes": 10, "seconds": 0})
    );
    assert_eq!(
        item["requestedTime"],
        json!({"hours": 1, "minutes": 0, "seconds": 0})
    );
    assert!(
        item.get("jobId").is_none(),
        "the provider gets the job, not the user's jobId"
    );

    sim.suspend_job_as(Some("bob#1"), &id).await.unwrap();
    let last = stub.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.path, format!("/ucloud/{P}/jobs/suspend"));
    assert_eq!(
        last.header("ucloud-username"),
        Some(protocol::encode_username_header("bob#1").as_str())
    );
    assert_eq!(last.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        last.body["items"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["job"]
    );
    sim.unsuspend_job(&id).await.unwrap();
    assert_eq!(
        stub.seen.lock().unwrap().last().unwrap().path,
        format!("/ucloud/{P}/jobs/unsuspend")
    );

    // Without timeExtension the Core refuses extend itself; the provider never hears of it.
    stub.no_extension.store(true, Ordering::SeqCst);
    let before = stub.seen.lock().unwrap().len();
    let err = sim.extend_job(&id, hour).await.unwrap_err();
    assert!(matches!(err, CallError::Core { status: 400, .. }), "{err}");
    let seen = stub.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), before + 1, "only retrieveProducts");
    assert!(seen
        .last()
        .unwrap()
        .path
        .ends_with("/jobs/retrieveProducts"));
    assert!(matches!(
        sim.suspend_job("no-such-job").await,
        Err(CallError::UnknownJob(_))
    ));
}
