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

    /// Every delivery row of the account, read behind the store's back, as
    /// (event, endpoint, push), sorted.
    async fn deliveries(&self, account: &str) -> Vec<(String, String, bool)> {
        let mut rows: Vec<(String, String, bool)> = match self {
            Location::Sqlite(path) => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .expect("open the SQLite file");
                let mut stmt = conn
                    .prepare(
                        "SELECT event_id, endpoint_id, push FROM webhook_deliveries
                         WHERE account = ?1",
                    )
                    .expect("prepare");
                let rows = stmt
                    .query_map([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .expect("query the deliveries");
                rows.collect::<Result<_, _>>().expect("read the deliveries")
            }
            Location::Postgres { url, .. } => {
                let client = admin_client(url).await;
                client
                    .query(
                        "SELECT event_id, endpoint_id, push FROM webhook_deliveries
                         WHERE account = $1",
                        &[&account],
                    )
                    .await
                    .expect("query the deliveries")
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect()
            }
        };
        rows.sort();
        rows
    }
}

/// Commits held back: while it is held, the store's writer (SQLite) or every one of
/// its group transactions (PostgreSQL) waits for a lock the test holds, so the
/// batches sent meanwhile queue up and, once it is released, are committed as one
/// group in the order they were sent.
struct Hold {
    lock: HoldLock,
    /// The commits that wait for the lock.
    blocked: Vec<tokio::task::JoinHandle<Result<Committed, CommitError>>>,
}

enum HoldLock {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl Hold {
    /// `tag` keeps the ids of the objects it writes unique within a test.
    async fn start(f: &Fixture, tag: &str) -> Hold {
        let s = &f.store;
        let commit = |write: ObjectWrite| {
            let store = s.clone();
            tokio::spawn(async move { store.commit(batch("acct_hold", vec![write])).await })
        };
        match &f.location {
            Location::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .expect("busy timeout");
                conn.execute_batch("BEGIN IMMEDIATE")
                    .expect("take the write lock");
                // The writer takes this batch and waits for the lock (an insert
                // asks for it first thing, and the writer's busy timeout waits);
                // what is sent after it queues behind it.
                let blocked = vec![commit(new_object(
                    &format!("cus_hold_{tag}"),
                    "customer",
                    1,
                ))];
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                Hold {
                    lock: HoldLock::Sqlite(conn),
                    blocked,
                }
            }
            Location::Postgres { url, .. } => {
                let mut held = Vec::new();
                // Every group slot must be waiting before batches queue.
                for i in 0..super::postgres::GROUPS_IN_FLIGHT {
                    let id = format!("cus_hold_{tag}_{i}");
                    held.push(insert(s, "acct_hold", new_object(&id, "customer", 1)).await);
                }
                let client = admin_client(url).await;
                let ids: Vec<&str> = held.iter().map(|o| o.id.as_str()).collect();
                client
                    .execute("BEGIN", &[])
                    .await
                    .expect("begin the holding transaction");
                client
                    .execute(
                        "SELECT 1 FROM objects WHERE id = ANY($1) FOR UPDATE",
                        &[&ids],
                    )
                    .await
                    .expect("lock the held rows");
                // One group per held row, each sent once the previous one waits,
                // until every group slot waits for the lock.
                let watcher = admin_client(url).await;
                let mut blocked = Vec::new();
                for (i, object) in held.iter().enumerate() {
                    blocked.push(commit(update_of(object, 1, r#"{"held":true}"#)));
                    let mut polls = 0;
                    loop {
                        let waiting: i64 = watcher
                            .query_one(
                                "SELECT count(*) FROM pg_stat_activity
                                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                                &[],
                            )
                            .await
                            .expect("pg_stat_activity")
                            .get(0);
                        if waiting as usize > i {
                            break;
                        }
                        polls += 1;
                        assert!(polls < 1_000, "the held commit {i} never waited");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
                Hold {
                    lock: HoldLock::Postgres(client),
                    blocked,
                }
            }
        }
    }

    /// Lets the held commits and everything queued behind them go.
    async fn release(self) {
        match self.lock {
            HoldLock::Sqlite(conn) => conn.execute_batch("ROLLBACK").expect("release"),
            HoldLock::Postgres(client) => client.batch_execute("ROLLBACK").await.expect("release"),
        }
        for handle in self.blocked {
            if let Err(e) = handle.await.expect("held commit task") {
                panic!("a held commit failed: {e:?}");
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
    reopen_keeps_data,
    list_where_conditions,
    deliveries_created_at_commit,
    targets_follow_their_index_rows,
    committed_says_whether_deliveries_were_created,
    concurrent_batches_of_several_accounts_keep_their_deliveries,
    a_group_delivers_to_the_targets_of_its_earlier_batches,
    groups_of_new_objects,
    pending_webhooks_counts_push_deliveries_not_yet_succeeded,
    delivery_success_filters_events,
    claims_lease_due_deliveries,
    claims_take_each_endpoints_share,
    claims_take_each_endpoints_oldest_due_first,
    listener_claims_take_their_pull_deliveries,
    finish_deliveries_settles_each_result,
    release_gives_leases_back,
    concurrent_claims_are_disjoint,
    concurrent_share_claims_stay_within_their_share,
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

/// A live webhook endpoint in the account that takes every event.
async fn add_event_target(store: &DynStore, account: &str) {
    let id = format!("we_{account}");
    commit_ok(store, batch(account, vec![endpoint(&id, &["*"])])).await;
}

async fn commit_ok(store: &DynStore, batch: WriteBatch) -> Committed {
    match store.commit(batch).await {
        Ok(committed) => committed,
        Err(e) => panic!("commit failed: {e:?}"),
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

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, CommitError>, id: &str) {
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
            events: vec![emitted("evt_lost", "customer.created")],
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
// Webhook delivery: deliveries created with their events, events listed by index
// conditions and by delivery success, delivery leases and shares, attempts,
// retention.

fn event(id: &str, created: i64, event_type: &str) -> ObjectWrite {
    let mut object = new_object(id, "event", created);
    object.data = format!(r#"{{"id":"{id}","object":"event","type":"{event_type}"}}"#);
    object.index = vec![("type".to_string(), event_type.to_string())];
    object
}

fn emitted(id: &str, event_type: &str) -> EmittedEvent {
    EmittedEvent {
        id: id.to_string(),
        event_type: event_type.to_string(),
    }
}

/// A batch writing these events (id, type), each emitted.
fn events_batch(account: &str, events: &[(&str, &str)]) -> WriteBatch {
    WriteBatch {
        account: account.to_string(),
        objects: events.iter().map(|(id, t)| event(id, 100, t)).collect(),
        events: events.iter().map(|(id, t)| emitted(id, t)).collect(),
        ..Default::default()
    }
}

async fn emit(store: &DynStore, account: &str, events: &[(&str, &str)]) -> Committed {
    commit_ok(store, events_batch(account, events)).await
}

/// Each event in a batch of its own, in order (so each is due no earlier than
/// the one before).
async fn emit_each(store: &DynStore, account: &str, ids: &[&str], event_type: &str) {
    for id in ids {
        emit(store, account, &[(id, event_type)]).await;
    }
}

/// An event target as the resource layer writes one that takes these event types
/// (`*`: every type): one `target_event` index row per type.
fn target(id: &str, kind: &str, types: &[&str]) -> ObjectWrite {
    let mut object = new_object(id, kind, 1);
    object.index = types
        .iter()
        .map(|t| (TARGET_EVENTS_FIELD.to_string(), t.to_string()))
        .collect();
    object
}

fn endpoint(id: &str, types: &[&str]) -> ObjectWrite {
    target(id, "webhook_endpoint", types)
}

fn listener(id: &str, types: &[&str]) -> ObjectWrite {
    target(id, "payground.listener", types)
}

/// A new version of a stored target that takes these types (none: disabled).
async fn retarget(store: &DynStore, account: &str, id: &str, types: &[&str]) {
    let current = must_get(store, account, id).await;
    let mut write = update_of(&current, current.version, &current.data);
    write.index = target(id, &current.kind, types).index;
    commit_ok(store, batch(account, vec![write])).await;
}

fn triples(list: &[(&str, &str, bool)]) -> Vec<(String, String, bool)> {
    list.iter()
        .map(|(e, ep, push)| (e.to_string(), ep.to_string(), *push))
        .collect()
}

async fn find_delivery(
    store: &DynStore,
    account: &str,
    event_id: &str,
    endpoint_id: &str,
) -> Option<Delivery> {
    store
        .delivery(account, event_id, endpoint_id)
        .await
        .expect("delivery")
}

async fn must_delivery(
    store: &DynStore,
    account: &str,
    event_id: &str,
    endpoint_id: &str,
) -> Delivery {
    find_delivery(store, account, event_id, endpoint_id)
        .await
        .unwrap_or_else(|| panic!("{event_id} should have a delivery to {endpoint_id}"))
}

async fn pending(store: &DynStore, account: &str, event_ids: &[&str]) -> Vec<i64> {
    store
        .pending_webhooks(account, &ids(event_ids))
        .await
        .expect("pending_webhooks")
}

fn now_ms() -> i64 {
    crate::clock::system_now_millis()
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

const LEASE_MS: i64 = 1_000;
/// The `now_ms` of every [`result`]: a success's `succeeded_at`.
const FINISHED_AT: i64 = 6_000;

fn claim(owner: &str, now_ms: i64, limit: usize) -> DeliveryClaim {
    DeliveryClaim {
        owner: owner.to_string(),
        now_ms,
        lease_ms: LEASE_MS,
        limit,
        listener: None,
        shares: None,
    }
}

/// A push claim with a share per endpoint: `default` for those not named.
fn shared(
    owner: &str,
    now_ms: i64,
    limit: usize,
    default: usize,
    endpoints: &[(&str, usize)],
) -> DeliveryClaim {
    DeliveryClaim {
        shares: Some(EndpointShares {
            default,
            endpoints: endpoints
                .iter()
                .map(|(id, n)| (id.to_string(), *n))
                .collect(),
        }),
        ..claim(owner, now_ms, limit)
    }
}

/// A listener's claim of its pull deliveries.
fn pull(listener: &str, owner: &str, now_ms: i64, limit: usize) -> DeliveryClaim {
    DeliveryClaim {
        listener: Some(listener.to_string()),
        ..claim(owner, now_ms, limit)
    }
}

async fn claim_ok(store: &DynStore, claim: &DeliveryClaim) -> Vec<Delivery> {
    store.claim_deliveries(claim).await.expect("claim")
}

/// (endpoint, event) of each claimed delivery, in the order returned.
fn pairs(got: &[Delivery]) -> Vec<(String, String)> {
    got.iter()
        .map(|d| (d.endpoint_id.clone(), d.event_id.clone()))
        .collect()
}

fn sorted_pairs(got: &[Delivery]) -> Vec<(String, String)> {
    let mut pairs = pairs(got);
    pairs.sort();
    pairs
}

fn pair_list(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
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
        now_ms: FINISHED_AT,
    }
}

async fn finish(store: &DynStore, results: Vec<DeliveryResult>) -> Vec<bool> {
    store
        .finish_deliveries(results)
        .await
        .expect("finish_deliveries")
}

fn all_attempts(limit: usize) -> AttemptQuery {
    AttemptQuery {
        limit,
        ..Default::default()
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
    let none = Committed { deliveries: false };
    let some = Committed { deliveries: true };
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
            matches!(outcome, Ok(Committed { deliveries: true })),
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
                    matches!(outcome, Ok(Committed { deliveries: true })),
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
    let all = i64::try_from(super::postgres::MIGRATIONS.len()).expect("a few migrations");
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
    for (i, sql) in super::postgres::MIGRATIONS[..version].iter().enumerate() {
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
