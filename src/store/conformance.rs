//! The suite every [`Store`] implementation must pass.
//!
//! Each case runs against SQLite (a fresh temporary file per test) and, when
//! `PAYGROUND_TEST_DATABASE_URL` names a PostgreSQL server, against PostgreSQL (a
//! fresh database per test, dropped afterwards). Without that variable the
//! PostgreSQL variants say so and pass.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_postgres::NoTls;

use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::*;

const DATABASE_URL_VAR: &str = "PAYGROUND_TEST_DATABASE_URL";

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Where a test's store lives; removes it when dropped.
enum Location {
    Sqlite(PathBuf),
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl Location {
    fn sqlite() -> Location {
        let path =
            std::env::temp_dir().join(format!("payground-conformance-{}.db", random_suffix()));
        Location::Sqlite(path)
    }

    /// A fresh, empty database on the server the environment names, or `None` (after
    /// saying so) when no server is configured.
    async fn postgres() -> Option<Location> {
        let admin_url = match std::env::var(DATABASE_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                eprintln!("skipping PostgreSQL store tests: {DATABASE_URL_VAR} is not set");
                return None;
            }
        };
        let name = format!("pg_conformance_{}", random_suffix());
        let admin = admin_client(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
        let url = with_database(&admin_url, &name);
        Some(Location::Postgres {
            admin_url,
            name,
            url,
        })
    }

    async fn open(&self) -> DynStore {
        match self {
            Location::Sqlite(path) => {
                let path = path.to_str().expect("temp path is UTF-8");
                Arc::new(SqliteStore::open(path).expect("open the SQLite store"))
            }
            Location::Postgres { url, .. } => Arc::new(
                PostgresStore::open(url)
                    .await
                    .expect("open the PostgreSQL store"),
            ),
        }
    }

    /// The account's outbox, read behind the store's back, oldest first.
    async fn outbox(&self, account: &str) -> Vec<String> {
        match self {
            Location::Sqlite(path) => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .expect("open the SQLite file");
                let mut stmt = conn
                    .prepare("SELECT event_id FROM outbox WHERE account = ?1 ORDER BY seq")
                    .expect("prepare");
                let rows = stmt
                    .query_map([account], |r| r.get::<_, String>(0))
                    .expect("query the outbox");
                rows.collect::<Result<_, _>>().expect("read the outbox")
            }
            Location::Postgres { url, .. } => {
                let client = admin_client(url).await;
                client
                    .query(
                        "SELECT event_id FROM outbox WHERE account = $1 ORDER BY seq",
                        &[&account],
                    )
                    .await
                    .expect("query the outbox")
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect()
            }
        }
    }
}

impl Drop for Location {
    fn drop(&mut self) {
        match self {
            Location::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Location::Postgres {
                admin_url, name, ..
            } => {
                // Drop runs inside the test's runtime, which cannot be blocked on; use a
                // private one on its own thread. Best effort: a failure is only reported.
                let (admin_url, db) = (admin_url.clone(), name.clone());
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async {
                        let (client, connection) =
                            tokio_postgres::connect(&admin_url, NoTls).await?;
                        let driver = tokio::spawn(connection);
                        let result = client
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                            .await;
                        drop(client);
                        let _ = driver.await;
                        result.map_err(anyhow::Error::from)
                    })
                })
                .join();
                match dropped {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("could not drop test database {name}: {e:#}"),
                    Err(_) => eprintln!(
                        "could not drop test database {name}: the cleanup thread panicked"
                    ),
                }
            }
        }
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {DATABASE_URL_VAR}: {e:?}"));
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("test connection error: {e}");
        }
    });
    client
}

/// `url` with its database name replaced by `name`, query parameters kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// A store under test. Field order matters: the store closes before its location is removed.
struct Fixture {
    store: DynStore,
    location: Location,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let location = Location::sqlite();
        Fixture {
            store: location.open().await,
            location,
        }
    }

    async fn postgres() -> Option<Fixture> {
        let location = Location::postgres().await?;
        Some(Fixture {
            store: location.open().await,
            location,
        })
    }
}

/// Runs each named case as `<case>::sqlite` and `<case>::postgres`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let fixture = super::Fixture::sqlite().await;
                super::$case(&fixture).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(fixture) = super::Fixture::postgres().await else {
                    return;
                };
                super::$case(&fixture).await;
            }
        }
    )*};
}

conformance!(
    meta,
    accounts,
    insert_and_get,
    duplicate_insert_conflicts,
    update_versions,
    stale_update_rolls_back_batch,
    list_order_and_cursors,
    list_created_range,
    list_index_filter,
    deleted_objects_leave_lists,
    idempotency_records,
    idempotency_taken_rolls_back_batch,
    purge_idempotency,
    concurrent_updates_one_wins,
    concurrent_batches_commit_together_or_alone,
    crossed_updates_conflict,
    outbox_rows,
    reopen_keeps_data,
    list_where_conditions,
    outbox_claims_and_fan_out,
    drop_outbox_removes_only_those_rows,
    delivery_claims_leases_and_finish,
    finish_conflict_rolls_back,
    concurrent_claims_are_disjoint,
    claims_cap_each_endpoint,
    concurrent_capped_claims_stay_within_the_cap,
    redeliver_resets_or_creates,
    attempts_listing,
    purge_events,
);

// ---------------------------------------------------------------------------
// Helpers.

fn test_account(id: &str, created: i64) -> Account {
    Account {
        id: id.to_string(),
        secret_key: format!("sk_test_{id}"),
        publishable_key: format!("pk_test_{id}"),
        clock_offset: 0,
        created,
    }
}

fn new_object(id: &str, kind: &str, created: i64) -> ObjectWrite {
    ObjectWrite {
        id: id.to_string(),
        kind: kind.to_string(),
        created,
        data: format!(r#"{{"id":"{id}","object":"{kind}","created":{created}}}"#),
        expected_version: None,
        index: Vec::new(),
        deleted: false,
    }
}

fn indexed(mut object: ObjectWrite, index: &[(&str, &str)]) -> ObjectWrite {
    object.index = index
        .iter()
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect();
    object
}

/// A new version of a stored object.
fn update_of(current: &StoredObject, expected_version: i64, data: &str) -> ObjectWrite {
    ObjectWrite {
        id: current.id.clone(),
        kind: current.kind.clone(),
        created: current.created,
        data: data.to_string(),
        expected_version: Some(expected_version),
        index: Vec::new(),
        deleted: false,
    }
}

fn batch(account: &str, objects: Vec<ObjectWrite>) -> WriteBatch {
    WriteBatch {
        account: account.to_string(),
        objects,
        ..Default::default()
    }
}

fn record(
    key: &str,
    fingerprint: &str,
    status: u16,
    body: &str,
    created: i64,
) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.to_string(),
        fingerprint: fingerprint.to_string(),
        status,
        body: body.to_string(),
        created,
    }
}

/// A live webhook endpoint in the account, so its events get outbox rows.
async fn add_event_target(store: &DynStore, account: &str) {
    let id = format!("we_{account}");
    commit_ok(
        store,
        batch(account, vec![new_object(&id, "webhook_endpoint", 1)]),
    )
    .await;
}

async fn commit_ok(store: &DynStore, batch: WriteBatch) {
    if let Err(e) = store.commit(batch).await {
        panic!("commit failed: {e:?}");
    }
}

async fn insert(store: &DynStore, account: &str, object: ObjectWrite) -> StoredObject {
    let id = object.id.clone();
    commit_ok(store, batch(account, vec![object])).await;
    must_get(store, account, &id).await
}

async fn must_get(store: &DynStore, account: &str, id: &str) -> StoredObject {
    store
        .get(account, id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{id} should exist in {account}"))
}

fn assert_conflict(result: Result<(), CommitError>, id: &str) {
    match result {
        Err(CommitError::Conflict(got)) => {
            assert_eq!(got, id, "conflict reported on the wrong object")
        }
        other => panic!("expected a conflict on {id}, got {other:?}"),
    }
}

async fn list_ids(store: &DynStore, account: &str, query: ListQuery) -> Vec<String> {
    store
        .list(account, &query)
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.id)
        .collect()
}

fn query(kind: &str, limit: usize) -> ListQuery {
    ListQuery {
        kind: kind.to_string(),
        limit,
        ..Default::default()
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Five customers created 100, 110, ... 140, committed one by one (so seq grows with them).
async fn five_customers(store: &DynStore, account: &str) -> Vec<StoredObject> {
    let mut out = Vec::new();
    for i in 1..=5 {
        let id = format!("cus_{i}");
        out.push(insert(store, account, new_object(&id, "customer", 90 + 10 * i)).await);
    }
    out
}

// ---------------------------------------------------------------------------
// Cases.

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
    let result = s
        .commit(WriteBatch {
            account: "acct_a".into(),
            objects: vec![good, fresh, event, stale],
            outbox: vec!["evt_lost".into()],
            idempotency: Some(record("key_lost", "fp", 200, "{}", 10)),
            idempotency_cutoff: 0,
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
    assert!(f.location.outbox("acct_a").await.is_empty());
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
            outbox: vec!["evt_lost".into()],
            idempotency: Some(record("key_1", "fp_2", 200, "{}", 1001)),
            idempotency_cutoff: 500,
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
    assert!(f.location.outbox("acct_a").await.is_empty());
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

/// Many independent batches at once (the stores commit them in groups), one pair of
/// them sharing an idempotency key and one updating a stale version: every batch
/// gets the outcome it would have had alone, with its index and outbox rows.
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
                    outbox: vec![format!("evt_g{i}")],
                    idempotency: Some(record(&format!("key_g{key}"), "fp", 200, "{}", 10)),
                    idempotency_cutoff: 0,
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
            Ok(()) => committed.push(i),
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
    let outbox = f.location.outbox("acct_a").await;
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
            outbox.contains(&format!("evt_g{i}")),
            "writer {i}'s outbox row"
        );
    }
    for i in [7, taken[0]] {
        assert!(s
            .get("acct_a", &format!("cus_g{i}"))
            .await
            .expect("get")
            .is_none());
        assert!(!outbox.contains(&format!("evt_g{i}")));
    }
    assert_eq!(outbox.len(), WRITERS - 2);
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
            Ok(()) => winners.push(i),
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
                Ok(()) => wins += 1,
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

async fn outbox_rows(f: &Fixture) {
    let s = &f.store;
    add_event_target(s, "acct_a").await;
    add_event_target(s, "acct_b").await;
    commit_ok(
        s,
        WriteBatch {
            account: "acct_a".into(),
            objects: vec![
                new_object("cus_1", "customer", 1),
                new_object("evt_1", "event", 1),
                new_object("evt_2", "event", 1),
            ],
            outbox: vec!["evt_1".into(), "evt_2".into()],
            ..Default::default()
        },
    )
    .await;
    commit_ok(
        s,
        WriteBatch {
            account: "acct_b".into(),
            objects: vec![new_object("evt_3", "event", 1)],
            outbox: vec!["evt_3".into()],
            ..Default::default()
        },
    )
    .await;
    commit_ok(
        s,
        WriteBatch {
            account: "acct_a".into(),
            outbox: vec!["evt_4".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        f.location.outbox("acct_a").await,
        ids(&["evt_1", "evt_2", "evt_4"])
    );
    assert_eq!(f.location.outbox("acct_b").await, ids(&["evt_3"]));
    assert!(f.location.outbox("acct_c").await.is_empty());

    // Nobody listens to acct_c: its events are stored, their outbox rows are not,
    // until it has a listener (deleted targets do not count).
    let events = |ids: &[&str]| WriteBatch {
        account: "acct_c".into(),
        objects: ids
            .iter()
            .map(|id| event(id, 1, "charge.succeeded"))
            .collect(),
        outbox: ids.iter().map(|id| id.to_string()).collect(),
        ..Default::default()
    };
    commit_ok(s, events(&["evt_c1"])).await;
    assert!(s.get("acct_c", "evt_c1").await.expect("get").is_some());
    assert!(f.location.outbox("acct_c").await.is_empty());
    let mut gone = new_object("we_gone", "webhook_endpoint", 1);
    gone.deleted = true;
    commit_ok(s, batch("acct_c", vec![gone])).await;
    commit_ok(s, events(&["evt_c2"])).await;
    assert!(f.location.outbox("acct_c").await.is_empty());
    commit_ok(
        s,
        batch(
            "acct_c",
            vec![new_object("pgls_1", "payground.listener", 1)],
        ),
    )
    .await;
    commit_ok(s, events(&["evt_c3"])).await;
    assert_eq!(f.location.outbox("acct_c").await, ids(&["evt_c3"]));
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

// ---------------------------------------------------------------------------
// Webhook delivery: events listed by index conditions, outbox claims, fan-out,
// delivery leases, attempts, retention.

fn event(id: &str, created: i64, event_type: &str) -> ObjectWrite {
    let mut object = new_object(id, "event", created);
    object.data =
        format!(r#"{{"id":"{id}","object":"event","type":"{event_type}","pending_webhooks":0}}"#);
    object.index = vec![("type".to_string(), event_type.to_string())];
    object
}

fn exact(field: &str, values: &[&str]) -> IndexCondition {
    IndexCondition {
        field: field.to_string(),
        any_of: values
            .iter()
            .map(|v| IndexValue::Exact(v.to_string()))
            .collect(),
        negated: false,
    }
}

async fn where_ids(
    store: &DynStore,
    account: &str,
    query: ListQuery,
    conditions: &[IndexCondition],
) -> Vec<String> {
    store
        .list_where(account, &query, conditions)
        .await
        .expect("list_where")
        .into_iter()
        .map(|o| o.id)
        .collect()
}

/// Events evt_1..evt_n in acct_a, committed with outbox rows in one batch.
async fn events_with_outbox(store: &DynStore, account: &str, ids: &[&str]) {
    if store
        .get(account, &format!("we_{account}"))
        .await
        .expect("get")
        .is_none()
    {
        add_event_target(store, account).await;
    }
    commit_ok(
        store,
        WriteBatch {
            account: account.into(),
            objects: ids
                .iter()
                .map(|id| event(id, 100, "customer.created"))
                .collect(),
            outbox: ids.iter().map(|id| id.to_string()).collect(),
            ..Default::default()
        },
    )
    .await;
}

fn fan_out_of(entry: &OutboxEntry, endpoints: &[(&str, bool)], now_ms: i64) -> FanOut {
    FanOut {
        outbox_seq: entry.seq,
        account: entry.account.clone(),
        event_id: entry.event_id.clone(),
        deliveries: endpoints
            .iter()
            .map(|(id, push)| NewDelivery {
                endpoint_id: id.to_string(),
                push: *push,
            })
            .collect(),
        event_write: None,
        now_ms,
    }
}

fn claim(owner: &str, now_ms: i64, limit: usize) -> DeliveryClaim {
    DeliveryClaim {
        owner: owner.to_string(),
        now_ms,
        lease_ms: 1_000,
        limit,
        listener: None,
        per_endpoint: None,
    }
}

fn attempt(id: &str, n: i64, status: Option<i32>, succeeded: bool) -> AttemptRecord {
    AttemptRecord {
        seq: 0,
        id: id.to_string(),
        account: String::new(),
        event_id: String::new(),
        endpoint_id: String::new(),
        attempt: n,
        attempted_at: 5_000 + n,
        status_code: status,
        latency_ms: 12,
        response_body: Some("ok".into()),
        error: None,
        succeeded,
    }
}

fn result(
    d: &Delivery,
    owner: &str,
    next: DeliveryNext,
    a: Option<AttemptRecord>,
) -> DeliveryResult {
    DeliveryResult {
        account: d.account.clone(),
        event_id: d.event_id.clone(),
        endpoint_id: d.endpoint_id.clone(),
        lease_owner: owner.to_string(),
        attempt: a,
        next,
        now_ms: 6_000,
        event_write: None,
    }
}

async fn fanned_out(
    store: &DynStore,
    account: &str,
    event_ids: &[&str],
    endpoints: &[(&str, bool)],
) {
    events_with_outbox(store, account, event_ids).await;
    let claimed = store
        .claim_outbox(1_000, 10_000, 100)
        .await
        .expect("claim_outbox");
    assert_eq!(claimed.len(), event_ids.len());
    for entry in &claimed {
        assert!(store
            .fan_out(fan_out_of(entry, endpoints, 1_000))
            .await
            .expect("fan_out"));
    }
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
    // evt_3 is marked pending through an update that rewrites its index rows.
    let e3 = must_get(s, "acct_a", "evt_3").await;
    let mut pending = update_of(&e3, e3.version, &e3.data);
    pending.index = vec![
        ("type".into(), "customer.updated".into()),
        ("delivery".into(), "pending".into()),
    ];
    commit_ok(s, batch("acct_a", vec![pending])).await;

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
    let pending_only = exact("delivery", &["pending"]);
    let not_pending = IndexCondition {
        negated: true,
        ..pending_only.clone()
    };
    assert_eq!(
        where_ids(s, "acct_a", q(), &[prefix.clone(), pending_only.clone()]).await,
        ids(&["evt_3"])
    );
    assert_eq!(
        where_ids(s, "acct_a", q(), &[prefix.clone(), not_pending]).await,
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

async fn drop_outbox_removes_only_those_rows(f: &Fixture) {
    let s = &f.store;
    events_with_outbox(s, "acct_a", &["evt_1", "evt_2", "evt_3"]).await;
    let claimed = s.claim_outbox(1_000, 500, 10).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    let seqs: Vec<i64> = claimed.iter().take(2).map(|e| e.seq).collect();
    s.drop_outbox(&seqs).await.expect("drop_outbox");
    s.drop_outbox(&seqs)
        .await
        .expect("dropping twice is harmless");
    let left = s.claim_outbox(5_000, 500, 10).await.expect("claim");
    assert_eq!(
        left.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        vec!["evt_3"]
    );
}

async fn outbox_claims_and_fan_out(f: &Fixture) {
    let s = &f.store;
    events_with_outbox(s, "acct_a", &["evt_1", "evt_2"]).await;
    events_with_outbox(s, "acct_b", &["evt_3"]).await;

    let first = s.claim_outbox(1_000, 500, 2).await.expect("claim");
    assert_eq!(
        first
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        vec!["evt_1", "evt_2"],
        "oldest first, up to the limit"
    );
    assert_eq!(first[0].account, "acct_a");
    let second = s.claim_outbox(1_000, 500, 10).await.expect("claim");
    assert_eq!(
        second
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        vec!["evt_3"],
        "leased rows are skipped"
    );
    assert!(s
        .claim_outbox(1_499, 500, 10)
        .await
        .expect("claim")
        .is_empty());
    // The leases run out: the rows come back (a node died while fanning out).
    let again = s.claim_outbox(1_500, 500, 10).await.expect("claim");
    assert_eq!(again.len(), 3);

    // Fan-out: the row goes, deliveries appear, the event is rewritten.
    let e1 = must_get(s, "acct_a", "evt_1").await;
    let mut fan = fan_out_of(
        &first[0],
        &[("we_1", true), ("we_2", true), ("wl_1", false)],
        2_000,
    );
    fan.event_write = Some(update_of(&e1, e1.version, r#"{"pending_webhooks":2}"#));
    assert!(s.fan_out(fan.clone()).await.expect("fan_out"));
    assert_eq!(
        must_get(s, "acct_a", "evt_1").await.data,
        r#"{"pending_webhooks":2}"#
    );
    let d = s
        .delivery("acct_a", "evt_1", "we_1")
        .await
        .expect("delivery")
        .expect("a delivery row");
    assert_eq!(
        (
            d.status,
            d.attempts,
            d.next_attempt_at,
            d.push,
            d.succeeded_at
        ),
        (DeliveryStatus::Pending, 0, 2_000, true, None)
    );
    assert!(
        !s.delivery("acct_a", "evt_1", "wl_1")
            .await
            .expect("delivery")
            .expect("row")
            .push
    );
    assert!(s
        .delivery("acct_b", "evt_1", "we_1")
        .await
        .expect("delivery")
        .is_none());
    assert_eq!(
        s.undelivered_count("acct_a", "evt_1").await.expect("count"),
        2
    );
    assert_eq!(f.location.outbox("acct_a").await, ids(&["evt_2"]));

    // The same row again (a node whose lease ran out): nothing happens.
    assert!(!s.fan_out(fan).await.expect("second fan_out"));
    assert_eq!(must_get(s, "acct_a", "evt_1").await.version, e1.version + 1);

    // A stale event write rolls the whole fan-out back: the row stays, no deliveries.
    let e2 = must_get(s, "acct_a", "evt_2").await;
    commit_ok(s, batch("acct_a", vec![update_of(&e2, e2.version, "{}")])).await;
    let mut stale = fan_out_of(&first[1], &[("we_1", true)], 2_000);
    stale.event_write = Some(update_of(&e2, e2.version, r#"{"stale":true}"#));
    assert_conflict(s.fan_out(stale).await.map(|_| ()), "evt_2");
    assert_eq!(f.location.outbox("acct_a").await, ids(&["evt_2"]));
    assert!(s
        .delivery("acct_a", "evt_2", "we_1")
        .await
        .expect("delivery")
        .is_none());
    // An outbox row with no endpoints just goes.
    assert!(s
        .fan_out(fan_out_of(&first[1], &[], 2_000))
        .await
        .expect("fan_out"));
    assert!(f.location.outbox("acct_a").await.is_empty());
}

async fn delivery_claims_leases_and_finish(f: &Fixture) {
    let s = &f.store;
    fanned_out(
        s,
        "acct_a",
        &["evt_1", "evt_2"],
        &[("we_1", true), ("wl_1", false)],
    )
    .await;

    assert!(
        s.claim_deliveries(&claim("node_a", 999, 10))
            .await
            .expect("claim")
            .is_empty(),
        "not due yet"
    );
    let got = s
        .claim_deliveries(&claim("node_a", 1_000, 10))
        .await
        .expect("claim");
    assert_eq!(
        got.iter()
            .map(|d| (d.event_id.as_str(), d.endpoint_id.as_str()))
            .collect::<Vec<_>>(),
        vec![("evt_1", "we_1"), ("evt_2", "we_1")],
        "push deliveries only, oldest due first"
    );
    assert_eq!(got[0].lease_owner.as_deref(), Some("node_a"));
    assert_eq!(got[0].lease_expires_at, Some(2_000));
    assert!(
        s.claim_deliveries(&claim("node_b", 1_500, 10))
            .await
            .expect("claim")
            .is_empty(),
        "leased"
    );

    // Pull deliveries go only to their listener.
    let pull = DeliveryClaim {
        listener: Some("wl_1".into()),
        ..claim("poll_1", 1_000, 1)
    };
    let pulled = s.claim_deliveries(&pull).await.expect("claim");
    assert_eq!(pulled.len(), 1);
    assert_eq!(
        (pulled[0].event_id.as_str(), pulled[0].push),
        ("evt_1", false)
    );
    let other = DeliveryClaim {
        listener: Some("wl_other".into()),
        ..claim("poll_2", 1_000, 10)
    };
    assert!(s.claim_deliveries(&other).await.expect("claim").is_empty());

    // A finish by someone who does not hold the lease keeps the attempt, changes nothing else.
    let d1 = &got[0];
    let lost = result(
        d1,
        "node_b",
        DeliveryNext::Succeeded,
        Some(attempt("wha_lost", 1, Some(200), true)),
    );
    assert!(!s.finish_delivery(lost).await.expect("finish"));
    let still = s
        .delivery("acct_a", "evt_1", "we_1")
        .await
        .expect("delivery")
        .expect("row");
    assert_eq!(
        (still.status, still.attempts, still.lease_owner.as_deref()),
        (DeliveryStatus::Pending, 0, Some("node_a"))
    );

    // A failure with a retry: pending again, due later, lease gone.
    let retry = result(
        d1,
        "node_a",
        DeliveryNext::RetryAt(7_000),
        Some(attempt("wha_1", 1, Some(500), false)),
    );
    assert!(s.finish_delivery(retry).await.expect("finish"));
    let after = s
        .delivery("acct_a", "evt_1", "we_1")
        .await
        .expect("delivery")
        .expect("row");
    assert_eq!(
        (
            after.status,
            after.attempts,
            after.next_attempt_at,
            after.lease_owner,
            after.lease_expires_at
        ),
        (DeliveryStatus::Pending, 1, 7_000, None, None)
    );
    let early = s
        .claim_deliveries(&claim("node_b", 6_999, 10))
        .await
        .expect("claim");
    assert_eq!(
        early
            .iter()
            .map(|d| d.event_id.as_str())
            .collect::<Vec<_>>(),
        vec!["evt_2"],
        "evt_2's lease ran out; evt_1 is not due yet"
    );
    let mut due = s
        .claim_deliveries(&claim("node_b", 7_000, 10))
        .await
        .expect("claim");
    assert_eq!(due.len(), 1, "evt_1 is due again");
    due.extend(early);

    // Success: the event write commits with it, and the count drops.
    let e1 = must_get(s, "acct_a", "evt_1").await;
    let mut ok = result(
        &due[0],
        "node_b",
        DeliveryNext::Succeeded,
        Some(attempt("wha_2", 2, Some(200), true)),
    );
    ok.event_write = Some(update_of(&e1, e1.version, r#"{"pending_webhooks":0}"#));
    assert!(s.finish_delivery(ok).await.expect("finish"));
    let done = s
        .delivery("acct_a", "evt_1", "we_1")
        .await
        .expect("delivery")
        .expect("row");
    assert_eq!(
        (done.status, done.attempts, done.succeeded_at),
        (DeliveryStatus::Succeeded, 2, Some(6_000))
    );
    assert_eq!(
        s.undelivered_count("acct_a", "evt_1").await.expect("count"),
        0
    );
    assert_eq!(
        must_get(s, "acct_a", "evt_1").await.data,
        r#"{"pending_webhooks":0}"#
    );
    assert_eq!(
        s.undelivered_count("acct_a", "evt_2").await.expect("count"),
        1,
        "pull deliveries are not counted"
    );

    // Giving up without an attempt (the endpoint went away).
    let give_up = result(&due[1], "node_b", DeliveryNext::Failed, None);
    assert!(s.finish_delivery(give_up).await.expect("finish"));
    let failed = s
        .delivery("acct_a", "evt_2", "we_1")
        .await
        .expect("delivery")
        .expect("row");
    assert_eq!(
        (failed.status, failed.attempts),
        (DeliveryStatus::Failed, 0)
    );
    assert!(
        s.claim_deliveries(&claim("node_c", 99_000, 10))
            .await
            .expect("claim")
            .is_empty(),
        "nothing pending"
    );

    // A node shutting down gives its leases back.
    assert_eq!(s.release_deliveries("poll_1").await.expect("release"), 1);
    assert_eq!(s.release_deliveries("poll_1").await.expect("release"), 0);
    assert_eq!(
        s.claim_deliveries(&DeliveryClaim {
            listener: Some("wl_1".into()),
            ..claim("poll_3", 1_001, 10)
        })
        .await
        .expect("claim")
        .len(),
        2
    );

    let attempts = s
        .list_attempts(
            "acct_a",
            &AttemptQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.id.as_str(), a.status_code, a.succeeded))
            .collect::<Vec<_>>(),
        vec![
            ("wha_2", Some(200), true),
            ("wha_1", Some(500), false),
            ("wha_lost", Some(200), true)
        ]
    );
    assert_eq!(
        (
            attempts[1].event_id.as_str(),
            attempts[1].endpoint_id.as_str(),
            attempts[1].attempt,
            attempts[1].latency_ms
        ),
        ("evt_1", "we_1", 1, 12)
    );
}

async fn finish_conflict_rolls_back(f: &Fixture) {
    let s = &f.store;
    fanned_out(s, "acct_a", &["evt_1"], &[("we_1", true)]).await;
    let got = s
        .claim_deliveries(&claim("node_a", 1_000, 10))
        .await
        .expect("claim");
    let e1 = must_get(s, "acct_a", "evt_1").await;
    commit_ok(s, batch("acct_a", vec![update_of(&e1, e1.version, "{}")])).await;
    let mut stale = result(
        &got[0],
        "node_a",
        DeliveryNext::Succeeded,
        Some(attempt("wha_1", 1, Some(200), true)),
    );
    stale.event_write = Some(update_of(&e1, e1.version, r#"{"stale":true}"#));
    assert_conflict(s.finish_delivery(stale).await.map(|_| ()), "evt_1");
    let d = s
        .delivery("acct_a", "evt_1", "we_1")
        .await
        .expect("delivery")
        .expect("row");
    assert_eq!(
        (d.status, d.attempts, d.lease_owner.as_deref()),
        (DeliveryStatus::Pending, 0, Some("node_a"))
    );
    assert!(s
        .list_attempts(
            "acct_a",
            &AttemptQuery {
                limit: 10,
                ..Default::default()
            }
        )
        .await
        .expect("attempts")
        .is_empty());
    // Retried on the fresh version it goes through.
    let fresh = must_get(s, "acct_a", "evt_1").await;
    let mut ok = result(
        &got[0],
        "node_a",
        DeliveryNext::Succeeded,
        Some(attempt("wha_1", 1, Some(200), true)),
    );
    ok.event_write = Some(update_of(
        &fresh,
        fresh.version,
        r#"{"pending_webhooks":0}"#,
    ));
    assert!(s.finish_delivery(ok).await.expect("finish"));
    assert_eq!(
        s.list_attempts(
            "acct_a",
            &AttemptQuery {
                limit: 10,
                ..Default::default()
            }
        )
        .await
        .expect("attempts")
        .len(),
        1
    );
}

async fn concurrent_claims_are_disjoint(f: &Fixture) {
    let s = &f.store;
    let event_ids: Vec<String> = (0..40).map(|i| format!("evt_{i:02}")).collect();
    let refs: Vec<&str> = event_ids.iter().map(String::as_str).collect();
    fanned_out(s, "acct_a", &refs, &[("we_1", true)]).await;
    let claims = (0..8).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.claim_deliveries(&claim(&format!("node_{i}"), 1_000, 7))
                .await
                .expect("claim")
        })
    });
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for handle in futures::future::join_all(claims).await {
        for d in handle.expect("claim task") {
            total += 1;
            assert!(
                seen.insert(d.event_id.clone()),
                "{} claimed twice",
                d.event_id
            );
        }
    }
    assert_eq!(total, 40, "8 claims of 7 take all 40 rows, each once");
}

/// A claim capped per endpoint, as the delivery worker makes it.
fn capped(owner: &str, now_ms: i64, limit: usize, per_endpoint: usize) -> DeliveryClaim {
    DeliveryClaim {
        per_endpoint: Some(per_endpoint),
        ..claim(owner, now_ms, limit)
    }
}

fn claimed_pairs(got: &[Delivery]) -> Vec<(&str, &str)> {
    got.iter()
        .map(|d| (d.endpoint_id.as_str(), d.event_id.as_str()))
        .collect()
}

/// An endpoint with a backlog older than everything else gets at most its share
/// per owner, counting what that owner holds; the other endpoints' rows, of the
/// same account or another, are taken past its backlog; a settled or expired lease
/// frees its place in the share.
async fn claims_cap_each_endpoint(f: &Fixture) {
    let s = &f.store;
    let backlog: Vec<String> = (0..10).map(|i| format!("evt_{i:02}")).collect();
    let refs: Vec<&str> = backlog.iter().map(String::as_str).collect();
    fanned_out(s, "acct_a", &refs, &[("we_hang", true)]).await;
    fanned_out(
        s,
        "acct_a",
        &["evt_10", "evt_11", "evt_12"],
        &[("we_hang", true), ("we_ok", true)],
    )
    .await;
    fanned_out(s, "acct_b", &["evt_20", "evt_21"], &[("we_b", true)]).await;

    let got = s
        .claim_deliveries(&capped("node_a", 1_000, 32, 4))
        .await
        .expect("claim");
    let mut pairs = claimed_pairs(&got);
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("we_b", "evt_20"),
            ("we_b", "evt_21"),
            ("we_hang", "evt_00"),
            ("we_hang", "evt_01"),
            ("we_hang", "evt_02"),
            ("we_hang", "evt_03"),
            ("we_ok", "evt_10"),
            ("we_ok", "evt_11"),
            ("we_ok", "evt_12"),
        ],
        "the backlog's 4 oldest, and every other endpoint's rows past the rest of it"
    );
    assert!(
        got.windows(2)
            .all(|w| (w[0].next_attempt_at, &w[0].event_id)
                <= (w[1].next_attempt_at, &w[1].event_id)),
        "oldest due first"
    );
    assert!(
        s.claim_deliveries(&capped("node_a", 1_100, 32, 4))
            .await
            .expect("claim")
            .is_empty(),
        "the owner holds the endpoint's whole share: nothing more is leased to wait"
    );
    let stored = s
        .delivery("acct_a", "evt_04", "we_hang")
        .await
        .expect("delivery")
        .expect("row");
    assert_eq!(
        stored.lease_owner, None,
        "rows past the share stay unleased"
    );

    // The cap is per owner (per node): another one takes the backlog's next 4.
    let got = s
        .claim_deliveries(&capped("node_b", 1_100, 32, 4))
        .await
        .expect("claim");
    assert_eq!(
        claimed_pairs(&got),
        vec![
            ("we_hang", "evt_04"),
            ("we_hang", "evt_05"),
            ("we_hang", "evt_06"),
            ("we_hang", "evt_07")
        ]
    );

    // A settled attempt frees one place: the endpoint's oldest due row takes it.
    let d0 = s
        .delivery("acct_a", "evt_00", "we_hang")
        .await
        .expect("delivery")
        .expect("row");
    assert!(s
        .finish_delivery(result(
            &d0,
            "node_a",
            DeliveryNext::RetryAt(1_200),
            Some(attempt("wha_cap_1", 1, None, false)),
        ))
        .await
        .expect("finish"));
    let got = s
        .claim_deliveries(&capped("node_a", 1_300, 32, 4))
        .await
        .expect("claim");
    assert_eq!(claimed_pairs(&got), vec![("we_hang", "evt_08")]);

    // The limit still bounds the claim; the cap counts what was taken before.
    let got = s
        .claim_deliveries(&capped("node_c", 1_300, 2, 4))
        .await
        .expect("claim");
    assert_eq!(
        claimed_pairs(&got),
        vec![("we_hang", "evt_09"), ("we_hang", "evt_10")]
    );
    let got = s
        .claim_deliveries(&capped("node_c", 1_300, 32, 3))
        .await
        .expect("claim");
    assert_eq!(claimed_pairs(&got), vec![("we_hang", "evt_11")]);

    // Expired leases no longer count: at 2_100 node_a holds only evt_08 of the
    // backlog (until 2_300), so it takes 3 of it, the oldest due (its own and
    // node_b's expired rows before evt_00's retry at 1_200), and the other
    // endpoints' expired rows again.
    let got = s
        .claim_deliveries(&capped("node_a", 2_100, 32, 4))
        .await
        .expect("claim");
    let mut pairs = claimed_pairs(&got);
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("we_b", "evt_20"),
            ("we_b", "evt_21"),
            ("we_hang", "evt_01"),
            ("we_hang", "evt_02"),
            ("we_hang", "evt_03"),
            ("we_ok", "evt_10"),
            ("we_ok", "evt_11"),
            ("we_ok", "evt_12"),
        ]
    );
}

/// Owners claiming one endpoint's backlog at once each get at most their share,
/// never a row twice, and skip rows another claim holds instead of coming back
/// empty.
async fn concurrent_capped_claims_stay_within_the_cap(f: &Fixture) {
    let s = &f.store;
    let event_ids: Vec<String> = (0..40).map(|i| format!("evt_{i:02}")).collect();
    let refs: Vec<&str> = event_ids.iter().map(String::as_str).collect();
    fanned_out(s, "acct_a", &refs, &[("we_1", true)]).await;
    let claims = (0..8).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.claim_deliveries(&capped(&format!("node_{i}"), 1_000, 32, 4))
                .await
                .expect("claim")
        })
    });
    let mut seen = std::collections::HashSet::new();
    for handle in futures::future::join_all(claims).await {
        let got = handle.expect("claim task");
        assert_eq!(got.len(), 4, "each owner gets its share of 4");
        for d in got {
            assert!(
                seen.insert(d.event_id.clone()),
                "{} claimed twice",
                d.event_id
            );
        }
    }
    assert_eq!(seen.len(), 32);
}

async fn redeliver_resets_or_creates(f: &Fixture) {
    let s = &f.store;
    fanned_out(s, "acct_a", &["evt_1"], &[("we_1", true)]).await;
    let got = s
        .claim_deliveries(&claim("node_a", 1_000, 10))
        .await
        .expect("claim");
    let fail = result(
        &got[0],
        "node_a",
        DeliveryNext::Failed,
        Some(attempt("wha_1", 1, Some(500), false)),
    );
    assert!(s.finish_delivery(fail).await.expect("finish"));

    s.redeliver("acct_a", "evt_1", "we_1", true, 9_000)
        .await
        .expect("redeliver");
    let d = s
        .delivery("acct_a", "evt_1", "we_1")
        .await
        .expect("delivery")
        .expect("row");
    assert_eq!(
        (d.status, d.attempts, d.next_attempt_at),
        (DeliveryStatus::Pending, 1, 9_000),
        "the attempt count carries on"
    );
    // A leased delivery loses its lease.
    let leased = s
        .claim_deliveries(&claim("node_a", 9_000, 10))
        .await
        .expect("claim");
    assert_eq!(leased.len(), 1);
    s.redeliver("acct_a", "evt_1", "we_1", true, 9_100)
        .await
        .expect("redeliver");
    let d = s
        .delivery("acct_a", "evt_1", "we_1")
        .await
        .expect("delivery")
        .expect("row");
    assert_eq!((d.lease_owner, d.next_attempt_at), (None, 9_100));
    // A new pair is created (an endpoint made after the event).
    s.redeliver("acct_a", "evt_1", "we_2", true, 9_200)
        .await
        .expect("redeliver");
    let d = s
        .delivery("acct_a", "evt_1", "we_2")
        .await
        .expect("delivery")
        .expect("row");
    assert_eq!(
        (d.status, d.attempts, d.next_attempt_at, d.push),
        (DeliveryStatus::Pending, 0, 9_200, true)
    );
    assert_eq!(
        s.undelivered_count("acct_a", "evt_1").await.expect("count"),
        2
    );
    // Another account cannot touch it.
    s.redeliver("acct_b", "evt_1", "we_2", true, 1)
        .await
        .expect("redeliver");
    let d = s
        .delivery("acct_a", "evt_1", "we_2")
        .await
        .expect("delivery")
        .expect("row");
    assert_eq!(d.next_attempt_at, 9_200);
}

async fn attempts_listing(f: &Fixture) {
    let s = &f.store;
    fanned_out(
        s,
        "acct_a",
        &["evt_1", "evt_2"],
        &[("we_1", true), ("we_2", true)],
    )
    .await;
    let mut n = 0;
    let mut now = 1_000;
    // Three rounds of failures over every delivery.
    for _ in 0..3 {
        let due = s
            .claim_deliveries(&claim("node_a", now, 10))
            .await
            .expect("claim");
        assert_eq!(due.len(), 4);
        for d in due {
            n += 1;
            let a = attempt(&format!("wha_{n:02}"), d.attempts + 1, None, false);
            assert!(s
                .finish_delivery(result(
                    &d,
                    "node_a",
                    DeliveryNext::RetryAt(now + 10),
                    Some(a)
                ))
                .await
                .expect("finish"));
        }
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
    commit_ok(
        s,
        WriteBatch {
            account: "acct_a".into(),
            objects: vec![
                event("evt_old", 100, "customer.created"),
                event("evt_new", 200, "customer.created"),
                new_object("cus_old", "customer", 100),
            ],
            outbox: vec!["evt_old".into(), "evt_new".into()],
            ..Default::default()
        },
    )
    .await;
    insert(s, "acct_b", event("evt_b", 100, "customer.created")).await;
    let entries = s.claim_outbox(1_000, 10_000, 10).await.expect("claim");
    assert!(s
        .fan_out(fan_out_of(&entries[0], &[("we_1", true)], 1_000))
        .await
        .expect("fan_out"));
    let got = s
        .claim_deliveries(&claim("node_a", 1_000, 10))
        .await
        .expect("claim");
    assert!(s
        .finish_delivery(result(
            &got[0],
            "node_a",
            DeliveryNext::RetryAt(2_000),
            Some(attempt("wha_1", 1, None, false))
        ))
        .await
        .expect("finish"));

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
    assert!(s
        .delivery("acct_a", "evt_old", "we_1")
        .await
        .expect("delivery")
        .is_none());
    assert!(s
        .list_attempts(
            "acct_a",
            &AttemptQuery {
                limit: 10,
                ..Default::default()
            }
        )
        .await
        .expect("attempts")
        .is_empty());
    assert_eq!(f.location.outbox("acct_a").await, ids(&["evt_new"]));
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
    assert_eq!(versions, vec![1, 2, 3, 4]);
    drop(stores);
}

/// A database written before objects kept their index keys: migration 4 fills them
/// from the index, so the next version of an old object drops its old index rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migration_4_carries_index_keys_over() {
    let Some(location) = Location::postgres().await else {
        return;
    };
    let Location::Postgres { url, .. } = &location else {
        unreachable!("a PostgreSQL location");
    };
    let old = admin_client(url).await;
    old.batch_execute(
        "CREATE TABLE schema_migrations (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await
    .expect("schema_migrations");
    for (i, sql) in super::postgres::MIGRATIONS[..3].iter().enumerate() {
        old.batch_execute(sql).await.expect("old migration");
        old.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )
        .await
        .expect("old version");
    }
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

#[test]
fn database_url_rewriting() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "db_x"),
        "postgres://postgres@127.0.0.1:5432/db_x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "d"),
        "postgres://u:p@h/d?sslmode=disable"
    );
    assert_eq!(
        with_database("postgresql://h:5432", "d"),
        "postgresql://h:5432/d"
    );
    assert_eq!(
        with_database("postgres://h?connect_timeout=5", "d"),
        "postgres://h/d?connect_timeout=5"
    );
}
