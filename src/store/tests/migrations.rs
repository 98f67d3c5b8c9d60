//! PostgreSQL migrations: nodes booting together, and databases of earlier
//! schemas upgraded with what they hold.

use super::*;

/// Several nodes booting at once against an empty database all come up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_migrations() {
    let Some(location) = Location::postgres().await else {
        return;
    };
    let Location::Postgres { url, .. } = &location else {
        unreachable!("a PostgreSQL location");
    };
    let opens = (0..4).map(|_| PostgresStore::open(url));
    let stores = futures::future::join_all(opens).await;
    let stores: Vec<PostgresStore> = stores
        .into_iter()
        .map(|s| s.unwrap_or_else(|e| panic!("concurrent open failed: {e:#}")))
        .collect();
    for store in &stores {
        assert_eq!(store.backend(), "postgres");
        assert!(store.list_accounts().await.expect("list").is_empty());
    }
    let client = admin_client(url).await;
    assert_every_migration_applied(&client).await;
    drop(stores);
}

/// The database records every PostgreSQL migration as applied, in order.
async fn assert_every_migration_applied(client: &tokio_postgres::Client) {
    let versions: Vec<i64> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("schema_migrations")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let all = i64::try_from(crate::store::postgres::MIGRATIONS.len()).expect("a few migrations");
    assert_eq!(versions, (1..=all).collect::<Vec<i64>>());
}

/// A fresh PostgreSQL database (none when PostgreSQL is not configured), brought to
/// schema `version` by the migrations of that time and recorded as such, as an
/// older payground left it: its location, its URL and a client of it.
async fn postgres_at_schema(version: usize) -> Option<(Location, String, tokio_postgres::Client)> {
    let location = Location::postgres().await?;
    let Location::Postgres { url, .. } = &location else {
        unreachable!("a PostgreSQL location");
    };
    let url = url.clone();
    let old = admin_client(&url).await;
    old.batch_execute(
        "CREATE TABLE schema_migrations (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await
    .expect("schema_migrations");
    for (i, sql) in crate::store::postgres::MIGRATIONS[..version]
        .iter()
        .enumerate()
    {
        old.batch_execute(sql).await.expect("old migration");
        old.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )
        .await
        .expect("old version");
    }
    Some((location, url, old))
}

/// A database written before objects kept their index keys: migration 4 fills them
/// from the index, so the next version of an old object drops its old index rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migration_4_carries_index_keys_over() {
    let Some((location, url, old)) = postgres_at_schema(3).await else {
        return;
    };
    let url = url.as_str();
    let seq: i64 = old
        .query_one(
            "INSERT INTO objects (account, id, kind, created, version, data)
             VALUES ('acct_a', 'cus_old', 'customer', 1, 1, '{}') RETURNING seq",
            &[],
        )
        .await
        .expect("old object")
        .get(0);
    for (field, value) in [("email", "a@x"), ("name", "A")] {
        old.execute(
            "INSERT INTO object_index (account, kind, field, value, seq, id)
             VALUES ('acct_a', 'customer', $1, $2, $3, 'cus_old')",
            &[&field, &value, &seq],
        )
        .await
        .expect("old index row");
    }
    drop(old);
    let store: DynStore = Arc::new(PostgresStore::open(url).await.expect("migrated open"));
    let by = |field: &str, value: &str| ListQuery {
        filter: Some((field.into(), value.into())),
        ..query("customer", 10)
    };
    assert_eq!(
        list_ids(&store, "acct_a", by("email", "a@x")).await,
        ids(&["cus_old"])
    );
    let current = must_get(&store, "acct_a", "cus_old").await;
    commit_ok(
        &store,
        batch(
            "acct_a",
            vec![indexed(
                update_of(&current, 1, r#"{"v":2}"#),
                &[("email", "b@x")],
            )],
        ),
    )
    .await;
    assert!(list_ids(&store, "acct_a", by("email", "a@x"))
        .await
        .is_empty());
    assert!(list_ids(&store, "acct_a", by("name", "A")).await.is_empty());
    assert_eq!(
        list_ids(&store, "acct_a", by("email", "b@x")).await,
        ids(&["cus_old"])
    );
    drop(store);
    drop(location);
}

/// A database written at schema 4, when events waited in the outbox for a fan-out:
/// migration 5 gives enabled endpoints and listeners their `target_event` rows,
/// turns the outbox rows into deliveries to the targets that existed when each
/// event was written and take its type, and drops the outbox; new events get
/// deliveries from the migrated rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migration_5_turns_the_outbox_into_deliveries() {
    let Some((location, url, old)) = postgres_at_schema(4).await else {
        return;
    };
    let url = url.as_str();
    // In the order they were written (seq): objects as the old code stored them.
    let endpoint_data = |id: &str, status: &str, events: &str| {
        format!(
            r#"{{"id":"{id}","object":"webhook_endpoint","status":"{status}","enabled_events":{events},"url":"http://x"}}"#
        )
    };
    let event_data = |id: &str, t: &str| {
        format!(r#"{{"id":"{id}","object":"event","type":"{t}","pending_webhooks":1}}"#)
    };
    /// account, id, kind, deleted, data, index rows
    type OldRow<'a> = (
        &'a str,
        &'a str,
        &'a str,
        bool,
        String,
        Vec<(&'a str, String)>,
    );
    let rows: Vec<OldRow> = vec![
        (
            "acct_a",
            "we_on",
            "webhook_endpoint",
            false,
            endpoint_data(
                "we_on",
                "enabled",
                r#"["customer.created","charge.succeeded","customer.created"]"#,
            ),
            vec![],
        ),
        (
            "acct_a",
            "we_off",
            "webhook_endpoint",
            false,
            endpoint_data("we_off", "disabled", r#"["*"]"#),
            vec![],
        ),
        (
            "acct_a",
            "we_gone",
            "webhook_endpoint",
            true,
            endpoint_data("we_gone", "enabled", r#"["*"]"#),
            vec![],
        ),
        (
            "acct_b",
            "we_b",
            "webhook_endpoint",
            false,
            endpoint_data("we_b", "enabled", r#"["*"]"#),
            vec![],
        ),
        (
            "acct_a",
            "evt_done",
            "event",
            false,
            event_data("evt_done", "customer.created"),
            vec![("type", "customer.created".to_string())],
        ),
        (
            "acct_a",
            "evt_old",
            "event",
            false,
            event_data("evt_old", "customer.created"),
            vec![
                ("type", "customer.created".to_string()),
                ("delivery", "pending".to_string()),
            ],
        ),
        (
            "acct_a",
            "evt_other",
            "event",
            false,
            event_data("evt_other", "invoice.paid"),
            vec![
                ("type", "invoice.paid".to_string()),
                ("delivery", "pending".to_string()),
            ],
        ),
        (
            "acct_a",
            "wl_late",
            "payground.listener",
            false,
            r#"{"id":"wl_late","object":"payground.listener","enabled_events":["*"],"forward_to":"http://y"}"#
                .to_string(),
            vec![("forward_to", "http://y".to_string())],
        ),
    ];
    for (account, id, kind, deleted, data, index) in &rows {
        let keys: Vec<(&str, &str)> = index.iter().map(|(f, v)| (*f, v.as_str())).collect();
        let keys = serde_json::to_string(&keys).expect("keys");
        let seq: i64 = old
            .query_one(
                "INSERT INTO objects (account, id, kind, created, version, deleted, data, index_keys)
                 VALUES ($1, $2, $3, 1, 1, $4, $5, $6) RETURNING seq",
                &[account, id, kind, deleted, data, &keys],
            )
            .await
            .expect("old object")
            .get(0);
        for (field, value) in index {
            old.execute(
                "INSERT INTO object_index (account, kind, field, value, seq, id)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[account, kind, field, value, &seq, id],
            )
            .await
            .expect("old index row");
        }
    }
    // evt_done was fanned out and delivered; evt_old and evt_other still wait.
    old.batch_execute(
        "INSERT INTO webhook_deliveries
            (account, event_id, endpoint_id, push, status, attempts, next_attempt_at,
             succeeded_at, created_at)
         VALUES ('acct_a', 'evt_done', 'we_on', TRUE, 'succeeded', 1, 5, 5, 1);
         INSERT INTO outbox (account, event_id, created) VALUES
            ('acct_a', 'evt_old', 1), ('acct_a', 'evt_other', 1);",
    )
    .await
    .expect("old deliveries and outbox");

    let before = now_ms();
    let store: DynStore = Arc::new(PostgresStore::open(url).await.expect("migrated open"));
    let after = now_ms();
    assert_every_migration_applied(&old).await;
    let outbox: Option<String> = old
        .query_one("SELECT to_regclass('outbox')::TEXT", &[])
        .await
        .expect("to_regclass")
        .get(0);
    assert_eq!(outbox, None, "the outbox is dropped");
    let mut indexes: Vec<String> = old
        .query(
            "SELECT indexname::TEXT FROM pg_indexes WHERE tablename = 'webhook_deliveries'",
            &[],
        )
        .await
        .expect("pg_indexes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        ids(&["webhook_deliveries_pending", "webhook_deliveries_pkey"])
    );

    assert_eq!(
        location.deliveries("acct_a").await,
        triples(&[("evt_done", "we_on", true), ("evt_old", "we_on", true)]),
        "the waiting event of a type we_on takes became exactly one delivery"
    );
    assert!(location.deliveries("acct_b").await.is_empty());
    let d = must_delivery(&store, "acct_a", "evt_old", "we_on").await;
    assert_eq!(
        (d.status, d.attempts, d.lease_owner, d.succeeded_at),
        (DeliveryStatus::Pending, 0, None, None)
    );
    assert!(
        (before..=after).contains(&d.next_attempt_at),
        "due when migrated: {} not in {before}..={after}",
        d.next_attempt_at
    );
    let done = must_delivery(&store, "acct_a", "evt_done", "we_on").await;
    assert_eq!(
        (done.status, done.succeeded_at),
        (DeliveryStatus::Succeeded, Some(5))
    );
    assert_eq!(
        pending(&store, "acct_a", &["evt_old", "evt_done", "evt_other"]).await,
        vec![1, 0, 0]
    );
    let old_delivery_rows = ListQuery {
        filter: Some(("delivery".into(), "pending".into())),
        ..query("event", 10)
    };
    assert!(
        list_ids(&store, "acct_a", old_delivery_rows)
            .await
            .is_empty(),
        "the events' old delivery index rows are gone"
    );
    let by_type = ListQuery {
        filter: Some(("type".into(), "customer.created".into())),
        ..query("event", 10)
    };
    assert_eq!(
        list_ids(&store, "acct_a", by_type).await,
        ids(&["evt_old", "evt_done"])
    );
    let t = now_ms() + 1_000;
    let got = claim_ok(&store, &claim("node_a", t, 10)).await;
    assert_eq!(pairs(&got), pair_list(&[("we_on", "evt_old")]));

    // New events: the enabled endpoint by its types, the listener by `*`; the
    // disabled and deleted endpoints never.
    emit(
        &store,
        "acct_a",
        &[
            ("evt_n1", "customer.created"),
            ("evt_n2", "charge.succeeded"),
            ("evt_n3", "invoice.paid"),
        ],
    )
    .await;
    emit(&store, "acct_b", &[("evt_nb", "invoice.paid")]).await;
    let new_rows: Vec<(String, String, bool)> = location
        .deliveries("acct_a")
        .await
        .into_iter()
        .filter(|(e, _, _)| e.starts_with("evt_n"))
        .collect();
    assert_eq!(
        new_rows,
        triples(&[
            ("evt_n1", "we_on", true),
            ("evt_n1", "wl_late", false),
            ("evt_n2", "we_on", true),
            ("evt_n2", "wl_late", false),
            ("evt_n3", "wl_late", false),
        ])
    );
    assert_eq!(
        location.deliveries("acct_b").await,
        triples(&[("evt_nb", "we_b", true)])
    );
    // The migrated rows are the endpoint's index keys: disabling it drops them.
    retarget(&store, "acct_a", "we_on", &[]).await;
    emit(&store, "acct_a", &[("evt_n4", "customer.created")]).await;
    let n4: Vec<(String, String, bool)> = location
        .deliveries("acct_a")
        .await
        .into_iter()
        .filter(|(e, _, _)| e == "evt_n4")
        .collect();
    assert_eq!(n4, triples(&[("evt_n4", "wl_late", false)]));
    drop(store);
    drop(location);
}

/// A database written at schema 5, with the server's default collation on every
/// text: migration 6 makes the key and index texts compare as bytes, and what was
/// stored is still found by id, by index row and by idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migration_6_compares_keys_as_bytes() {
    let Some((location, url, old)) = postgres_at_schema(5).await else {
        return;
    };
    let url = url.as_str();
    old.batch_execute(
        "INSERT INTO objects (account, id, kind, created, version, data, index_keys)
         VALUES ('acct_a', 'cus_old', 'customer', 1, 1, '{}', '[[\"email\",\"a@x\"]]');
         INSERT INTO object_index (account, kind, field, value, seq, id)
         SELECT 'acct_a', 'customer', 'email', 'a@x', seq, 'cus_old' FROM objects;
         INSERT INTO idempotency (account, key, fingerprint, status, body, created)
         VALUES ('acct_a', 'key_old', 'fp', 200, '{}', 1);",
    )
    .await
    .expect("old rows");
    let store: DynStore = Arc::new(PostgresStore::open(url).await.expect("migrated open"));
    let not_bytes: Vec<String> = old
        .query(
            "SELECT table_name::TEXT || '.' || column_name::TEXT
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND data_type = 'text'
               AND (table_name, column_name) IN (
                 ('objects', 'id'), ('objects', 'account'), ('objects', 'kind'),
                 ('object_index', 'account'), ('object_index', 'kind'),
                 ('object_index', 'field'), ('object_index', 'value'),
                 ('idempotency', 'key'), ('webhook_deliveries', 'event_id'),
                 ('webhook_deliveries', 'endpoint_id'), ('accounts', 'secret_key'))
               AND collation_name IS DISTINCT FROM 'C'",
            &[],
        )
        .await
        .expect("information_schema")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(not_bytes.is_empty(), "still collated: {not_bytes:?}");
    assert_eq!(must_get(&store, "acct_a", "cus_old").await.id, "cus_old");
    let by_email = ListQuery {
        filter: Some(("email".into(), "a@x".into())),
        ..query("customer", 10)
    };
    assert_eq!(
        list_ids(&store, "acct_a", by_email).await,
        ids(&["cus_old"])
    );
    let found = store
        .idempotency_get("acct_a", "key_old")
        .await
        .expect("idempotency lookup");
    assert_eq!(found.map(|r| r.fingerprint), Some("fp".to_string()));
    drop(store);
    drop(location);
}
