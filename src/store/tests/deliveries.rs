//! Webhook deliveries created with their events, `pending_webhooks` and
//! `delivery_success`, claims, leases and shares.

use super::*;

conformance!(
    deliveries_created_at_commit,
    targets_follow_their_index_rows,
    committed_says_whether_deliveries_were_created,
    pending_webhooks_counts_push_deliveries_not_yet_succeeded,
    delivery_success_filters_events,
    claims_lease_due_deliveries,
    claims_take_each_endpoints_share,
    claims_take_each_endpoints_oldest_due_first,
    listener_claims_take_their_pull_deliveries,
    release_gives_leases_back,
    concurrent_claims_are_disjoint,
    concurrent_share_claims_stay_within_their_share,
    redeliver_resets_or_creates,
);

/// Every event a batch emits gets one delivery per live target of its account that
/// takes its type, exactly or through `*`, created in the batch's transaction:
/// pending, never attempted, due now, unleased. Targets without `target_event`
/// rows (disabled), deleted ones, other kinds, other accounts' targets and targets
/// created later get none.
async fn deliveries_created_at_commit(f: &Fixture) {
    let s = &f.store;
    let mut born_deleted = endpoint("we_born_deleted", &["*"]);
    born_deleted.deleted = true;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![
                endpoint("we_all", &["*"]),
                endpoint("we_cust", &["customer.created", "customer.updated"]),
                // Both `*` and the type: still one delivery per event.
                endpoint("we_both", &["*", "customer.created"]),
                // Disabled: the resource layer indexes it with no target rows.
                new_object("we_off", "webhook_endpoint", 1),
                endpoint("we_gone", &["*"]),
                born_deleted,
                listener("wl_1", &["customer.created"]),
                // Not a target kind, whatever its index says.
                indexed(
                    new_object("cus_x", "customer", 1),
                    &[(TARGET_EVENTS_FIELD, "*")],
                ),
            ],
        ),
    )
    .await;
    let gone = must_get(s, "acct_a", "we_gone").await;
    let mut delete = indexed(update_of(&gone, 1, "{}"), &[(TARGET_EVENTS_FIELD, "*")]);
    delete.deleted = true;
    commit_ok(s, batch("acct_a", vec![delete])).await;
    add_event_target(s, "acct_b").await;

    let before = now_ms();
    emit(s, "acct_a", &[("evt_1", "customer.created")]).await;
    emit(
        s,
        "acct_a",
        &[("evt_2", "charge.succeeded"), ("evt_3", "customer.updated")],
    )
    .await;
    let after = now_ms();
    assert_eq!(
        f.location.deliveries("acct_a").await,
        triples(&[
            ("evt_1", "we_all", true),
            ("evt_1", "we_both", true),
            ("evt_1", "we_cust", true),
            ("evt_1", "wl_1", false),
            ("evt_2", "we_all", true),
            ("evt_2", "we_both", true),
            ("evt_3", "we_all", true),
            ("evt_3", "we_both", true),
            ("evt_3", "we_cust", true),
        ])
    );
    assert!(
        f.location.deliveries("acct_b").await.is_empty(),
        "another account's endpoint takes none"
    );
    for (event_id, endpoint_id, push) in [
        ("evt_1", "we_both", true),
        ("evt_1", "wl_1", false),
        ("evt_3", "we_cust", true),
    ] {
        let d = must_delivery(s, "acct_a", event_id, endpoint_id).await;
        assert_eq!(
            (
                d.account.as_str(),
                d.event_id.as_str(),
                d.endpoint_id.as_str(),
                d.push,
                d.status,
                d.attempts,
            ),
            (
                "acct_a",
                event_id,
                endpoint_id,
                push,
                DeliveryStatus::Pending,
                0
            )
        );
        assert_eq!(
            (d.lease_owner, d.lease_expires_at, d.succeeded_at),
            (None, None, None)
        );
        assert!(
            (before..=after).contains(&d.next_attempt_at),
            "{event_id} to {endpoint_id} is due at {}, not now ({before}..={after})",
            d.next_attempt_at
        );
    }
    assert!(find_delivery(s, "acct_b", "evt_1", "we_all")
        .await
        .is_none());
    assert!(find_delivery(s, "acct_a", "evt_1", "we_off")
        .await
        .is_none());

    // An event written but not emitted gets none.
    commit_ok(
        s,
        batch("acct_a", vec![event("evt_silent", 100, "customer.created")]),
    )
    .await;
    // Events of acct_b go to acct_b's endpoint only.
    emit(s, "acct_b", &[("evt_b", "customer.created")]).await;
    // A target created after an event does not get it; the next event it does.
    commit_ok(s, batch("acct_a", vec![endpoint("we_late", &["*"])])).await;
    emit(s, "acct_a", &[("evt_4", "invoice.paid")]).await;
    let rows = f.location.deliveries("acct_a").await;
    assert_eq!(rows.len(), 12, "{rows:?}");
    assert_eq!(
        rows[9..],
        triples(&[
            ("evt_4", "we_all", true),
            ("evt_4", "we_both", true),
            ("evt_4", "we_late", true),
        ])
    );
    assert_eq!(
        f.location.deliveries("acct_b").await,
        triples(&[("evt_b", "we_acct_b", true)])
    );
}

/// A target's deliveries follow its current index rows: new types, disabling
/// (no rows), enabling again and deletion take effect from the next event.
async fn targets_follow_their_index_rows(f: &Fixture) {
    let s = &f.store;
    commit_ok(
        s,
        batch("acct_a", vec![endpoint("we_1", &["customer.created"])]),
    )
    .await;
    emit(s, "acct_a", &[("evt_1", "customer.created")]).await;
    retarget(s, "acct_a", "we_1", &["charge.succeeded"]).await;
    emit(
        s,
        "acct_a",
        &[("evt_2", "customer.created"), ("evt_3", "charge.succeeded")],
    )
    .await;
    retarget(s, "acct_a", "we_1", &[]).await;
    emit(s, "acct_a", &[("evt_4", "charge.succeeded")]).await;
    retarget(s, "acct_a", "we_1", &["*"]).await;
    commit_ok(s, batch("acct_a", vec![listener("wl_1", &["*"])])).await;
    emit(s, "acct_a", &[("evt_5", "invoice.paid")]).await;
    let wl = must_get(s, "acct_a", "wl_1").await;
    let mut delete = indexed(update_of(&wl, 1, "{}"), &[(TARGET_EVENTS_FIELD, "*")]);
    delete.deleted = true;
    commit_ok(s, batch("acct_a", vec![delete])).await;
    emit(s, "acct_a", &[("evt_6", "invoice.paid")]).await;
    assert_eq!(
        f.location.deliveries("acct_a").await,
        triples(&[
            ("evt_1", "we_1", true),
            ("evt_3", "we_1", true),
            ("evt_5", "we_1", true),
            ("evt_5", "wl_1", false),
            ("evt_6", "we_1", true),
        ])
    );
}

/// `Committed.deliveries` is true when the batch created deliveries (push or pull)
/// and false when nothing could have: every commit here runs alone.
async fn committed_says_whether_deliveries_were_created(f: &Fixture) {
    let s = &f.store;
    let none = Committed {
        deliveries: false,
        scheduled: None,
    };
    let some = Committed {
        deliveries: true,
        scheduled: None,
    };
    assert_eq!(
        emit(s, "acct_a", &[("evt_1", "customer.created")]).await,
        none,
        "nobody listens yet"
    );
    assert_eq!(
        commit_ok(
            s,
            batch("acct_a", vec![endpoint("we_1", &["customer.created"])])
        )
        .await,
        none,
        "a target alone"
    );
    assert_eq!(
        commit_ok(s, batch("acct_a", vec![new_object("cus_1", "customer", 1)])).await,
        none,
        "no events"
    );
    assert_eq!(
        emit(s, "acct_a", &[("evt_2", "charge.succeeded")]).await,
        none,
        "a type nobody takes"
    );
    assert_eq!(
        emit(s, "acct_b", &[("evt_3", "customer.created")]).await,
        none,
        "another account's event"
    );
    assert_eq!(
        emit(s, "acct_a", &[("evt_4", "customer.created")]).await,
        some
    );
    commit_ok(
        s,
        batch("acct_a", vec![listener("wl_1", &["invoice.paid"])]),
    )
    .await;
    assert_eq!(
        emit(s, "acct_a", &[("evt_5", "invoice.paid")]).await,
        some,
        "pull deliveries are deliveries"
    );
    assert_eq!(
        commit_ok(
            s,
            WriteBatch {
                account: "acct_a".into(),
                idempotency: Some(record("key_1", "fp", 200, "{}", 1)),
                ..Default::default()
            }
        )
        .await,
        none
    );
    assert_eq!(
        s.commit(WriteBatch {
            account: "acct_a".into(),
            ..Default::default()
        })
        .await
        .expect("empty batch"),
        none
    );
    assert_eq!(
        f.location.deliveries("acct_a").await,
        triples(&[("evt_4", "we_1", true), ("evt_5", "wl_1", false)])
    );
}

/// `pending_webhooks` counts, per event in the order asked, its push deliveries
/// that have not succeeded: failed ones still count, pull ones never do.
async fn pending_webhooks_counts_push_deliveries_not_yet_succeeded(f: &Fixture) {
    let s = &f.store;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![
                endpoint("we_1", &["customer.created", "charge.succeeded"]),
                endpoint("we_2", &["customer.created"]),
                listener("wl_1", &["*"]),
            ],
        ),
    )
    .await;
    emit(s, "acct_a", &[("evt_1", "customer.created")]).await;
    emit(s, "acct_a", &[("evt_2", "charge.succeeded")]).await;
    emit(s, "acct_a", &[("evt_3", "payout.paid")]).await;
    let all = ["evt_1", "evt_2", "evt_3"];
    assert_eq!(
        pending(s, "acct_a", &["evt_1", "evt_unknown", "evt_2", "evt_3"]).await,
        vec![2, 0, 1, 0],
        "in the order asked; unknown events and pull deliveries count 0"
    );
    assert_eq!(
        pending(s, "acct_a", &["evt_3", "evt_2", "evt_1"]).await,
        vec![0, 1, 2]
    );
    assert!(pending(s, "acct_a", &[]).await.is_empty());
    assert_eq!(pending(s, "acct_b", &all).await, vec![0, 0, 0]);

    let t = now_ms() + 1_000;
    let got = claim_ok(s, &claim("node_a", t, 10)).await;
    assert_eq!(
        sorted_pairs(&got),
        pair_list(&[("we_1", "evt_1"), ("we_1", "evt_2"), ("we_2", "evt_1")])
    );
    let by = |endpoint: &str, event: &str| {
        got.iter()
            .find(|d| d.endpoint_id == endpoint && d.event_id == event)
            .cloned()
            .expect("claimed")
    };
    let settled = finish(
        s,
        vec![
            result(
                &by("we_1", "evt_1"),
                "node_a",
                DeliveryNext::Succeeded,
                Some(attempt("wha_1", 1, Some(200), true)),
            ),
            result(
                &by("we_2", "evt_1"),
                "node_a",
                DeliveryNext::Failed,
                Some(attempt("wha_2", 1, Some(410), false)),
            ),
            result(
                &by("we_1", "evt_2"),
                "node_a",
                DeliveryNext::RetryAt(t + 5_000),
                Some(attempt("wha_3", 1, Some(500), false)),
            ),
        ],
    )
    .await;
    assert_eq!(settled, vec![true, true, true]);
    assert_eq!(
        pending(s, "acct_a", &all).await,
        vec![1, 1, 0],
        "a success counts off; a delivery failed for good and a retry still count"
    );

    // Pull deliveries change nothing, delivered or not.
    let pulled = claim_ok(s, &pull("wl_1", "poll_1", t, 10)).await;
    assert_eq!(pulled.len(), 3);
    let results = pulled
        .iter()
        .map(|d| result(d, "poll_1", DeliveryNext::Succeeded, None))
        .collect();
    assert_eq!(finish(s, results).await, vec![true, true, true]);
    assert_eq!(pending(s, "acct_a", &all).await, vec![1, 1, 0]);

    // A success reported without the lease changes nothing.
    let lost = result(
        &by("we_1", "evt_2"),
        "node_x",
        DeliveryNext::Succeeded,
        None,
    );
    assert_eq!(finish(s, vec![lost]).await, vec![false]);
    assert_eq!(pending(s, "acct_a", &all).await, vec![1, 1, 0]);

    let retry = claim_ok(s, &claim("node_b", t + 5_000, 10)).await;
    assert_eq!(pairs(&retry), pair_list(&[("we_1", "evt_2")]));
    let ok = result(&retry[0], "node_b", DeliveryNext::Succeeded, None);
    assert_eq!(finish(s, vec![ok]).await, vec![true]);
    assert_eq!(pending(s, "acct_a", &all).await, vec![1, 0, 0]);

    // A resend of the failed one is still pending until it succeeds.
    s.redeliver("acct_a", "evt_1", "we_2", true, t + 6_000)
        .await
        .expect("redeliver");
    assert_eq!(pending(s, "acct_a", &all).await, vec![1, 0, 0]);
    let resent = claim_ok(s, &claim("node_b", t + 6_000, 10)).await;
    assert_eq!(pairs(&resent), pair_list(&[("we_2", "evt_1")]));
    let ok = result(&resent[0], "node_b", DeliveryNext::Succeeded, None);
    assert_eq!(finish(s, vec![ok]).await, vec![true]);
    assert_eq!(pending(s, "acct_a", &all).await, vec![0, 0, 0]);
}

/// `delivery_success` in `list_where`: `Some(false)` keeps events with a push
/// delivery not yet succeeded, `Some(true)` the rest (events without deliveries,
/// or with pull deliveries only, among them), with conditions and cursors.
async fn delivery_success_filters_events(f: &Fixture) {
    let s = &f.store;
    emit(s, "acct_a", &[("evt_0", "customer.created")]).await;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![
                endpoint("we_1", &["customer.created", "charge.succeeded"]),
                endpoint("we_2", &["customer.created"]),
                listener("wl_1", &["*"]),
            ],
        ),
    )
    .await;
    emit(s, "acct_a", &[("evt_1", "customer.created")]).await;
    emit(s, "acct_a", &[("evt_2", "charge.succeeded")]).await;
    emit(s, "acct_a", &[("evt_3", "customer.updated")]).await;
    emit(s, "acct_a", &[("evt_4", "customer.created")]).await;
    emit(s, "acct_a", &[("evt_5", "charge.succeeded")]).await;
    add_event_target(s, "acct_b").await;
    emit(s, "acct_b", &[("evt_b", "customer.created")]).await;

    let t = now_ms() + 1_000;
    let got = claim_ok(s, &shared("node_a", t, 100, 100, &[("we_acct_b", 0)])).await;
    assert_eq!(got.len(), 6);
    let results = got
        .iter()
        .map(|d| {
            let next = match (d.event_id.as_str(), d.endpoint_id.as_str()) {
                ("evt_2", _) => DeliveryNext::Failed,
                ("evt_4", "we_2") => DeliveryNext::RetryAt(t + 10_000),
                _ => DeliveryNext::Succeeded,
            };
            result(d, "node_a", next, None)
        })
        .collect();
    assert_eq!(finish(s, results).await, vec![true; 6]);
    // Now: evt_0 has no deliveries, evt_1 and evt_5 succeeded, evt_2 failed,
    // evt_3 has a pull delivery only (not delivered), evt_4 is half done.

    let q = |success: Option<bool>| ListQuery {
        delivery_success: success,
        ..query("event", 10)
    };
    assert_eq!(
        where_ids(s, "acct_a", q(Some(false)), &[]).await,
        ids(&["evt_4", "evt_2"])
    );
    assert_eq!(
        where_ids(s, "acct_a", q(Some(true)), &[]).await,
        ids(&["evt_5", "evt_3", "evt_1", "evt_0"])
    );
    assert_eq!(where_ids(s, "acct_a", q(None), &[]).await.len(), 6);
    let created = exact("type", &["customer.created"]);
    assert_eq!(
        where_ids(s, "acct_a", q(Some(false)), std::slice::from_ref(&created)).await,
        ids(&["evt_4"])
    );
    assert_eq!(
        where_ids(s, "acct_a", q(Some(true)), std::slice::from_ref(&created)).await,
        ids(&["evt_1", "evt_0"])
    );
    let charges = IndexCondition {
        field: "type".into(),
        any_of: vec![IndexValue::Prefix("charge.".into())],
        negated: false,
    };
    assert_eq!(
        where_ids(s, "acct_a", q(Some(false)), std::slice::from_ref(&charges)).await,
        ids(&["evt_2"])
    );
    assert_eq!(
        where_ids(s, "acct_a", q(Some(true)), std::slice::from_ref(&charges)).await,
        ids(&["evt_5"])
    );

    // Cursors and limits page through the filtered events.
    let seq = |id: &'static str| async move { must_get(s, "acct_a", id).await.seq };
    let before = ListQuery {
        cursor: Cursor::Before(seq("evt_5").await),
        limit: 2,
        ..q(Some(true))
    };
    assert_eq!(
        where_ids(s, "acct_a", before, &[]).await,
        ids(&["evt_3", "evt_1"])
    );
    let after = ListQuery {
        cursor: Cursor::After(seq("evt_1").await),
        ..q(Some(true))
    };
    assert_eq!(
        where_ids(s, "acct_a", after, &[]).await,
        ids(&["evt_3", "evt_5"]),
        "ending_before pages come oldest first"
    );
    let after = ListQuery {
        cursor: Cursor::After(seq("evt_0").await),
        limit: 1,
        ..q(Some(false))
    };
    assert_eq!(where_ids(s, "acct_a", after, &[]).await, ids(&["evt_2"]));
    let before = ListQuery {
        cursor: Cursor::Before(seq("evt_4").await),
        ..q(Some(false))
    };
    assert_eq!(where_ids(s, "acct_a", before, &[]).await, ids(&["evt_2"]));

    // Only the account's own events, judged by their own deliveries.
    assert_eq!(
        where_ids(s, "acct_b", q(Some(false)), &[]).await,
        ids(&["evt_b"])
    );
    assert!(where_ids(s, "acct_b", q(Some(true)), &[]).await.is_empty());

    // evt_4's last delivery succeeds: it moves over.
    let retry = claim_ok(
        s,
        &shared("node_b", t + 10_000, 10, 10, &[("we_acct_b", 0)]),
    )
    .await;
    assert_eq!(pairs(&retry), pair_list(&[("we_2", "evt_4")]));
    let ok = result(&retry[0], "node_b", DeliveryNext::Succeeded, None);
    assert_eq!(finish(s, vec![ok]).await, vec![true]);
    assert_eq!(
        where_ids(s, "acct_a", q(Some(false)), &[]).await,
        ids(&["evt_2"])
    );
    assert_eq!(
        where_ids(s, "acct_a", q(Some(true)), &[]).await,
        ids(&["evt_5", "evt_4", "evt_3", "evt_1", "evt_0"])
    );
}

/// Due push deliveries are leased to the claim's owner until `now + lease`; rows
/// leased to anyone are skipped until the lease runs out, then taken over.
async fn claims_lease_due_deliveries(f: &Fixture) {
    let s = &f.store;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![endpoint("we_1", &["*"]), listener("wl_1", &["*"])],
        ),
    )
    .await;
    let before = now_ms();
    emit_each(s, "acct_a", &["evt_1", "evt_2"], "customer.created").await;
    assert!(
        claim_ok(s, &claim("node_a", before - 1, 10))
            .await
            .is_empty(),
        "not due yet"
    );
    let t = now_ms() + 1_000;
    let got = claim_ok(s, &claim("node_a", t, 10)).await;
    assert_eq!(
        pairs(&got),
        pair_list(&[("we_1", "evt_1"), ("we_1", "evt_2")]),
        "push deliveries only, oldest due first"
    );
    for d in &got {
        assert_eq!(
            (
                d.account.as_str(),
                d.push,
                d.status,
                d.attempts,
                d.lease_owner.as_deref(),
                d.lease_expires_at
            ),
            (
                "acct_a",
                true,
                DeliveryStatus::Pending,
                0,
                Some("node_a"),
                Some(t + LEASE_MS)
            )
        );
    }
    let stored = must_delivery(s, "acct_a", "evt_2", "we_1").await;
    assert_eq!(
        (stored.lease_owner.as_deref(), stored.lease_expires_at),
        (Some("node_a"), Some(t + LEASE_MS))
    );
    assert!(
        claim_ok(s, &claim("node_b", t + LEASE_MS - 1, 10))
            .await
            .is_empty(),
        "leased"
    );
    let taken = claim_ok(s, &claim("node_b", t + LEASE_MS, 10)).await;
    assert_eq!(
        pairs(&taken),
        pair_list(&[("we_1", "evt_1"), ("we_1", "evt_2")]),
        "expired leases are taken over"
    );
    assert!(taken
        .iter()
        .all(|d| d.lease_owner.as_deref() == Some("node_b")
            && d.lease_expires_at == Some(t + 2 * LEASE_MS)));
    let stored = must_delivery(s, "acct_a", "evt_1", "we_1").await;
    assert_eq!(stored.lease_owner.as_deref(), Some("node_b"));
    assert!(claim_ok(s, &claim("node_a", t + LEASE_MS + 1, 10))
        .await
        .is_empty());
    // The pull deliveries were never touched.
    let wl = must_delivery(s, "acct_a", "evt_1", "wl_1").await;
    assert_eq!(wl.lease_owner, None);
}

/// A claim with shares takes of each endpoint's due, unleased rows at most its
/// share (its own or the default; 0: none), oldest first, at most `limit` in all.
/// The share bounds each claim, not what the owner holds: a second claim of the
/// same owner takes the next rows.
async fn claims_take_each_endpoints_share(f: &Fixture) {
    let s = &f.store;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![
                endpoint("we_a", &["a.x"]),
                endpoint("we_b", &["b.x"]),
                endpoint("we_c", &["c.x"]),
                listener("wl_a", &["a.x"]),
            ],
        ),
    )
    .await;
    commit_ok(s, batch("acct_b", vec![endpoint("we_d", &["*"])])).await;
    let backlog_a = ["evt_a0", "evt_a1", "evt_a2", "evt_a3", "evt_a4", "evt_a5"];
    emit_each(s, "acct_a", &backlog_a, "a.x").await;
    emit_each(s, "acct_a", &["evt_b0", "evt_b1", "evt_b2"], "b.x").await;
    emit_each(s, "acct_a", &["evt_c0", "evt_c1"], "c.x").await;
    emit_each(s, "acct_b", &["evt_d0", "evt_d1"], "d.x").await;
    let t = now_ms() + 1_000;
    let shares: &[(&str, usize)] = &[("we_a", 3), ("we_c", 0)];

    let got = claim_ok(s, &shared("node_1", t, 100, 2, shares)).await;
    assert_eq!(
        sorted_pairs(&got),
        pair_list(&[
            ("we_a", "evt_a0"),
            ("we_a", "evt_a1"),
            ("we_a", "evt_a2"),
            ("we_b", "evt_b0"),
            ("we_b", "evt_b1"),
            ("we_d", "evt_d0"),
            ("we_d", "evt_d1"),
        ]),
        "we_a's own share, the default for the others, none of we_c"
    );
    assert!(
        got.windows(2)
            .all(|w| (w[0].next_attempt_at, &w[0].event_id)
                <= (w[1].next_attempt_at, &w[1].event_id)),
        "oldest due first"
    );
    assert!(got
        .iter()
        .all(|d| d.push && d.lease_owner.as_deref() == Some("node_1")));
    assert_eq!(
        must_delivery(s, "acct_a", "evt_a3", "we_a")
            .await
            .lease_owner,
        None,
        "rows past the share stay unleased"
    );

    let got = claim_ok(s, &shared("node_1", t, 100, 2, shares)).await;
    assert_eq!(
        sorted_pairs(&got),
        pair_list(&[
            ("we_a", "evt_a3"),
            ("we_a", "evt_a4"),
            ("we_a", "evt_a5"),
            ("we_b", "evt_b2"),
        ]),
        "the share bounds each claim, not what the owner already holds"
    );
    let got = claim_ok(s, &claim("node_2", t, 100)).await;
    assert_eq!(
        sorted_pairs(&got),
        pair_list(&[("we_c", "evt_c0"), ("we_c", "evt_c1")]),
        "no shares: no cap; leased rows and pull rows are skipped"
    );
    assert!(claim_ok(s, &claim("node_3", t + LEASE_MS - 1, 100))
        .await
        .is_empty());

    // The leases run out: a share of one endpoint takes its rows over.
    let got = claim_ok(s, &shared("node_3", t + LEASE_MS, 100, 0, &[("we_b", 10)])).await;
    assert_eq!(
        sorted_pairs(&got),
        pair_list(&[("we_b", "evt_b0"), ("we_b", "evt_b1"), ("we_b", "evt_b2")])
    );
    assert!(got
        .iter()
        .all(|d| d.lease_owner.as_deref() == Some("node_3")
            && d.lease_expires_at == Some(t + 2 * LEASE_MS)));

    // The limit bounds the whole claim; each endpoint still gives its oldest.
    let free: Vec<(String, String)> = pair_list(&[
        ("we_a", "evt_a0"),
        ("we_a", "evt_a1"),
        ("we_a", "evt_a2"),
        ("we_a", "evt_a3"),
        ("we_a", "evt_a4"),
        ("we_a", "evt_a5"),
        ("we_c", "evt_c0"),
        ("we_c", "evt_c1"),
        ("we_d", "evt_d0"),
        ("we_d", "evt_d1"),
    ]);
    let limited = claim_ok(s, &shared("node_4", t + LEASE_MS, 4, 10, &[])).await;
    assert_eq!(limited.len(), 4);
    for (endpoint, event) in sorted_pairs(&limited) {
        let rows: Vec<&(String, String)> = free.iter().filter(|(e, _)| *e == endpoint).collect();
        let taken: Vec<(String, String)> = sorted_pairs(&limited)
            .into_iter()
            .filter(|(e, _)| *e == endpoint)
            .collect();
        let oldest: Vec<(String, String)> = rows.into_iter().take(taken.len()).cloned().collect();
        assert_eq!(
            taken, oldest,
            "{endpoint}: {event} is not among its oldest free rows"
        );
    }
    let rest = claim_ok(s, &claim("node_5", t + LEASE_MS, 100)).await;
    let mut all = sorted_pairs(&limited);
    all.extend(sorted_pairs(&rest));
    all.sort();
    assert_eq!(
        all, free,
        "the rest is taken by the next claim, each row once"
    );
}

/// Each endpoint's rows are taken by `next_attempt_at`, oldest first, whatever
/// order they were created in; rows not yet due stay.
async fn claims_take_each_endpoints_oldest_due_first(f: &Fixture) {
    let s = &f.store;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![endpoint("we_1", &["*"]), endpoint("we_2", &["*"])],
        ),
    )
    .await;
    emit_each(
        s,
        "acct_a",
        &["evt_0", "evt_1", "evt_2", "evt_3"],
        "customer.created",
    )
    .await;
    let t = now_ms() + 10_000;
    for (event_id, we_1, we_2) in [
        ("evt_0", 300, 50),
        ("evt_1", 100, 500),
        ("evt_2", 200, 500),
        ("evt_3", 400, 500),
    ] {
        for (endpoint_id, at) in [("we_1", we_1), ("we_2", we_2)] {
            s.redeliver("acct_a", event_id, endpoint_id, true, t + at)
                .await
                .expect("redeliver");
        }
    }
    let got = claim_ok(s, &claim("node_a", t + 150, 10)).await;
    assert_eq!(
        pairs(&got),
        pair_list(&[("we_2", "evt_0"), ("we_1", "evt_1")]),
        "only what is due, oldest due first"
    );
    let one_of_we_1 = || shared("node_a", t + 1_000, 10, 0, &[("we_1", 1)]);
    for expected in ["evt_2", "evt_0", "evt_3"] {
        let got = claim_ok(s, &one_of_we_1()).await;
        assert_eq!(pairs(&got), pair_list(&[("we_1", expected)]));
    }
    assert!(claim_ok(s, &one_of_we_1()).await.is_empty());
    let got = claim_ok(s, &claim("node_a", t + 1_000, 10)).await;
    assert_eq!(
        sorted_pairs(&got),
        pair_list(&[("we_2", "evt_1"), ("we_2", "evt_2"), ("we_2", "evt_3")])
    );
}

/// A listener's claim takes its own pull deliveries, oldest first, up to the
/// limit; push claims never take them.
async fn listener_claims_take_their_pull_deliveries(f: &Fixture) {
    let s = &f.store;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![
                endpoint("we_1", &["*"]),
                listener("wl_1", &["*"]),
                listener("wl_2", &["charge.succeeded"]),
            ],
        ),
    )
    .await;
    commit_ok(s, batch("acct_b", vec![listener("wl_b", &["*"])])).await;
    emit_each(
        s,
        "acct_a",
        &["evt_1", "evt_2", "evt_3", "evt_4", "evt_5"],
        "customer.created",
    )
    .await;
    emit(s, "acct_a", &[("evt_6", "charge.succeeded")]).await;
    let t = now_ms() + 1_000;
    let event_ids =
        |got: &[Delivery]| -> Vec<String> { got.iter().map(|d| d.event_id.clone()).collect() };
    let first = claim_ok(s, &pull("wl_1", "poll_1", t, 2)).await;
    assert_eq!(event_ids(&first), ids(&["evt_1", "evt_2"]));
    assert!(first.iter().all(|d| !d.push
        && d.endpoint_id == "wl_1"
        && d.lease_owner.as_deref() == Some("poll_1")
        && d.lease_expires_at == Some(t + LEASE_MS)));
    let rest = claim_ok(s, &pull("wl_1", "poll_2", t, 10)).await;
    assert_eq!(event_ids(&rest), ids(&["evt_3", "evt_4", "evt_5", "evt_6"]));
    assert!(claim_ok(s, &pull("wl_1", "poll_3", t, 10)).await.is_empty());
    let other = claim_ok(s, &pull("wl_2", "poll_4", t, 10)).await;
    assert_eq!(event_ids(&other), ids(&["evt_6"]));
    assert!(claim_ok(s, &pull("wl_nobody", "poll_5", t, 10))
        .await
        .is_empty());
    assert!(claim_ok(s, &pull("wl_b", "poll_6", t, 10)).await.is_empty());
    // Pushes take the endpoint's rows and nothing of the listeners'.
    let pushed = claim_ok(s, &claim("node_a", t, 100)).await;
    assert_eq!(pushed.len(), 6);
    assert!(pushed.iter().all(|d| d.push && d.endpoint_id == "we_1"));
    // A listener's expired leases come back to it.
    let again = claim_ok(s, &pull("wl_1", "poll_7", t + LEASE_MS, 10)).await;
    assert_eq!(again.len(), 6);
}

/// A node shutting down gives its leases back, so others take them at once.
async fn release_gives_leases_back(f: &Fixture) {
    let s = &f.store;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![endpoint("we_1", &["*"]), listener("wl_1", &["*"])],
        ),
    )
    .await;
    emit_each(s, "acct_a", &["evt_1", "evt_2"], "customer.created").await;
    let t = now_ms() + 1_000;
    assert_eq!(claim_ok(s, &claim("node_a", t, 10)).await.len(), 2);
    assert_eq!(claim_ok(s, &pull("wl_1", "poll_1", t, 1)).await.len(), 1);
    assert_eq!(s.release_deliveries("poll_1").await.expect("release"), 1);
    assert_eq!(s.release_deliveries("poll_1").await.expect("release"), 0);
    assert_eq!(
        claim_ok(s, &pull("wl_1", "poll_2", t, 10)).await.len(),
        2,
        "the released row and the other one"
    );
    assert!(claim_ok(s, &claim("node_b", t, 10)).await.is_empty());
    assert_eq!(s.release_deliveries("node_a").await.expect("release"), 2);
    let d = must_delivery(s, "acct_a", "evt_1", "we_1").await;
    assert_eq!((d.lease_owner, d.lease_expires_at), (None, None));
    assert_eq!(claim_ok(s, &claim("node_b", t, 10)).await.len(), 2);
    assert_eq!(s.release_deliveries("nobody").await.expect("release"), 0);
}

/// Runs `claims` at once; checks that no row was leased twice and that each
/// returned row is stored as leased to its claimer. Returns (owner, delivery)s.
async fn claim_concurrently(
    s: &DynStore,
    claims: Vec<DeliveryClaim>,
) -> Vec<(String, Vec<Delivery>)> {
    let start = Arc::new(tokio::sync::Barrier::new(claims.len()));
    let tasks = claims.into_iter().map(|c| {
        let (s, start) = (s.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            let got = s.claim_deliveries(&c).await.expect("claim");
            (c.owner, got)
        })
    });
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for handle in futures::future::join_all(tasks).await {
        let (owner, got) = handle.expect("claim task");
        for d in &got {
            assert!(
                seen.insert((d.event_id.clone(), d.endpoint_id.clone())),
                "{} to {} claimed twice",
                d.event_id,
                d.endpoint_id
            );
            assert_eq!(d.lease_owner.as_deref(), Some(owner.as_str()));
            let stored = must_delivery(s, &d.account, &d.event_id, &d.endpoint_id).await;
            assert_eq!(
                stored.lease_owner.as_deref(),
                Some(owner.as_str()),
                "{} to {}",
                d.event_id,
                d.endpoint_id
            );
        }
        out.push((owner, got));
    }
    out
}

async fn concurrent_claims_are_disjoint(f: &Fixture) {
    let s = &f.store;
    commit_ok(s, batch("acct_a", vec![endpoint("we_1", &["*"])])).await;
    let event_ids: Vec<String> = (0..40).map(|i| format!("evt_{i:02}")).collect();
    let pairs_in: Vec<(&str, &str)> = event_ids
        .iter()
        .map(|id| (id.as_str(), "customer.created"))
        .collect();
    emit(s, "acct_a", &pairs_in).await;
    let t = now_ms() + 1_000;
    let claims = (0..8).map(|i| claim(&format!("node_{i}"), t, 7)).collect();
    let mut total = 0;
    for (owner, got) in claim_concurrently(s, claims).await {
        assert!(got.len() <= 7, "{owner} took {} past its limit", got.len());
        total += got.len();
    }
    assert!(total > 0);
    let rest = claim_ok(s, &claim("node_last", t, 100)).await;
    assert_eq!(
        total + rest.len(),
        40,
        "every row is leased once, by the concurrent claims or the last one"
    );
}

/// Owners claiming two endpoints' backlogs at once each get at most their share of
/// each endpoint, and never a row another holds.
async fn concurrent_share_claims_stay_within_their_share(f: &Fixture) {
    let s = &f.store;
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![endpoint("we_1", &["*"]), endpoint("we_2", &["*"])],
        ),
    )
    .await;
    let event_ids: Vec<String> = (0..30).map(|i| format!("evt_{i:02}")).collect();
    let pairs_in: Vec<(&str, &str)> = event_ids
        .iter()
        .map(|id| (id.as_str(), "customer.created"))
        .collect();
    emit(s, "acct_a", &pairs_in).await;
    let t = now_ms() + 1_000;
    let claims = (0..8)
        .map(|i| shared(&format!("node_{i}"), t, 100, 4, &[]))
        .collect();
    let mut total = 0;
    for (owner, got) in claim_concurrently(s, claims).await {
        for endpoint_id in ["we_1", "we_2"] {
            let n = got.iter().filter(|d| d.endpoint_id == endpoint_id).count();
            assert!(n <= 4, "{owner} took {n} of {endpoint_id}");
        }
        total += got.len();
    }
    assert!(total > 0);
    let rest = claim_ok(s, &claim("node_last", t, 100)).await;
    assert_eq!(total + rest.len(), 60);
}

async fn redeliver_resets_or_creates(f: &Fixture) {
    let s = &f.store;
    commit_ok(s, batch("acct_a", vec![endpoint("we_1", &["*"])])).await;
    emit(s, "acct_a", &[("evt_1", "customer.created")]).await;
    let t = now_ms() + 1_000;
    let got = claim_ok(s, &claim("node_a", t, 10)).await;
    let fail = result(
        &got[0],
        "node_a",
        DeliveryNext::Failed,
        Some(attempt("wha_1", 1, Some(500), false)),
    );
    assert_eq!(finish(s, vec![fail]).await, vec![true]);

    s.redeliver("acct_a", "evt_1", "we_1", true, t + 9_000)
        .await
        .expect("redeliver");
    let d = must_delivery(s, "acct_a", "evt_1", "we_1").await;
    assert_eq!(
        (d.status, d.attempts, d.next_attempt_at),
        (DeliveryStatus::Pending, 1, t + 9_000),
        "the attempt count carries on"
    );
    // A leased delivery loses its lease.
    let leased = claim_ok(s, &claim("node_a", t + 9_000, 10)).await;
    assert_eq!(leased.len(), 1);
    s.redeliver("acct_a", "evt_1", "we_1", true, t + 9_100)
        .await
        .expect("redeliver");
    let d = must_delivery(s, "acct_a", "evt_1", "we_1").await;
    assert_eq!(
        (d.lease_owner, d.lease_expires_at, d.next_attempt_at),
        (None, None, t + 9_100)
    );
    // A new pair is created (an endpoint made after the event).
    s.redeliver("acct_a", "evt_1", "we_2", true, t + 9_200)
        .await
        .expect("redeliver");
    let d = must_delivery(s, "acct_a", "evt_1", "we_2").await;
    assert_eq!(
        (d.status, d.attempts, d.next_attempt_at, d.push),
        (DeliveryStatus::Pending, 0, t + 9_200, true)
    );
    s.redeliver("acct_a", "evt_1", "wl_1", false, t + 9_300)
        .await
        .expect("redeliver");
    assert!(!must_delivery(s, "acct_a", "evt_1", "wl_1").await.push);
    assert_eq!(pending(s, "acct_a", &["evt_1"]).await, vec![2]);
    // Another account cannot touch it.
    s.redeliver("acct_b", "evt_1", "we_2", true, 1)
        .await
        .expect("redeliver");
    let d = must_delivery(s, "acct_a", "evt_1", "we_2").await;
    assert_eq!(d.next_attempt_at, t + 9_200);
    assert!(find_delivery(s, "acct_b", "evt_1", "we_2").await.is_none());
}
