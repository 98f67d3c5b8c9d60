//! Lists: order, cursors, `created` ranges, index filters, deleted objects,
//! `list_where` conditions.

use super::*;

conformance!(
    list_order_and_cursors,
    list_created_range,
    list_index_filter,
    deleted_objects_leave_lists,
    list_where_conditions,
);

async fn list_order_and_cursors(f: &Fixture) {
    let s = &f.store;
    let c = five_customers(s, "acct_a").await;
    insert(s, "acct_a", new_object("ch_1", "charge", 105)).await;
    insert(s, "acct_b", new_object("cus_b1", "customer", 105)).await;

    let all = s
        .list("acct_a", &query("customer", 10))
        .await
        .expect("list");
    assert_eq!(
        all.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["cus_5", "cus_4", "cus_3", "cus_2", "cus_1"]
    );
    assert!(
        all.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first by seq"
    );
    assert_eq!(all[0].data, c[4].data);
    assert_eq!(all[0].version, 1);

    assert_eq!(
        list_ids(s, "acct_a", query("customer", 2)).await,
        ids(&["cus_5", "cus_4"])
    );
    assert!(list_ids(s, "acct_a", query("customer", 0)).await.is_empty());
    assert_eq!(
        list_ids(s, "acct_a", query("charge", 10)).await,
        ids(&["ch_1"])
    );
    assert_eq!(
        list_ids(s, "acct_b", query("customer", 10)).await,
        ids(&["cus_b1"])
    );
    assert!(list_ids(s, "acct_c", query("customer", 10))
        .await
        .is_empty());
    assert!(list_ids(s, "acct_a", query("invoice", 10)).await.is_empty());

    let before = |seq, limit| ListQuery {
        cursor: Cursor::Before(seq),
        ..query("customer", limit)
    };
    let after = |seq, limit| ListQuery {
        cursor: Cursor::After(seq),
        ..query("customer", limit)
    };
    assert_eq!(
        list_ids(s, "acct_a", before(c[2].seq, 10)).await,
        ids(&["cus_2", "cus_1"])
    );
    assert_eq!(
        list_ids(s, "acct_a", before(c[4].seq, 2)).await,
        ids(&["cus_4", "cus_3"])
    );
    assert!(list_ids(s, "acct_a", before(c[0].seq, 10)).await.is_empty());
    // After returns the page oldest first; the caller reverses it.
    assert_eq!(
        list_ids(s, "acct_a", after(c[1].seq, 10)).await,
        ids(&["cus_3", "cus_4", "cus_5"])
    );
    assert_eq!(
        list_ids(s, "acct_a", after(c[1].seq, 2)).await,
        ids(&["cus_3", "cus_4"])
    );
    assert!(list_ids(s, "acct_a", after(c[4].seq, 10)).await.is_empty());
}

async fn list_created_range(f: &Fixture) {
    let s = &f.store;
    let c = five_customers(s, "acct_a").await; // created 100, 110, 120, 130, 140
    let range = |created: CreatedRange| ListQuery {
        created,
        ..query("customer", 10)
    };
    let r = CreatedRange::default();
    assert_eq!(
        list_ids(s, "acct_a", range(CreatedRange { gt: Some(110), ..r })).await,
        ids(&["cus_5", "cus_4", "cus_3"])
    );
    assert_eq!(
        list_ids(
            s,
            "acct_a",
            range(CreatedRange {
                gte: Some(110),
                ..r
            })
        )
        .await,
        ids(&["cus_5", "cus_4", "cus_3", "cus_2"])
    );
    assert_eq!(
        list_ids(s, "acct_a", range(CreatedRange { lt: Some(130), ..r })).await,
        ids(&["cus_3", "cus_2", "cus_1"])
    );
    assert_eq!(
        list_ids(
            s,
            "acct_a",
            range(CreatedRange {
                lte: Some(130),
                ..r
            })
        )
        .await,
        ids(&["cus_4", "cus_3", "cus_2", "cus_1"])
    );
    assert_eq!(
        list_ids(
            s,
            "acct_a",
            range(CreatedRange {
                gte: Some(110),
                lt: Some(140),
                ..r
            })
        )
        .await,
        ids(&["cus_4", "cus_3", "cus_2"])
    );
    assert_eq!(
        list_ids(
            s,
            "acct_a",
            range(CreatedRange {
                gt: Some(100),
                gte: Some(120),
                lt: Some(140),
                lte: Some(135),
            })
        )
        .await,
        ids(&["cus_4", "cus_3"])
    );
    assert!(
        list_ids(s, "acct_a", range(CreatedRange { gt: Some(140), ..r }))
            .await
            .is_empty()
    );
    // A range combined with a cursor and a limit.
    let q = ListQuery {
        created: CreatedRange {
            gte: Some(110),
            ..r
        },
        cursor: Cursor::Before(c[4].seq),
        ..query("customer", 2)
    };
    assert_eq!(list_ids(s, "acct_a", q).await, ids(&["cus_4", "cus_3"]));
    let q = ListQuery {
        created: CreatedRange { lt: Some(140), ..r },
        cursor: Cursor::After(c[0].seq),
        ..query("customer", 10)
    };
    assert_eq!(
        list_ids(s, "acct_a", q).await,
        ids(&["cus_2", "cus_3", "cus_4"])
    );
}

async fn list_index_filter(f: &Fixture) {
    let s = &f.store;
    let x = ("email", "x@example.com");
    let y = ("email", "y@example.com");
    let c1 = insert(
        s,
        "acct_a",
        indexed(new_object("cus_1", "customer", 100), &[x, ("name", "one")]),
    )
    .await;
    insert(
        s,
        "acct_a",
        indexed(new_object("cus_2", "customer", 110), &[y]),
    )
    .await;
    let c3 = insert(
        s,
        "acct_a",
        indexed(new_object("cus_3", "customer", 120), &[x]),
    )
    .await;
    insert(s, "acct_a", new_object("cus_4", "customer", 130)).await;
    // The same pair twice must not duplicate the object in the list.
    let c5 = insert(
        s,
        "acct_a",
        indexed(new_object("cus_5", "customer", 140), &[x, x]),
    )
    .await;
    insert(
        s,
        "acct_a",
        indexed(new_object("ch_1", "charge", 150), &[x]),
    )
    .await;
    insert(
        s,
        "acct_b",
        indexed(new_object("cus_b1", "customer", 150), &[x]),
    )
    .await;

    let filtered = |(field, value): (&str, &str)| ListQuery {
        filter: Some((field.into(), value.into())),
        ..query("customer", 10)
    };
    assert_eq!(
        list_ids(s, "acct_a", filtered(x)).await,
        ids(&["cus_5", "cus_3", "cus_1"])
    );
    assert_eq!(list_ids(s, "acct_a", filtered(y)).await, ids(&["cus_2"]));
    assert_eq!(
        list_ids(s, "acct_a", filtered(("name", "one"))).await,
        ids(&["cus_1"])
    );
    assert!(
        list_ids(s, "acct_a", filtered(("email", "nobody@example.com")))
            .await
            .is_empty()
    );
    assert!(list_ids(s, "acct_a", filtered(("phone", "x@example.com")))
        .await
        .is_empty());
    assert_eq!(list_ids(s, "acct_b", filtered(x)).await, ids(&["cus_b1"]));
    let charges = ListQuery {
        kind: "charge".into(),
        ..filtered(x)
    };
    assert_eq!(list_ids(s, "acct_a", charges).await, ids(&["ch_1"]));

    // Filters combine with limits, cursors and created ranges.
    assert_eq!(
        list_ids(
            s,
            "acct_a",
            ListQuery {
                limit: 1,
                ..filtered(x)
            }
        )
        .await,
        ids(&["cus_5"])
    );
    let q = ListQuery {
        cursor: Cursor::Before(c5.seq),
        ..filtered(x)
    };
    assert_eq!(list_ids(s, "acct_a", q).await, ids(&["cus_3", "cus_1"]));
    let q = ListQuery {
        cursor: Cursor::After(c1.seq),
        ..filtered(x)
    };
    assert_eq!(list_ids(s, "acct_a", q).await, ids(&["cus_3", "cus_5"]));
    let q = ListQuery {
        created: CreatedRange {
            gt: Some(100),
            lt: Some(140),
            ..Default::default()
        },
        ..filtered(x)
    };
    assert_eq!(list_ids(s, "acct_a", q).await, ids(&["cus_3"]));

    // An update replaces the object's index rows.
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![indexed(update_of(&c3, 1, r#"{"moved":true}"#), &[y])],
        ),
    )
    .await;
    assert_eq!(
        list_ids(s, "acct_a", filtered(x)).await,
        ids(&["cus_5", "cus_1"])
    );
    assert_eq!(
        list_ids(s, "acct_a", filtered(y)).await,
        ids(&["cus_3", "cus_2"])
    );
    let listed = s.list("acct_a", &filtered(y)).await.expect("list");
    assert_eq!(
        (listed[0].version, listed[0].data.as_str()),
        (2, r#"{"moved":true}"#)
    );
    // An update that keeps one key and changes another.
    commit_ok(
        s,
        batch(
            "acct_a",
            vec![indexed(update_of(&c1, 1, "{}"), &[x, ("name", "two")])],
        ),
    )
    .await;
    assert_eq!(
        list_ids(s, "acct_a", filtered(x)).await,
        ids(&["cus_5", "cus_1"])
    );
    assert!(list_ids(s, "acct_a", filtered(("name", "one")))
        .await
        .is_empty());
    assert_eq!(
        list_ids(s, "acct_a", filtered(("name", "two"))).await,
        ids(&["cus_1"])
    );
    // An update without index entries removes them all.
    commit_ok(s, batch("acct_a", vec![update_of(&c1, 2, "{}")])).await;
    assert_eq!(list_ids(s, "acct_a", filtered(x)).await, ids(&["cus_5"]));
    assert!(list_ids(s, "acct_a", filtered(("name", "one")))
        .await
        .is_empty());
    assert_eq!(list_ids(s, "acct_a", query("customer", 10)).await.len(), 5);
}

async fn deleted_objects_leave_lists(f: &Fixture) {
    let s = &f.store;
    let x = ("email", "x@example.com");
    let c1 = insert(
        s,
        "acct_a",
        indexed(new_object("cus_1", "customer", 100), &[x]),
    )
    .await;
    let c2 = insert(
        s,
        "acct_a",
        indexed(new_object("cus_2", "customer", 110), &[x]),
    )
    .await;

    let mut delete = indexed(update_of(&c2, 1, r#"{"id":"cus_2","deleted":true}"#), &[x]);
    delete.deleted = true;
    commit_ok(s, batch("acct_a", vec![delete])).await;
    // Created deleted: never listed, still retrievable.
    let mut born_deleted = indexed(new_object("cus_3", "customer", 120), &[x]);
    born_deleted.deleted = true;
    commit_ok(s, batch("acct_a", vec![born_deleted])).await;

    let filtered = ListQuery {
        filter: Some(("email".into(), "x@example.com".into())),
        ..query("customer", 10)
    };
    assert_eq!(
        list_ids(s, "acct_a", query("customer", 10)).await,
        ids(&["cus_1"])
    );
    assert_eq!(
        list_ids(s, "acct_a", filtered.clone()).await,
        ids(&["cus_1"])
    );
    let after = ListQuery {
        cursor: Cursor::After(c1.seq),
        ..query("customer", 10)
    };
    assert!(list_ids(s, "acct_a", after).await.is_empty());

    let gone = must_get(s, "acct_a", "cus_2").await;
    assert!(gone.deleted);
    assert_eq!((gone.version, gone.seq), (2, c2.seq));
    assert_eq!(gone.data, r#"{"id":"cus_2","deleted":true}"#);
    let never = must_get(s, "acct_a", "cus_3").await;
    assert!(never.deleted);
    assert_eq!(never.version, 1);

    // Deleting the last one empties both lists.
    let mut delete = update_of(&c1, 1, "{}");
    delete.deleted = true;
    commit_ok(s, batch("acct_a", vec![delete])).await;
    assert!(list_ids(s, "acct_a", query("customer", 10))
        .await
        .is_empty());
    assert!(list_ids(s, "acct_a", filtered).await.is_empty());
}

async fn list_where_conditions(f: &Fixture) {
    let s = &f.store;
    let types = [
        ("evt_1", 100, "customer.created"),
        ("evt_2", 110, "charge.succeeded"),
        ("evt_3", 120, "customer.updated"),
        ("evt_4", 130, "customer.deleted"),
        ("evt_5", 140, "customerx.created"),
    ];
    for (id, created, t) in types {
        insert(s, "acct_a", event(id, created, t)).await;
    }
    insert(s, "acct_b", event("evt_b", 100, "customer.created")).await;
    insert(s, "acct_a", new_object("cus_1", "customer", 100)).await;
    // evt_3 is flagged through an update that rewrites its index rows.
    let e3 = must_get(s, "acct_a", "evt_3").await;
    let mut flagged = update_of(&e3, e3.version, &e3.data);
    flagged.index = vec![
        ("type".into(), "customer.updated".into()),
        ("flag".into(), "on".into()),
    ];
    commit_ok(s, batch("acct_a", vec![flagged])).await;

    let q = || query("event", 10);
    assert_eq!(
        where_ids(s, "acct_a", q(), &[]).await,
        ids(&["evt_5", "evt_4", "evt_3", "evt_2", "evt_1"])
    );
    assert_eq!(
        where_ids(
            s,
            "acct_a",
            q(),
            &[exact("type", &["customer.created", "charge.succeeded"])]
        )
        .await,
        ids(&["evt_2", "evt_1"])
    );
    let prefix = IndexCondition {
        field: "type".into(),
        any_of: vec![IndexValue::Prefix("customer.".into())],
        negated: false,
    };
    assert_eq!(
        where_ids(s, "acct_a", q(), std::slice::from_ref(&prefix)).await,
        ids(&["evt_4", "evt_3", "evt_1"]),
        "a prefix matches from the start only, and literally (the dot is no wildcard)"
    );
    let flagged_only = exact("flag", &["on"]);
    let not_flagged = IndexCondition {
        negated: true,
        ..flagged_only.clone()
    };
    assert_eq!(
        where_ids(s, "acct_a", q(), &[prefix.clone(), flagged_only.clone()]).await,
        ids(&["evt_3"])
    );
    assert_eq!(
        where_ids(s, "acct_a", q(), &[prefix.clone(), not_flagged]).await,
        ids(&["evt_4", "evt_1"])
    );
    let nothing = IndexCondition {
        field: "type".into(),
        any_of: vec![],
        negated: false,
    };
    assert!(where_ids(s, "acct_a", q(), std::slice::from_ref(&nothing))
        .await
        .is_empty());
    let everything = IndexCondition {
        negated: true,
        ..nothing
    };
    assert_eq!(where_ids(s, "acct_a", q(), &[everything]).await.len(), 5);

    // Range, cursor and limit work as in `list`.
    let e2 = must_get(s, "acct_a", "evt_2").await;
    let e4 = must_get(s, "acct_a", "evt_4").await;
    let ranged = ListQuery {
        created: CreatedRange {
            gte: Some(110),
            lt: Some(140),
            ..Default::default()
        },
        ..q()
    };
    assert_eq!(
        where_ids(s, "acct_a", ranged, &[]).await,
        ids(&["evt_4", "evt_3", "evt_2"])
    );
    let before = ListQuery {
        cursor: Cursor::Before(e4.seq),
        limit: 2,
        ..q()
    };
    assert_eq!(
        where_ids(s, "acct_a", before, std::slice::from_ref(&prefix)).await,
        ids(&["evt_3", "evt_1"])
    );
    let after = ListQuery {
        cursor: Cursor::After(e2.seq),
        limit: 2,
        ..q()
    };
    assert_eq!(
        where_ids(s, "acct_a", after, &[]).await,
        ids(&["evt_3", "evt_4"]),
        "ending_before pages come oldest first, as in `list`"
    );
    assert_eq!(
        where_ids(s, "acct_b", q(), std::slice::from_ref(&prefix)).await,
        ids(&["evt_b"])
    );
    // Deleted objects leave these lists too.
    let mut gone = update_of(&e4, e4.version, &e4.data);
    gone.deleted = true;
    commit_ok(s, batch("acct_a", vec![gone])).await;
    assert_eq!(
        where_ids(s, "acct_a", q(), &[prefix]).await,
        ids(&["evt_3", "evt_1"])
    );
}
