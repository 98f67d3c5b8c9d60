//! Finishing deliveries with their attempts, listing attempts, and the event
//! purge.

use super::*;

conformance!(
    finish_deliveries_settles_each_result,
    attempts_listing,
    purge_events,
);

/// `finish_deliveries` settles each result on its own, in one call: a result
/// whose lease is held moves its delivery on (true), one whose lease was lost or
/// never held changes nothing (false); every attempt is recorded either way. A
/// retry leaves the row pending, due at its time.
async fn finish_deliveries_settles_each_result(f: &Fixture) {
    let s = &f.store;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![
                endpoint("we_w", &["*"]),
                endpoint("we_x", &["*"]),
                endpoint("we_y", &["*"]),
                endpoint("we_z", &["*"]),
            ],
        ),
    )
    .await;
    emit(s, "acct_a", &[("evt_1", "customer.created")]).await;
    let t = now_ms() + 1_000;
    let short = DeliveryClaim {
        lease_ms: 10,
        ..shared("node_a", t, 10, 0, &[("we_x", 1)])
    };
    let x = claim_ok(s, &short).await;
    assert_eq!(pairs(&x), pair_list(&[("we_x", "evt_1")]));
    let long = DeliveryClaim {
        lease_ms: 100_000,
        ..shared("node_a", t, 10, 1, &[("we_x", 0), ("we_w", 0)])
    };
    let yz = claim_ok(s, &long).await;
    assert_eq!(
        sorted_pairs(&yz),
        pair_list(&[("we_y", "evt_1"), ("we_z", "evt_1")])
    );
    // node_a's short lease runs out and node_b takes the row over.
    let taken = claim_ok(s, &shared("node_b", t + 10, 10, 0, &[("we_x", 1)])).await;
    assert_eq!(pairs(&taken), pair_list(&[("we_x", "evt_1")]));
    let w = must_delivery(s, "acct_a", "evt_1", "we_w").await;
    let by = |endpoint: &str| {
        yz.iter()
            .find(|d| d.endpoint_id == endpoint)
            .cloned()
            .expect("claimed")
    };
    let settled = finish(
        s,
        vec![
            result(
                &x[0],
                "node_a",
                DeliveryNext::Succeeded,
                Some(attempt("wha_x", 1, Some(200), true)),
            ),
            result(
                &by("we_y"),
                "node_a",
                DeliveryNext::Succeeded,
                Some(attempt("wha_y", 1, Some(200), true)),
            ),
            result(
                &by("we_z"),
                "node_a",
                DeliveryNext::RetryAt(t + 5_000),
                Some(attempt("wha_z", 1, Some(500), false)),
            ),
            result(
                &w,
                "node_a",
                DeliveryNext::Succeeded,
                Some(attempt("wha_w", 1, Some(200), true)),
            ),
        ],
    )
    .await;
    assert_eq!(settled, vec![false, true, true, false]);

    let state = |d: Delivery| {
        (
            d.status,
            d.attempts,
            d.next_attempt_at,
            d.lease_owner,
            d.lease_expires_at,
            d.succeeded_at,
        )
    };
    let x_now = must_delivery(s, "acct_a", "evt_1", "we_x").await;
    assert_eq!(
        (
            x_now.status,
            x_now.attempts,
            x_now.lease_owner.as_deref(),
            x_now.succeeded_at
        ),
        (DeliveryStatus::Pending, 0, Some("node_b"), None),
        "a lost lease changes nothing"
    );
    let y_now = must_delivery(s, "acct_a", "evt_1", "we_y").await;
    assert_eq!(
        state(y_now.clone()),
        (
            DeliveryStatus::Succeeded,
            1,
            y_now.next_attempt_at,
            None,
            None,
            Some(FINISHED_AT)
        )
    );
    assert_eq!(
        state(must_delivery(s, "acct_a", "evt_1", "we_z").await),
        (DeliveryStatus::Pending, 1, t + 5_000, None, None, None)
    );
    assert_eq!(
        state(must_delivery(s, "acct_a", "evt_1", "we_w").await),
        state(w.clone()),
        "an unleased delivery changes nothing"
    );
    let recorded = s
        .list_attempts("acct_a", &all_attempts(10))
        .await
        .expect("attempts");
    let mut recorded: Vec<(String, String, String, bool)> = recorded
        .into_iter()
        .map(|a| (a.id, a.event_id, a.endpoint_id, a.succeeded))
        .collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            ("wha_w", "we_w", true),
            ("wha_x", "we_x", true),
            ("wha_y", "we_y", true),
            ("wha_z", "we_z", false),
        ]
        .map(|(id, endpoint, ok)| (
            id.to_string(),
            "evt_1".to_string(),
            endpoint.to_string(),
            ok
        ))
        .to_vec(),
        "every attempt is recorded, lease or not"
    );

    // The retry is due at its time, not before.
    let z_only = |owner: &str, at| shared(owner, at, 10, 0, &[("we_z", 1)]);
    assert!(claim_ok(s, &z_only("node_c", t + 4_999)).await.is_empty());
    let z = claim_ok(s, &z_only("node_c", t + 5_000)).await;
    assert_eq!(pairs(&z), pair_list(&[("we_z", "evt_1")]));
    assert_eq!(z[0].attempts, 1);
    // Giving up without an attempt: failed, the count unchanged.
    let give_up = result(&z[0], "node_c", DeliveryNext::Failed, None);
    assert_eq!(finish(s, vec![give_up.clone()]).await, vec![true]);
    assert_eq!(finish(s, vec![give_up]).await, vec![false], "settled once");
    let z_now = must_delivery(s, "acct_a", "evt_1", "we_z").await;
    assert_eq!(
        (z_now.status, z_now.attempts, z_now.lease_owner),
        (DeliveryStatus::Failed, 1, None)
    );
    // The new holder settles its row.
    let x_fail = result(
        &taken[0],
        "node_b",
        DeliveryNext::Failed,
        Some(attempt("wha_x2", 1, Some(500), false)),
    );
    assert_eq!(finish(s, vec![x_fail]).await, vec![true]);
    let x_now = must_delivery(s, "acct_a", "evt_1", "we_x").await;
    assert_eq!(
        (x_now.status, x_now.attempts, x_now.lease_owner),
        (DeliveryStatus::Failed, 1, None)
    );
    assert!(finish(s, Vec::new()).await.is_empty());
    // Another account cannot settle it.
    let w_claimed = claim_ok(s, &claim("node_d", t + 6_000, 10)).await;
    assert_eq!(pairs(&w_claimed), pair_list(&[("we_w", "evt_1")]));
    let mut elsewhere = result(&w_claimed[0], "node_d", DeliveryNext::Succeeded, None);
    elsewhere.account = "acct_b".into();
    assert_eq!(finish(s, vec![elsewhere]).await, vec![false]);
    assert_eq!(
        must_delivery(s, "acct_a", "evt_1", "we_w").await.status,
        DeliveryStatus::Pending
    );
    let ok = result(&w_claimed[0], "node_d", DeliveryNext::Succeeded, None);
    assert_eq!(finish(s, vec![ok]).await, vec![true]);
    assert!(
        claim_ok(s, &claim("node_e", t + 1_000_000, 10))
            .await
            .is_empty(),
        "nothing is pending any more"
    );
}

async fn attempts_listing(f: &Fixture) {
    let s = &f.store;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![endpoint("we_1", &["*"]), endpoint("we_2", &["*"])],
        ),
    )
    .await;
    emit(
        s,
        "acct_a",
        &[("evt_1", "customer.created"), ("evt_2", "customer.created")],
    )
    .await;
    let mut n = 0;
    let mut now = now_ms() + 1_000;
    // Three rounds of failures over every delivery, each round finished at once.
    for _ in 0..3 {
        let due = claim_ok(s, &claim("node_a", now, 10)).await;
        assert_eq!(due.len(), 4);
        let results = due
            .iter()
            .map(|d| {
                n += 1;
                let a = attempt(&format!("wha_{n:02}"), d.attempts + 1, None, false);
                result(d, "node_a", DeliveryNext::RetryAt(now + 10), Some(a))
            })
            .collect();
        assert_eq!(finish(s, results).await, vec![true; 4]);
        now += 10;
    }
    let all = |q: AttemptQuery| async move {
        s.list_attempts("acct_a", &q)
            .await
            .expect("attempts")
            .into_iter()
            .map(|a| (a.event_id, a.endpoint_id, a.attempt))
            .collect::<Vec<_>>()
    };
    let q =
        |event: Option<&str>, endpoint: Option<&str>, after: Option<&str>, limit| AttemptQuery {
            event_id: event.map(str::to_string),
            endpoint_id: endpoint.map(str::to_string),
            starting_after: after.map(str::to_string),
            limit,
        };
    assert_eq!(all(q(None, None, None, 100)).await.len(), 12);
    let by_pair = all(q(Some("evt_2"), Some("we_1"), None, 100)).await;
    assert_eq!(
        by_pair,
        vec![
            ("evt_2".into(), "we_1".into(), 3),
            ("evt_2".into(), "we_1".into(), 2),
            ("evt_2".into(), "we_1".into(), 1)
        ],
        "newest first"
    );
    assert_eq!(all(q(Some("evt_1"), None, None, 100)).await.len(), 6);
    assert_eq!(all(q(None, Some("we_2"), None, 4)).await.len(), 4);
    let page = s
        .list_attempts("acct_a", &q(None, None, None, 5))
        .await
        .expect("attempts");
    let rest = s
        .list_attempts("acct_a", &q(None, None, Some(&page[4].id), 100))
        .await
        .expect("attempts");
    assert_eq!(rest.len(), 7);
    assert!(rest.iter().all(|a| a.seq < page[4].seq));
    assert!(s
        .list_attempts("acct_b", &q(None, None, None, 100))
        .await
        .expect("attempts")
        .is_empty());
}

async fn purge_events(f: &Fixture) {
    let s = &f.store;
    add_event_target(s, "acct_a").await;
    commit_ok(s, batch("acct_a", vec![listener("wl_1", &["*"])])).await;
    add_event_target(s, "acct_b").await;
    commit_ok(
        s,
        WriteBatch {
            account: "acct_a".into(),
            objects: vec![
                event("evt_old", 100, "customer.created"),
                event("evt_new", 200, "customer.created"),
                new_object("cus_old", "customer", 100),
            ],
            events: vec![
                emitted("evt_old", "customer.created"),
                emitted("evt_new", "customer.created"),
            ],
            ..Default::default()
        },
    )
    .await;
    emit(s, "acct_b", &[("evt_b", "customer.created")]).await;
    let t = now_ms() + 1_000;
    let got = claim_ok(s, &shared("node_a", t, 10, 10, &[("we_acct_b", 0)])).await;
    assert_eq!(got.len(), 2);
    let results = got
        .iter()
        .map(|d| {
            let a = attempt(&format!("wha_{}", d.event_id), 1, None, false);
            result(d, "node_a", DeliveryNext::RetryAt(t + 2_000), Some(a))
        })
        .collect();
    assert_eq!(finish(s, results).await, vec![true, true]);
    assert_eq!(
        pending(s, "acct_a", &["evt_old", "evt_new"]).await,
        vec![1, 1]
    );

    assert_eq!(s.purge_events("acct_a", 150).await.expect("purge"), 1);
    assert!(s.get("acct_a", "evt_old").await.expect("get").is_none());
    assert!(s.get("acct_a", "evt_new").await.expect("get").is_some());
    assert!(
        s.get("acct_a", "cus_old").await.expect("get").is_some(),
        "only events go"
    );
    assert!(
        s.get("acct_b", "evt_b").await.expect("get").is_some(),
        "only this account's"
    );
    assert!(find_delivery(s, "acct_a", "evt_old", "we_acct_a")
        .await
        .is_none());
    assert_eq!(
        f.location.deliveries("acct_a").await,
        triples(&[("evt_new", "we_acct_a", true), ("evt_new", "wl_1", false)]),
        "the purged event's push and pull deliveries went"
    );
    assert_eq!(
        f.location.deliveries("acct_b").await,
        triples(&[("evt_b", "we_acct_b", true)])
    );
    let attempts: Vec<String> = s
        .list_attempts("acct_a", &all_attempts(10))
        .await
        .expect("attempts")
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(attempts, ids(&["wha_evt_new"]), "its attempts went too");
    assert_eq!(
        pending(s, "acct_a", &["evt_old", "evt_new"]).await,
        vec![0, 1]
    );
    let q = ListQuery {
        filter: Some(("type".into(), "customer.created".into())),
        ..query("event", 10)
    };
    assert_eq!(
        list_ids(s, "acct_a", q).await,
        ids(&["evt_new"]),
        "index rows went too"
    );
    assert_eq!(s.purge_events("acct_a", 150).await.expect("purge"), 0);
}
