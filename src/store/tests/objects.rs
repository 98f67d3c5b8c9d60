//! Objects and their versions: meta, accounts, inserts, updates and their
//! version checks, a reopened store.

use super::*;

conformance!(
    meta,
    accounts,
    insert_and_get,
    duplicate_insert_conflicts,
    update_versions,
    stale_update_rolls_back_batch,
    reopen_keeps_data,
);

async fn meta(f: &Fixture) {
    let s = &f.store;
    assert_eq!(s.meta_get("instance_id").await.expect("meta_get"), None);
    s.meta_set("instance_id", "one").await.expect("meta_set");
    assert_eq!(
        s.meta_get("instance_id")
            .await
            .expect("meta_get")
            .as_deref(),
        Some("one")
    );
    s.meta_set("instance_id", "two")
        .await
        .expect("meta_set again");
    assert_eq!(
        s.meta_get("instance_id")
            .await
            .expect("meta_get")
            .as_deref(),
        Some("two")
    );
    s.meta_set("other", "").await.expect("meta_set empty");
    assert_eq!(
        s.meta_get("other").await.expect("meta_get").as_deref(),
        Some("")
    );
    assert_eq!(
        s.meta_get("instance_id")
            .await
            .expect("meta_get")
            .as_deref(),
        Some("two")
    );
}

async fn accounts(f: &Fixture) {
    let s = &f.store;
    assert!(s.list_accounts().await.expect("list").is_empty());
    let a = test_account("acct_a", 200);
    let b = test_account("acct_b", 100);
    let c = test_account("acct_c", 200);
    for account in [&a, &b, &c] {
        s.create_account(account).await.expect("create_account");
    }
    assert!(
        s.create_account(&a).await.is_err(),
        "a duplicate account id must be refused"
    );

    assert_eq!(s.account("acct_a").await.expect("account"), Some(a.clone()));
    assert_eq!(s.account("acct_missing").await.expect("account"), None);
    assert_eq!(
        s.account_by_key("sk_test_acct_b").await.expect("by key"),
        Some(b.clone())
    );
    assert_eq!(
        s.account_by_key("pk_test_acct_c").await.expect("by key"),
        Some(c.clone())
    );
    assert_eq!(
        s.account_by_key("sk_test_nobody").await.expect("by key"),
        None
    );
    // Ordered by creation time, then id.
    assert_eq!(
        s.list_accounts().await.expect("list"),
        vec![b.clone(), a.clone(), c.clone()]
    );

    s.set_clock_offset("acct_a", 100).await.expect("clock");
    assert_eq!(
        s.account("acct_a")
            .await
            .expect("account")
            .map(|a| a.clock_offset),
        Some(100)
    );
    s.set_clock_offset("acct_a", 40).await.expect("clock back");
    assert_eq!(
        s.account("acct_a")
            .await
            .expect("account")
            .map(|a| a.clock_offset),
        Some(100),
        "the clock must never move back"
    );
    s.set_clock_offset("acct_a", 250)
        .await
        .expect("clock forward");
    assert_eq!(
        s.account("acct_a")
            .await
            .expect("account")
            .map(|a| a.clock_offset),
        Some(250)
    );
    assert_eq!(
        s.account("acct_b")
            .await
            .expect("account")
            .map(|a| a.clock_offset),
        Some(0)
    );
    s.set_clock_offset("acct_missing", 10)
        .await
        .expect("clock of a missing account is a no-op");
    assert_eq!(s.list_accounts().await.expect("list").len(), 3);
}

async fn insert_and_get(f: &Fixture) {
    let s = &f.store;
    // Key order, spacing and non-ASCII text must come back byte for byte.
    let data = r#"{"id": "cus_1", "z": 1, "a": {"y": 2, "b": [3, 1]}, "name": "Zoë 😀"}"#;
    let mut object = new_object("cus_1", "customer", 1_700_000_000);
    object.data = data.to_string();
    commit_ok(s, batch("acct_a", vec![object])).await;

    let got = must_get(s, "acct_a", "cus_1").await;
    assert!(got.seq > 0);
    assert_eq!(got.id, "cus_1");
    assert_eq!(got.kind, "customer");
    assert_eq!(got.version, 1);
    assert_eq!(got.created, 1_700_000_000);
    assert!(!got.deleted);
    assert_eq!(got.data, data);

    assert!(
        s.get("acct_b", "cus_1").await.expect("get").is_none(),
        "accounts are isolated"
    );
    assert!(s.get("acct_a", "cus_missing").await.expect("get").is_none());

    // Several objects in one batch, seq in batch order.
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![
                new_object("cus_2", "customer", 1),
                new_object("ch_1", "charge", 2),
            ],
        ),
    )
    .await;
    let (c2, ch1) = (
        must_get(s, "acct_a", "cus_2").await,
        must_get(s, "acct_a", "ch_1").await,
    );
    assert!(got.seq < c2.seq && c2.seq < ch1.seq);

    // An empty batch is a no-op.
    s.commit(WriteBatch {
        account: "acct_a".into(),
        ..Default::default()
    })
    .await
    .expect("empty batch");
}

async fn duplicate_insert_conflicts(f: &Fixture) {
    let s = &f.store;
    let first = insert(s, "acct_a", new_object("cus_1", "customer", 1)).await;

    let mut again = new_object("cus_1", "customer", 2);
    again.data = r#"{"id":"cus_1","second":true}"#.into();
    assert_conflict(
        s.commit(batch("acct_a", vec![again.clone()])).await,
        "cus_1",
    );
    // Ids are global: another account cannot take it either.
    assert_conflict(s.commit(batch("acct_b", vec![again])).await, "cus_1");

    let now = must_get(s, "acct_a", "cus_1").await;
    assert_eq!((now.version, now.created, now.data), (1, 1, first.data));
    assert!(s.get("acct_b", "cus_1").await.expect("get").is_none());
}

async fn update_versions(f: &Fixture) {
    let s = &f.store;
    let v1 = insert(s, "acct_a", new_object("cus_1", "customer", 5)).await;

    commit_ok(s, batch("acct_a", vec![update_of(&v1, 1, r#"{"v":2}"#)])).await;
    let v2 = must_get(s, "acct_a", "cus_1").await;
    assert_eq!(
        (v2.version, v2.seq, v2.created, v2.data.as_str()),
        (2, v1.seq, 5, r#"{"v":2}"#)
    );

    assert_conflict(
        s.commit(batch("acct_a", vec![update_of(&v1, 1, r#"{"v":"stale"}"#)]))
            .await,
        "cus_1",
    );
    assert_conflict(
        s.commit(batch(
            "acct_a",
            vec![update_of(&v1, 3, r#"{"v":"future"}"#)],
        ))
        .await,
        "cus_1",
    );
    // Another account cannot update it, even at the right version.
    assert_conflict(
        s.commit(batch("acct_b", vec![update_of(&v1, 2, r#"{"v":"thief"}"#)]))
            .await,
        "cus_1",
    );
    // Updating something that does not exist is a conflict as well.
    let mut ghost = update_of(&v1, 1, "{}");
    ghost.id = "cus_ghost".into();
    assert_conflict(s.commit(batch("acct_a", vec![ghost])).await, "cus_ghost");
    assert!(s.get("acct_a", "cus_ghost").await.expect("get").is_none());

    let still = must_get(s, "acct_a", "cus_1").await;
    assert_eq!((still.version, still.data.as_str()), (2, r#"{"v":2}"#));

    commit_ok(s, batch("acct_a", vec![update_of(&v1, 2, r#"{"v":3}"#)])).await;
    let v3 = must_get(s, "acct_a", "cus_1").await;
    assert_eq!((v3.version, v3.data.as_str()), (3, r#"{"v":3}"#));
}

async fn stale_update_rolls_back_batch(f: &Fixture) {
    let s = &f.store;
    add_event_target(s, "acct_a").await;
    let a = insert(
        s,
        "acct_a",
        indexed(new_object("cus_a", "customer", 1), &[("email", "a@x")]),
    )
    .await;
    let b = insert(
        s,
        "acct_a",
        indexed(new_object("cus_b", "customer", 2), &[("email", "b@x")]),
    )
    .await;
    commit_ok(s, batch("acct_a", vec![update_of(&a, 1, r#"{"a":2}"#)])).await;

    // A good update, a new object with an index row, an event, then a stale update.
    let good = indexed(
        update_of(&b, 1, r#"{"b":"lost"}"#),
        &[("email", "changed@x")],
    );
    let fresh = indexed(new_object("cus_new", "customer", 3), &[("email", "new@x")]);
    let event = new_object("evt_lost", "event", 3);
    let stale = update_of(&a, 1, r#"{"a":"lost"}"#);
    assert_eq!(
        must_get(s, "acct_a", "we_acct_a").await.kind,
        "webhook_endpoint",
        "an endpoint that would take the event"
    );
    let result = s
        .commit(WriteBatch {
            account: "acct_a".into(),
            objects: vec![good, fresh, event, stale],
            events: vec![emitted("evt_lost", "customer.created")],
            idempotency: Some(record("key_lost", "fp", 200, "{}", 10)),
            idempotency_cutoff: 0,
            ..Default::default()
        })
        .await;
    assert_conflict(result, "cus_a");

    let b_now = must_get(s, "acct_a", "cus_b").await;
    assert_eq!((b_now.version, b_now.data), (1, b.data));
    let a_now = must_get(s, "acct_a", "cus_a").await;
    assert_eq!((a_now.version, a_now.data.as_str()), (2, r#"{"a":2}"#));
    assert!(s.get("acct_a", "cus_new").await.expect("get").is_none());
    assert!(s.get("acct_a", "evt_lost").await.expect("get").is_none());
    assert!(s
        .idempotency_get("acct_a", "key_lost")
        .await
        .expect("idem")
        .is_none());
    assert!(
        f.location.deliveries("acct_a").await.is_empty(),
        "the event's delivery rolls back with it"
    );
    // Index rows are untouched too.
    let by_email = |email: &str| ListQuery {
        filter: Some(("email".into(), email.into())),
        ..query("customer", 10)
    };
    assert_eq!(
        list_ids(s, "acct_a", by_email("b@x")).await,
        ids(&["cus_b"])
    );
    assert!(list_ids(s, "acct_a", by_email("changed@x"))
        .await
        .is_empty());
    assert!(list_ids(s, "acct_a", by_email("new@x")).await.is_empty());
    assert_eq!(
        list_ids(s, "acct_a", query("customer", 10)).await,
        ids(&["cus_b", "cus_a"])
    );

    // The ids used by the failed batch are still free.
    commit_ok(
        s,
        batch("acct_a", vec![new_object("cus_new", "customer", 4)]),
    )
    .await;
    assert_eq!(must_get(s, "acct_a", "cus_new").await.version, 1);
}

async fn reopen_keeps_data(f: &Fixture) {
    let s = &f.store;
    s.meta_set("instance_id", "kept").await.expect("meta_set");
    s.create_account(&test_account("acct_a", 1))
        .await
        .expect("create_account");
    let object = insert(
        s,
        "acct_a",
        indexed(new_object("cus_1", "customer", 1), &[("email", "x")]),
    )
    .await;

    // Opening again finds the schema in place and the data intact.
    let again = f.location.open().await;
    assert_eq!(
        again
            .meta_get("instance_id")
            .await
            .expect("meta_get")
            .as_deref(),
        Some("kept")
    );
    assert!(again.account("acct_a").await.expect("account").is_some());
    let got = must_get(&again, "acct_a", "cus_1").await;
    assert_eq!(
        (got.seq, got.version, got.data),
        (object.seq, 1, object.data)
    );
    // New rows continue after the old ones.
    let next = insert(&again, "acct_a", new_object("cus_2", "customer", 2)).await;
    assert!(next.seq > object.seq);
    let q = ListQuery {
        filter: Some(("email".into(), "x".into())),
        ..query("customer", 10)
    };
    assert_eq!(list_ids(&again, "acct_a", q).await, ids(&["cus_1"]));
}
