use super::*;

#[test]
fn user_mapping_round_trip() {
    let s = Store::open_in_memory().unwrap();
    s.map_user("alice#1", "alice", 1001).unwrap();
    s.map_user("alice#2", "alice", 1001).unwrap();
    assert_eq!(s.user("alice#1").unwrap().unwrap().uid, 1001);
    assert_eq!(s.users_by_uid(1001).unwrap().len(), 2);
    s.map_user("alice#1", "bob", 1002).unwrap();
    assert_eq!(s.user("alice#1").unwrap().unwrap().unix_user, "bob");
    assert!(s.unmap_user("alice#1").unwrap());
    assert!(!s.unmap_user("alice#1").unwrap());
    assert_eq!(s.user("alice#1").unwrap(), None);
}

#[test]
fn job_life_and_outbox_order() {
    let s = Store::open_in_memory().unwrap();
    assert_eq!(s.insert_job("10", "alice#1", 1001, "queued", JobLimits::default()).unwrap(), Inserted::New);
    assert!(matches!(s.insert_job("10", "alice#1", 1001, "queued", JobLimits::default()).unwrap(), Inserted::Existing(_)));
    assert!(s.active_jobs().unwrap().is_empty(), "no slurm id yet");
    assert!(s.confirm_submission("10", 77, &["u1".into()]).unwrap());
    assert!(!s.confirm_submission("10", 78, &["again".into()]).unwrap(), "second confirm is refused");
    assert_eq!(s.active_jobs().unwrap()[0].slurm_id, Some(77));
    s.record_transition("10", "running", false, &["u2".into()]).unwrap();
    s.record_transition("10", "ended", true, &["u3".into(), "u4".into()]).unwrap();
    assert!(s.active_jobs().unwrap().is_empty());
    let pending = s.outbox_pending(10).unwrap();
    let payloads: Vec<_> = pending.iter().map(|r| r.payload.as_str()).collect();
    assert_eq!(payloads, ["u1", "u2", "u3", "u4"]);
    s.outbox_delivered(&[pending[0].seq, pending[1].seq]).unwrap();
    assert_eq!(s.outbox_pending(10).unwrap().len(), 2);
    assert_eq!(s.outbox_give_up_job("10", "unknown to the Core").unwrap(), 2);
    assert_eq!(s.outbox_counts().unwrap(), (0, 2, 2));
}

#[test]
fn limits_are_recorded_and_a_new_time_limit_comes_with_its_updates() {
    let s = Store::open_in_memory().unwrap();
    s.insert_job("6", "alice#1", 1001, "queued", JobLimits::default()).unwrap();
    assert_eq!(s.job("6").unwrap().unwrap().time_limit_minutes, None);
    s.insert_job("7", "alice#1", 1001, "queued", JobLimits { memory_mb: Some(4096), time_limit_minutes: Some(60) }).unwrap();
    let row = s.job("7").unwrap().unwrap();
    assert_eq!((row.memory_mb, row.time_limit_minutes), (Some(4096), Some(60)));
    s.record_time_limit("7", 90, &["extended".into()]).unwrap();
    s.queue_updates(&[("7".into(), "why it waits".into())]).unwrap();
    assert_eq!(s.job("7").unwrap().unwrap().time_limit_minutes, Some(90));
    let payloads: Vec<_> = s.outbox_pending(10).unwrap().into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, ["extended", "why it waits"]);
}

#[test]
fn unsubmitted_job_can_be_forgotten_but_submitted_cannot() {
    let s = Store::open_in_memory().unwrap();
    s.insert_job("1", "a", 1001, "q", JobLimits::default()).unwrap();
    s.insert_job("2", "a", 1001, "q", JobLimits::default()).unwrap();
    s.confirm_submission("2", 5, &[]).unwrap();
    assert!(s.delete_unsubmitted_job("1").unwrap());
    assert!(!s.delete_unsubmitted_job("2").unwrap());
}

#[test]
fn data_survives_reopen_and_migrations_are_idempotent() {
    let dir = std::env::temp_dir().join(format!("ucim-store-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.sqlite3");
    {
        let s = Store::open(&path).unwrap();
        s.map_user("x", "x", 2000).unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.users().unwrap().len(), 1);
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tickets_are_single_use_and_map_atomically() {
    let s = Store::open_in_memory().unwrap();
    let later = now_ms() + 60_000;
    s.create_ticket("h1", "alice#1", later).unwrap();
    assert_eq!(s.open_tickets().unwrap().len(), 1);
    assert_eq!(s.redeem_ticket("nope", "alice", 1001, true, None).unwrap(), Redemption::Unknown);
    let r = s.redeem_ticket("h1", "alice", 1001, true, None).unwrap();
    assert_eq!(r, Redemption::Mapped { ucloud_user: "alice#1".into(), previous: None });
    assert_eq!(s.user("alice#1").unwrap().unwrap().source, "ticket");
    assert_eq!(s.redeem_ticket("h1", "bob", 1002, true, None).unwrap(), Redemption::AlreadyUsed);
    assert_eq!(s.user("alice#1").unwrap().unwrap().unix_user, "alice", "a second use changes nothing");
    // One-to-one: alice's account already stands for alice#1.
    s.create_ticket("h2", "mallory#9", later).unwrap();
    assert_eq!(
        s.redeem_ticket("h2", "alice", 1001, true, None).unwrap(),
        Redemption::AccountTaken { by: "alice#1".into() }
    );
    assert_eq!(s.user("mallory#9").unwrap(), None);
    assert!(s.ticket("h2").unwrap().unwrap().redeemed_at.is_none(), "refusal leaves the ticket usable");
    // Expired.
    s.create_ticket("h3", "carol#3", now_ms() - 1).unwrap();
    assert_eq!(s.redeem_ticket("h3", "carol", 1003, true, None).unwrap(), Redemption::Expired);
    // A new ticket replaces an unredeemed older one.
    s.create_ticket("h4", "mallory#9", later).unwrap();
    assert_eq!(s.ticket("h2").unwrap(), None);
}

#[test]
fn a_reverted_redemption_restores_the_ticket_and_the_old_mapping() {
    let s = Store::open_in_memory().unwrap();
    s.map_user("alice#1", "alice", 1001).unwrap();
    let before = s.user("alice#1").unwrap();
    s.create_ticket("h", "alice#1", now_ms() + 60_000).unwrap();
    let Redemption::Mapped { previous, .. } = s.redeem_ticket("h", "alice2", 1005, true, Some(5)).unwrap() else {
        panic!("mapped")
    };
    assert_eq!(s.user("alice#1").unwrap().unwrap().unix_user, "alice2");
    s.revert_redemption("h", "alice#1", previous.as_ref()).unwrap();
    assert_eq!(s.user("alice#1").unwrap(), before);
    assert!(s.ticket("h").unwrap().unwrap().redeemed_at.is_none());
    assert!(!s.user("alice#1").unwrap().unwrap().expired(i64::MAX));
}

#[test]
fn a_file_store_syncs_in_the_background_and_durable_writes_at_once() {
    let dir = std::env::temp_dir().join(format!("ucim-store-sync-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ucim.db");
    let synchronous = |s: &Store| s.conn().query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)).unwrap();
    {
        let s = Store::open(&path).unwrap();
        assert_eq!(synchronous(&s), 1, "ordinary commits are not synced (NORMAL)");
        s.map_user("alice#1", "alice", 1001).unwrap();
        assert_eq!(synchronous(&s), 1, "a durable write puts NORMAL back");
        let before = std::fs::metadata(&path).unwrap().len();
        for i in 0..200 {
            s.insert_job(&format!("j{i}"), "alice#1", 1001, "queued", JobLimits::default()).unwrap();
        }
        // Only a checkpoint writes the database file itself; commits go to the WAL.
        let t = std::time::Instant::now();
        while std::fs::metadata(&path).unwrap().len() <= before {
            assert!(t.elapsed() < std::time::Duration::from_secs(10), "the checkpointer never ran");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.user("alice#1").unwrap().unwrap().uid, 1001);
    assert!(s.job("j199").unwrap().is_some());
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}
