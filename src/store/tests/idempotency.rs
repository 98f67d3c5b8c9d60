//! Idempotency records: replay, a key taken meanwhile, expiry.

use super::*;

conformance!(
    idempotency_records,
    idempotency_taken_rolls_back_batch,
    purge_idempotency,
);

async fn idempotency_records(f: &Fixture) {
    let s = &f.store;
    let first = record(
        "key_1",
        "fp_1",
        402,
        r#"{"error":{"type":"card_error"}}"#,
        1000,
    );
    let only_record = |record: IdempotencyRecord, cutoff: i64| WriteBatch {
        account: "acct_a".into(),
        idempotency: Some(record),
        idempotency_cutoff: cutoff,
        ..Default::default()
    };
    commit_ok(s, only_record(first.clone(), 0)).await;
    assert_eq!(
        s.idempotency_get("acct_a", "key_1").await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(
        s.idempotency_get("acct_a", "key_2").await.expect("get"),
        None
    );
    assert_eq!(
        s.idempotency_get("acct_b", "key_1").await.expect("get"),
        None
    );

    // Still fresh (created is not before the cutoff): taken.
    let second = record("key_1", "fp_2", 200, r#"{"ok":true}"#, 1500);
    for cutoff in [0, 999, 1000] {
        match s.commit(only_record(second.clone(), cutoff)).await {
            Err(CommitError::IdempotencyTaken) => {}
            other => panic!("expected IdempotencyTaken at cutoff {cutoff}, got {other:?}"),
        }
    }
    assert_eq!(
        s.idempotency_get("acct_a", "key_1").await.expect("get"),
        Some(first)
    );

    // Expired: replaced.
    commit_ok(s, only_record(second.clone(), 1001)).await;
    assert_eq!(
        s.idempotency_get("acct_a", "key_1").await.expect("get"),
        Some(second.clone())
    );

    // Keys belong to one account.
    let elsewhere = record("key_1", "fp_b", 201, "{}", 5);
    commit_ok(
        s,
        WriteBatch {
            account: "acct_b".into(),
            ..only_record(elsewhere.clone(), 0)
        },
    )
    .await;
    assert_eq!(
        s.idempotency_get("acct_b", "key_1").await.expect("get"),
        Some(elsewhere)
    );
    assert_eq!(
        s.idempotency_get("acct_a", "key_1").await.expect("get"),
        Some(second)
    );

    // Written together with the request's objects.
    commit_ok(
        s,
        WriteBatch {
            account: "acct_a".into(),
            objects: vec![new_object("cus_1", "customer", 1)],
            idempotency: Some(record("key_3", "fp_3", 200, r#"{"id":"cus_1"}"#, 2000)),
            idempotency_cutoff: 0,
            ..Default::default()
        },
    )
    .await;
    assert!(s.get("acct_a", "cus_1").await.expect("get").is_some());
    assert_eq!(
        s.idempotency_get("acct_a", "key_3")
            .await
            .expect("get")
            .map(|r| r.status),
        Some(200)
    );
}

async fn idempotency_taken_rolls_back_batch(f: &Fixture) {
    let s = &f.store;
    add_event_target(s, "acct_a").await;
    let existing = insert(s, "acct_a", new_object("cus_1", "customer", 1)).await;
    commit_ok(
        s,
        WriteBatch {
            account: "acct_a".into(),
            idempotency: Some(record("key_1", "fp_1", 200, "{}", 1000)),
            ..Default::default()
        },
    )
    .await;

    let result = s
        .commit(WriteBatch {
            account: "acct_a".into(),
            objects: vec![
                update_of(&existing, 1, r#"{"lost":true}"#),
                new_object("cus_lost", "customer", 2),
                new_object("evt_lost", "event", 2),
            ],
            events: vec![emitted("evt_lost", "customer.created")],
            idempotency: Some(record("key_1", "fp_2", 200, "{}", 1001)),
            idempotency_cutoff: 500,
            ..Default::default()
        })
        .await;
    assert!(
        matches!(result, Err(CommitError::IdempotencyTaken)),
        "expected IdempotencyTaken, got {result:?}"
    );
    let now = must_get(s, "acct_a", "cus_1").await;
    assert_eq!((now.version, now.data), (1, existing.data));
    assert!(s.get("acct_a", "cus_lost").await.expect("get").is_none());
    assert!(s.get("acct_a", "evt_lost").await.expect("get").is_none());
    assert!(
        f.location.deliveries("acct_a").await.is_empty(),
        "the event's delivery rolls back with it"
    );
    assert_eq!(
        s.idempotency_get("acct_a", "key_1")
            .await
            .expect("get")
            .map(|r| r.fingerprint),
        Some("fp_1".to_string())
    );
}

async fn purge_idempotency(f: &Fixture) {
    let s = &f.store;
    for (account, key, created) in [
        ("acct_a", "k10", 10),
        ("acct_a", "k20", 20),
        ("acct_a", "k30", 30),
        ("acct_b", "k10", 10),
    ] {
        commit_ok(
            s,
            WriteBatch {
                account: account.into(),
                idempotency: Some(record(key, "fp", 200, "{}", created)),
                ..Default::default()
            },
        )
        .await;
    }
    assert_eq!(s.purge_idempotency("acct_a", 25).await.expect("purge"), 2);
    assert_eq!(s.idempotency_get("acct_a", "k10").await.expect("get"), None);
    assert_eq!(s.idempotency_get("acct_a", "k20").await.expect("get"), None);
    assert!(s
        .idempotency_get("acct_a", "k30")
        .await
        .expect("get")
        .is_some());
    assert!(
        s.idempotency_get("acct_b", "k10")
            .await
            .expect("get")
            .is_some(),
        "other accounts are untouched"
    );
    assert_eq!(s.purge_idempotency("acct_a", 25).await.expect("purge"), 0);
    // Strictly before the cutoff.
    assert_eq!(s.purge_idempotency("acct_a", 30).await.expect("purge"), 0);
    assert_eq!(s.purge_idempotency("acct_a", 31).await.expect("purge"), 1);
    assert_eq!(
        s.purge_idempotency("acct_missing", 1000)
            .await
            .expect("purge"),
        0
    );
    assert_eq!(s.purge_idempotency("acct_b", 1000).await.expect("purge"), 1);
}
