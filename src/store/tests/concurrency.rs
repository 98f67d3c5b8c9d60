//! Concurrent batches: version races, deadlocks reported as conflicts, and
//! batches committed in groups keeping each its own outcome.

use super::*;

conformance!(
    concurrent_updates_one_wins,
    concurrent_batches_commit_together_or_alone,
    crossed_updates_conflict,
    concurrent_batches_of_several_accounts_keep_their_deliveries,
    a_group_delivers_to_the_targets_of_its_earlier_batches,
    groups_of_new_objects,
);

/// Many independent batches at once (the stores commit them in groups), one pair of
/// them sharing an idempotency key and one updating a stale version: every batch
/// gets the outcome it would have had alone, with its index rows and deliveries.
async fn concurrent_batches_commit_together_or_alone(f: &Fixture) {
    const WRITERS: usize = 60;
    let s = &f.store;
    add_event_target(s, "acct_a").await;
    let stale = insert(s, "acct_a", new_object("cus_stale", "customer", 1)).await;
    commit_ok(s, batch("acct_a", vec![update_of(&stale, 1, r#"{"v":2}"#)])).await;
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::with_capacity(WRITERS);
    for i in 0..WRITERS {
        let (store, start, stale) = (s.clone(), start.clone(), stale.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut objects = vec![
                indexed(
                    new_object(&format!("cus_g{i}"), "customer", 2),
                    &[("email", &format!("g{i}@x"))],
                ),
                event(&format!("evt_g{i}"), 2, "customer.created"),
            ];
            if i == 7 {
                objects.push(update_of(&stale, 1, r#"{"v":"lost"}"#));
            }
            // Writers 10 and 11 share a key: one commits, the other is refused.
            let key = if i == 11 { 10 } else { i };
            let result = store
                .commit(WriteBatch {
                    account: "acct_a".into(),
                    objects,
                    events: vec![emitted(&format!("evt_g{i}"), "customer.created")],
                    idempotency: Some(record(&format!("key_g{key}"), "fp", 200, "{}", 10)),
                    idempotency_cutoff: 0,
                    ..Default::default()
                })
                .await;
            (i, result)
        }));
    }
    let mut committed = Vec::new();
    let mut taken = Vec::new();
    for task in tasks {
        let (i, result) = task.await.expect("writer task");
        match result {
            Ok(done) => {
                assert!(done.deliveries, "writer {i} created a delivery");
                committed.push(i)
            }
            Err(CommitError::Conflict(id)) => {
                assert_eq!(
                    (i, id.as_str()),
                    (7, "cus_stale"),
                    "only the stale writer conflicts"
                )
            }
            Err(CommitError::IdempotencyTaken) => taken.push(i),
            Err(other) => panic!("writer {i}: unexpected error {other:?}"),
        }
    }
    assert_eq!(committed.len(), WRITERS - 2, "all but two commit");
    assert_eq!(taken.len(), 1, "one of the key's two writers is refused");
    assert!(taken[0] == 10 || taken[0] == 11);
    let deliveries: Vec<String> = f
        .location
        .deliveries("acct_a")
        .await
        .into_iter()
        .map(|(event_id, endpoint_id, push)| {
            assert_eq!((endpoint_id.as_str(), push), ("we_acct_a", true));
            event_id
        })
        .collect();
    for &i in &committed {
        must_get(s, "acct_a", &format!("cus_g{i}")).await;
        let by_email = s
            .list(
                "acct_a",
                &ListQuery {
                    kind: "customer".into(),
                    filter: Some(("email".into(), format!("g{i}@x"))),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(by_email.len(), 1, "writer {i}'s index row");
        assert!(
            deliveries.contains(&format!("evt_g{i}")),
            "writer {i}'s delivery"
        );
    }
    for i in [7, taken[0]] {
        assert!(s
            .get("acct_a", &format!("cus_g{i}"))
            .await
            .expect("get")
            .is_none());
        assert!(!deliveries.contains(&format!("evt_g{i}")));
    }
    assert_eq!(deliveries.len(), WRITERS - 2);
    let still = must_get(s, "acct_a", "cus_stale").await;
    assert_eq!(still.data, r#"{"v":2}"#);
}

async fn concurrent_updates_one_wins(f: &Fixture) {
    const WRITERS: usize = 50;
    let s = &f.store;
    let original = insert(s, "acct_a", new_object("cus_1", "customer", 1)).await;
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::with_capacity(WRITERS);
    for i in 0..WRITERS {
        let (store, start, original) = (s.clone(), start.clone(), original.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let result = store
                .commit(WriteBatch {
                    account: "acct_a".into(),
                    objects: vec![
                        new_object(&format!("cus_new_{i}"), "customer", 2),
                        update_of(&original, 1, &format!(r#"{{"writer":{i}}}"#)),
                    ],
                    idempotency: Some(record(&format!("key_{i}"), "fp", 200, "{}", 10)),
                    ..Default::default()
                })
                .await;
            (i, result)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (i, result) = task.await.expect("writer task");
        match result {
            Ok(_) => winners.push(i),
            Err(CommitError::Conflict(id)) => assert_eq!(id, "cus_1"),
            Err(other) => panic!("writer {i}: unexpected error {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins, got {winners:?}");
    let winner = winners[0];
    let now = must_get(s, "acct_a", "cus_1").await;
    assert_eq!(now.version, 2);
    assert_eq!(now.data, format!(r#"{{"writer":{winner}}}"#));
    for i in 0..WRITERS {
        let created = s
            .get("acct_a", &format!("cus_new_{i}"))
            .await
            .expect("get")
            .is_some();
        let recorded = s
            .idempotency_get("acct_a", &format!("key_{i}"))
            .await
            .expect("get")
            .is_some();
        assert_eq!(created, i == winner, "cus_new_{i}");
        assert_eq!(recorded, i == winner, "key_{i}");
    }
    assert_eq!(list_ids(s, "acct_a", query("customer", 100)).await.len(), 2);
}

/// Two batches updating the same two objects in opposite orders (a deadlock on a
/// row-locking database): one commits, the other reports a conflict, never an error.
async fn crossed_updates_conflict(f: &Fixture) {
    let s = &f.store;
    insert(s, "acct_a", new_object("cus_a", "customer", 1)).await;
    insert(s, "acct_a", new_object("cus_b", "customer", 2)).await;
    for round in 0..3 {
        let a = must_get(s, "acct_a", "cus_a").await;
        let b = must_get(s, "acct_a", "cus_b").await;
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let orders = [
            vec![
                update_of(&a, a.version, r#"{"by":"ab"}"#),
                update_of(&b, b.version, r#"{"by":"ab"}"#),
            ],
            vec![
                update_of(&b, b.version, r#"{"by":"ba"}"#),
                update_of(&a, a.version, r#"{"by":"ba"}"#),
            ],
        ];
        let tasks: Vec<_> = orders
            .into_iter()
            .map(|objects| {
                let (store, start) = (s.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store.commit(batch("acct_a", objects)).await
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            match task.await.expect("writer task") {
                Ok(_) => wins += 1,
                Err(CommitError::Conflict(id)) => {
                    assert!(id == "cus_a" || id == "cus_b", "conflict on {id}")
                }
                Err(other) => panic!("round {round}: unexpected error {other:?}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
        let (a2, b2) = (
            must_get(s, "acct_a", "cus_a").await,
            must_get(s, "acct_a", "cus_b").await,
        );
        assert_eq!((a2.version, b2.version), (a.version + 1, b.version + 1));
        assert_eq!(a2.data, b2.data, "both objects come from the same batch");
    }
}

/// Batches of several accounts committed at once (in groups): each event gets the
/// deliveries of its own account's targets and no other's.
async fn concurrent_batches_of_several_accounts_keep_their_deliveries(f: &Fixture) {
    const WRITERS: usize = 60;
    let s = &f.store;
    commit_ok(s, batch("acct_a", vec![endpoint("we_a", &["*"])])).await;
    commit_ok(
        s,
        batch(
            "acct_b",
            vec![
                endpoint("we_b", &["customer.created"]),
                listener("wl_b", &["*"]),
            ],
        ),
    )
    .await;
    let accounts = ["acct_a", "acct_b", "acct_c"];
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (store, start) = (s.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let id = format!("evt_c{i:02}");
                let account = accounts[i % 3];
                let committed = store
                    .commit(events_batch(account, &[(&id, "customer.created")]))
                    .await;
                (i, committed)
            })
        })
        .collect();
    for task in tasks {
        let (i, committed) = task.await.expect("writer task");
        let committed = committed.unwrap_or_else(|e| panic!("writer {i}: {e:?}"));
        if i % 3 != 2 {
            assert!(committed.deliveries, "writer {i} created deliveries");
        }
    }
    let mut expected_a = Vec::new();
    let mut expected_b = Vec::new();
    for i in 0..WRITERS {
        let id = format!("evt_c{i:02}");
        match i % 3 {
            0 => expected_a.push((id, "we_a".to_string(), true)),
            1 => {
                expected_b.push((id.clone(), "we_b".to_string(), true));
                expected_b.push((id, "wl_b".to_string(), false));
            }
            _ => {}
        }
    }
    assert_eq!(f.location.deliveries("acct_a").await, expected_a);
    assert_eq!(f.location.deliveries("acct_b").await, expected_b);
    assert!(f.location.deliveries("acct_c").await.is_empty());
}

/// Batches committed as one group: an event gets the targets of one order in which
/// the group's concurrent requests could have run, and its own account's only.
///
/// SQLite's writer applies a group's batches one after another, so an event gets
/// the targets that existed when it was written: a target created later in the
/// group does not get it, one disabled later still does, and an account without
/// targets at the start of the group gets deliveries once a batch has created one.
/// PostgreSQL writes a group's objects with one statement per table and then its
/// deliveries, as if every target write of the group had come before its events.
async fn a_group_delivers_to_the_targets_of_its_earlier_batches(f: &Fixture) {
    let s = &f.store;
    add_event_target(s, "acct_b").await;
    commit_ok(s, batch("acct_a", vec![endpoint("we_old", &["*"])])).await;
    let old = must_get(s, "acct_a", "we_old").await;
    let hold = Hold::start(f, "group").await;
    let group = {
        let s = s.clone();
        // Polled in this order, so sent to the store in this order.
        tokio::spawn(async move {
            let disable = update_of(&old, 1, r#"{"status":"disabled"}"#);
            futures::join!(
                s.commit(events_batch("acct_c", &[("evt_gc1", "customer.created")])),
                s.commit(batch("acct_c", vec![endpoint("we_c", &["*"])])),
                s.commit(events_batch("acct_a", &[("evt_g1", "customer.created")])),
                s.commit(batch("acct_a", vec![endpoint("we_new", &["*"])])),
                s.commit(batch("acct_a", vec![disable])),
                s.commit(events_batch("acct_a", &[("evt_g2", "customer.created")])),
                s.commit(events_batch("acct_b", &[("evt_gb", "customer.created")])),
                s.commit(events_batch("acct_c", &[("evt_gc2", "customer.created")])),
            )
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    hold.release().await;
    let (gc1, wc, g1, new, disable, g2, gb, gc2) = group.await.expect("group task");
    for (name, outcome) in [
        ("evt_gc1", &gc1),
        ("we_c", &wc),
        ("evt_g1", &g1),
        ("we_new", &new),
        ("we_old", &disable),
    ] {
        assert!(outcome.is_ok(), "{name}: {outcome:?}");
    }
    for (name, outcome) in [("evt_g2", &g2), ("evt_gb", &gb), ("evt_gc2", &gc2)] {
        assert!(
            matches!(
                outcome,
                Ok(Committed {
                    deliveries: true,
                    ..
                })
            ),
            "{name}: {outcome:?}"
        );
    }
    assert_eq!(
        (
            f.location.deliveries("acct_a").await,
            f.location.deliveries("acct_b").await,
            f.location.deliveries("acct_c").await,
        ),
        match f.location {
            Location::Sqlite(_) => (
                triples(&[("evt_g1", "we_old", true), ("evt_g2", "we_new", true)]),
                triples(&[("evt_gb", "we_acct_b", true)]),
                triples(&[("evt_gc2", "we_c", true)]),
            ),
            Location::Postgres { .. } => (
                triples(&[("evt_g1", "we_new", true), ("evt_g2", "we_new", true)]),
                triples(&[("evt_gb", "we_acct_b", true)]),
                triples(&[("evt_gc1", "we_c", true), ("evt_gc2", "we_c", true)]),
            ),
        }
    );
}

/// Groups whose batches only create objects (PostgreSQL writes such a group in one
/// statement with no ON CONFLICT): every batch keeps its index rows (a key named
/// twice by one object included), its deliveries and its idempotency record (an
/// expired one replaced), and a taken id or a fresh key refuses its own batch only.
async fn groups_of_new_objects(f: &Fixture) {
    const WRITERS: usize = 12;
    let s = &f.store;
    add_event_target(s, "acct_a").await;
    insert(s, "acct_a", new_object("cus_taken", "customer", 1)).await;
    // Requests at 1000 whose keys last 100: a record of 950 holds its key, one
    // of 800 has expired.
    let (now, cutoff) = (1000, 900);
    let keep = |key: &str, created: i64| WriteBatch {
        account: "acct_a".into(),
        idempotency: Some(record(key, "fp_before", 200, "{}", created)),
        ..Default::default()
    };
    commit_ok(s, keep("key_fresh", 950)).await;
    commit_ok(s, keep("key_old", 800)).await;
    let key_of = |round: &str, i: usize| match (round, i) {
        ("a", 3) => "key_old".to_string(),
        ("b", 8) => "key_fresh".to_string(),
        _ => format!("key_{round}{i}"),
    };
    for (round, taken) in [("a", None), ("b", Some(5))] {
        let hold = Hold::start(f, &format!("new_objects_{round}")).await;
        let mut tasks = Vec::with_capacity(WRITERS);
        for i in 0..WRITERS {
            let store = s.clone();
            let id = if taken == Some(i) {
                "cus_taken".to_string()
            } else {
                format!("cus_{round}{i}")
            };
            let email = format!("{round}{i}@x");
            let customer = indexed(
                new_object(&id, "customer", 2),
                &[("email", &email), ("email", &email), ("name", round)],
            );
            let event_id = format!("evt_{round}{i}");
            let fingerprint = format!("fp_{round}{i}");
            let batch = WriteBatch {
                account: "acct_a".into(),
                objects: vec![customer, event(&event_id, 2, "customer.created")],
                events: vec![emitted(&event_id, "customer.created")],
                idempotency: Some(record(&key_of(round, i), &fingerprint, 200, "{}", now)),
                idempotency_cutoff: cutoff,
                ..Default::default()
            };
            tasks.push(tokio::spawn(async move { (i, store.commit(batch).await) }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        hold.release().await;
        for task in tasks {
            let (i, outcome) = task.await.expect("writer task");
            if taken == Some(i) {
                assert_conflict(outcome, "cus_taken");
            } else if key_of(round, i) == "key_fresh" {
                assert!(
                    matches!(outcome, Err(CommitError::IdempotencyTaken)),
                    "writer {round}{i}: {outcome:?}"
                );
            } else {
                assert!(
                    matches!(
                        outcome,
                        Ok(Committed {
                            deliveries: true,
                            ..
                        })
                    ),
                    "writer {round}{i}: {outcome:?}"
                );
            }
        }
        let deliveries = f.location.deliveries("acct_a").await;
        let delivered: Vec<&str> = deliveries.iter().map(|(e, _, _)| e.as_str()).collect();
        let by = |field: &str, value: String| {
            let store = s.clone();
            let field = field.to_string();
            async move {
                let page = store
                    .list(
                        "acct_a",
                        &ListQuery {
                            kind: "customer".into(),
                            filter: Some((field, value)),
                            limit: 100,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("list by an index key");
                page.into_iter().map(|o| o.id).collect::<Vec<String>>()
            }
        };
        let refused = |i: usize| taken == Some(i) || key_of(round, i) == "key_fresh";
        for i in (0..WRITERS).filter(|&i| !refused(i)) {
            let stored = s
                .idempotency_get("acct_a", &key_of(round, i))
                .await
                .expect("idempotency_get")
                .map(|r| (r.fingerprint, r.created));
            assert_eq!(
                stored,
                Some((format!("fp_{round}{i}"), now)),
                "writer {round}{i}'s idempotency record"
            );
            assert_eq!(
                by("email", format!("{round}{i}@x")).await,
                [format!("cus_{round}{i}")],
                "writer {round}{i}'s index row"
            );
            assert!(
                delivered.contains(&format!("evt_{round}{i}").as_str()),
                "writer {round}{i}'s delivery"
            );
        }
        let committed = (0..WRITERS).filter(|&i| !refused(i)).count();
        assert_eq!(by("name", round.to_string()).await.len(), committed);
        for i in (0..WRITERS).filter(|&i| refused(i)) {
            let event_id = format!("evt_{round}{i}");
            assert!(s.get("acct_a", &event_id).await.expect("get").is_none());
            assert!(!delivered.contains(&event_id.as_str()));
        }
    }
    assert_eq!(f.location.deliveries("acct_a").await.len(), 2 * WRITERS - 2);
    let fresh = s.idempotency_get("acct_a", "key_fresh").await.expect("get");
    assert_eq!(
        fresh.map(|r| (r.fingerprint, r.created)),
        Some(("fp_before".to_string(), 950)),
        "a fresh record keeps its key"
    );
    let taken = must_get(s, "acct_a", "cus_taken").await;
    assert_eq!(taken.created, 1, "the first cus_taken stays");
}
