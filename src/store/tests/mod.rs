//! The suite every [`Store`] implementation must pass: the fixtures, the
//! [`conformance!`] macro and the helpers here, the cases in one file per area.
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
                let fixture = $crate::store::tests::Fixture::sqlite().await;
                super::$case(&fixture).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(fixture) = $crate::store::tests::Fixture::postgres().await else {
                    return;
                };
                super::$case(&fixture).await;
            }
        }
    )*};
}

mod attempts;
mod concurrency;
mod deliveries;
mod idempotency;
mod jobs;
mod lists;
mod migrations;
mod objects;

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
// Webhook delivery helpers: events, their targets, claims and attempts.

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
