//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through one writer thread that practises group commit: it takes every
//! batch waiting in its queue, applies each inside its own savepoint (so one
//! conflicting batch fails alone), commits them all in one transaction and only
//! then answers each caller. Reads use a small pool of read-only connections and
//! never wait for the writer.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{oneshot, Semaphore};

use super::*;

/// Batches applied per transaction at most; bounds the latency of the first in a group.
const MAX_GROUP: usize = 512;
const READERS: usize = 4;

const MIGRATIONS: &[&str] = &[
    // 1: the core tables.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        secret_key TEXT NOT NULL UNIQUE,
        publishable_key TEXT NOT NULL UNIQUE,
        clock_offset INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL
    );
    CREATE TABLE objects (
        seq INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        created INTEGER NOT NULL,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        data TEXT NOT NULL
    );
    CREATE UNIQUE INDEX objects_by_id ON objects(id);
    CREATE INDEX objects_by_list ON objects(account, kind, seq);
    CREATE TABLE object_index (
        account TEXT NOT NULL,
        kind TEXT NOT NULL,
        field TEXT NOT NULL,
        value TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (account, kind, field, value, seq)
    ) WITHOUT ROWID;
    CREATE INDEX object_index_by_id ON object_index(id);
    CREATE TABLE idempotency (
        account TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (account, key)
    ) WITHOUT ROWID;
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        event_id TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    "#,
];

const ROLLBACK_FAILED: &str = "a batch could not be rolled back; its group was abandoned";

type Reply = oneshot::Sender<Result<(), CommitError>>;
type AdminWork = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

enum Job {
    Batch(WriteBatch, Reply),
    Admin(AdminWork, Reply),
}

pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_slots: Arc<Semaphore>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // FULL: an acknowledged payment survives power loss too, not only a crash.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;",
    )?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    // IMMEDIATE takes the write lock before reading the version, so two processes
    // opening one new file cannot both apply the same migration.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tracing::info!(version = i + 1, "sqlite migration applied");
    }
    tx.commit()
}

impl SqliteStore {
    pub fn open(path: &str) -> anyhow::Result<Self> {
        if let Some(dir) = Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&conn)?;
            readers.push(conn);
        }
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx))?;
        Ok(SqliteStore {
            jobs: tx,
            readers: Arc::new(Mutex::new(readers)),
            reader_slots: Arc::new(Semaphore::new(READERS)),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let _permit = self
            .reader_slots
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.lock().pop();
            let conn =
                conn.ok_or_else(|| StoreError::Unavailable("no reader connection".into()))?;
            let result = f(&conn);
            readers.lock().push(conn);
            result.map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    async fn submit(&self, job: impl FnOnce(Reply) -> Job) -> Result<(), CommitError> {
        let (reply, done) = oneshot::channel();
        self.jobs
            .send(job(reply))
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        done.await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    async fn admin(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    ) -> StoreResult<()> {
        match self.submit(|reply| Job::Admin(Box::new(f), reply)).await {
            Ok(()) => Ok(()),
            Err(CommitError::Store(e)) => Err(e),
            Err(other) => Err(StoreError::Unavailable(other.to_string())),
        }
    }
}

fn writer_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut outcomes: Vec<(Reply, Result<(), CommitError>)> = Vec::with_capacity(group.len());
        let tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let msg = e.to_string();
                for job in group {
                    let reply = match job {
                        Job::Batch(_, r) | Job::Admin(_, r) => r,
                    };
                    let _ = reply.send(Err(StoreError::Unavailable(msg.clone()).into()));
                }
                continue;
            }
        };
        let mut poisoned = false;
        for job in group {
            let (result, reply) = match job {
                Job::Batch(batch, reply) => {
                    (apply_in_savepoint(&tx, |c| apply_batch(c, &batch)), reply)
                }
                Job::Admin(work, reply) => (
                    apply_in_savepoint(&tx, |c| work(c).map_err(|e| CommitError::Store(e.into()))),
                    reply,
                ),
            };
            if matches!(result, Err(CommitError::Store(StoreError::Unavailable(ref m))) if m == ROLLBACK_FAILED)
            {
                poisoned = true;
            }
            outcomes.push((reply, result));
        }
        // A batch whose savepoint could not be rolled back may have left partial
        // writes: the whole group is abandoned rather than committed with them.
        let committed = if poisoned {
            tx.rollback().and(Err(rusqlite::Error::InvalidQuery))
        } else {
            tx.commit()
        };
        match committed {
            Ok(()) => {
                for (reply, result) in outcomes {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sqlite group commit failed");
                let msg = e.to_string();
                for (reply, _) in outcomes {
                    let _ = reply.send(Err(StoreError::Unavailable(msg.clone()).into()));
                }
            }
        }
    }
    tracing::info!("sqlite writer stopped");
}

fn apply_in_savepoint(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<(), CommitError>,
) -> Result<(), CommitError> {
    if let Err(e) = conn.execute_batch("SAVEPOINT batch") {
        return Err(CommitError::Store(e.into()));
    }
    let result = f(conn);
    if result.is_ok() {
        return match conn.execute_batch("RELEASE batch") {
            Ok(()) => result,
            Err(e) => {
                tracing::error!(error = %e, "savepoint release failed");
                Err(CommitError::Store(StoreError::Unavailable(
                    ROLLBACK_FAILED.into(),
                )))
            }
        };
    }
    if let Err(e) = conn.execute_batch("ROLLBACK TO batch; RELEASE batch") {
        tracing::error!(error = %e, "savepoint rollback failed");
        return Err(CommitError::Store(StoreError::Unavailable(
            ROLLBACK_FAILED.into(),
        )));
    }
    result
}

fn apply_batch(conn: &Connection, batch: &WriteBatch) -> Result<(), CommitError> {
    let account = batch.account.as_str();
    for object in &batch.objects {
        let seq: i64 = match object.expected_version {
            None => {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO objects (account, id, kind, created, version, deleted, data)
                         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6) ON CONFLICT(id) DO NOTHING",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            account,
                            object.id,
                            object.kind,
                            object.created,
                            object.deleted,
                            object.data
                        ])
                    })
                    .map_err(|e| CommitError::Store(e.into()))?;
                if inserted == 0 {
                    return Err(CommitError::Conflict(object.id.clone()));
                }
                conn.last_insert_rowid()
            }
            Some(version) => {
                let seq: Option<i64> = conn
                    .prepare_cached(
                        "UPDATE objects SET version = version + 1, deleted = ?4, data = ?5
                         WHERE id = ?1 AND account = ?2 AND version = ?3 RETURNING seq",
                    )
                    .and_then(|mut s| {
                        s.query_row(
                            params![object.id, account, version, object.deleted, object.data],
                            |r| r.get(0),
                        )
                        .optional()
                    })
                    .map_err(|e| CommitError::Store(e.into()))?;
                let seq = seq.ok_or_else(|| CommitError::Conflict(object.id.clone()))?;
                conn.prepare_cached("DELETE FROM object_index WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![object.id]))
                    .map_err(|e| CommitError::Store(e.into()))?;
                seq
            }
        };
        if !object.deleted {
            let mut insert = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO object_index (account, kind, field, value, seq, id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| CommitError::Store(e.into()))?;
            for (field, value) in &object.index {
                insert
                    .execute(params![account, object.kind, field, value, seq, object.id])
                    .map_err(|e| CommitError::Store(e.into()))?;
            }
        }
    }
    for event_id in &batch.outbox {
        conn.prepare_cached(
            "INSERT INTO outbox (account, event_id, created) VALUES (?1, ?2, unixepoch())",
        )
        .and_then(|mut s| s.execute(params![account, event_id]))
        .map_err(|e| CommitError::Store(e.into()))?;
    }
    if let Some(record) = &batch.idempotency {
        let written = conn
            .prepare_cached(
                "INSERT INTO idempotency (account, key, fingerprint, status, body, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(account, key) DO UPDATE SET
                    fingerprint = excluded.fingerprint, status = excluded.status,
                    body = excluded.body, created = excluded.created
                 WHERE idempotency.created < ?7",
            )
            .and_then(|mut s| {
                s.execute(params![
                    account,
                    record.key,
                    record.fingerprint,
                    record.status,
                    record.body,
                    record.created,
                    batch.idempotency_cutoff
                ])
            })
            .map_err(|e| CommitError::Store(e.into()))?;
        if written == 0 {
            return Err(CommitError::IdempotencyTaken);
        }
    }
    Ok(())
}

fn row_to_object(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredObject> {
    Ok(StoredObject {
        seq: row.get(0)?,
        id: row.get(1)?,
        kind: row.get(2)?,
        version: row.get(3)?,
        created: row.get(4)?,
        deleted: row.get(5)?,
        data: row.get(6)?,
    })
}

fn row_to_account(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        secret_key: row.get(1)?,
        publishable_key: row.get(2)?,
        clock_offset: row.get(3)?,
        created: row.get(4)?,
    })
}

const ACCOUNT_COLUMNS: &str = "id, secret_key, publishable_key, clock_offset, created";

/// The SQL for one list page. Conditions are built from the query's shape only;
/// every value is a bound parameter.
fn list_sql(query: &ListQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut sql =
        String::from("SELECT o.seq, o.id, o.kind, o.version, o.created, o.deleted, o.data FROM ");
    let mut args: Vec<V> = Vec::new();
    let column = if let Some((field, value)) = &query.filter {
        sql.push_str(
            "object_index i JOIN objects o ON o.seq = i.seq
             WHERE i.account = ?1 AND i.kind = ?2 AND i.field = ?3 AND i.value = ?4",
        );
        args.push(V::Text(query.kind.clone()));
        args.push(V::Text(field.clone()));
        args.push(V::Text(value.clone()));
        "i.seq"
    } else {
        sql.push_str("objects o WHERE o.account = ?1 AND o.kind = ?2 AND o.deleted = 0");
        args.push(V::Text(query.kind.clone()));
        "o.seq"
    };
    let mut bind = |sql: &mut String, cond: &str, v: i64| {
        args.push(V::Integer(v));
        sql.push_str(&format!(" AND {cond} ?{}", args.len() + 1));
    };
    let c = query.created;
    if let Some(v) = c.gt {
        bind(&mut sql, "o.created >", v);
    }
    if let Some(v) = c.gte {
        bind(&mut sql, "o.created >=", v);
    }
    if let Some(v) = c.lt {
        bind(&mut sql, "o.created <", v);
    }
    if let Some(v) = c.lte {
        bind(&mut sql, "o.created <=", v);
    }
    let order = match query.cursor {
        Cursor::Newest => "DESC",
        Cursor::Before(seq) => {
            bind(&mut sql, &format!("{column} <"), seq);
            "DESC"
        }
        Cursor::After(seq) => {
            bind(&mut sql, &format!("{column} >"), seq);
            "ASC"
        }
    };
    sql.push_str(&format!(" ORDER BY {column} {order} LIMIT {}", query.limit));
    (sql, args)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_string();
        self.read(move |c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
        })
        .await
    }

    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.admin(move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
        })
        .await
    }

    async fn create_account(&self, account: &Account) -> StoreResult<()> {
        let a = account.clone();
        self.admin(move |c| {
            c.execute(
                "INSERT INTO accounts (id, secret_key, publishable_key, clock_offset, created)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    a.id,
                    a.secret_key,
                    a.publishable_key,
                    a.clock_offset,
                    a.created
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn account(&self, id: &str) -> StoreResult<Option<Account>> {
        let id = id.to_string();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
                params![id],
                row_to_account,
            )
            .optional()
        })
        .await
    }

    async fn account_by_key(&self, key: &str) -> StoreResult<Option<Account>> {
        let key = key.to_string();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE secret_key = ?1 OR publishable_key = ?1"),
                params![key],
                row_to_account,
            )
            .optional()
        })
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created, id"
            ))?;
            let rows = stmt.query_map([], row_to_account)?;
            rows.collect()
        })
        .await
    }

    async fn set_clock_offset(&self, account: &str, offset: i64) -> StoreResult<()> {
        let account = account.to_string();
        self.admin(move |c| {
            c.execute(
                "UPDATE accounts SET clock_offset = MAX(clock_offset, ?2) WHERE id = ?1",
                params![account, offset],
            )
            .map(|_| ())
        })
        .await
    }

    async fn get(&self, account: &str, id: &str) -> StoreResult<Option<StoredObject>> {
        let (account, id) = (account.to_string(), id.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT seq, id, kind, version, created, deleted, data FROM objects WHERE id = ?1 AND account = ?2",
            )?
            .query_row(params![id, account], row_to_object)
            .optional()
        })
        .await
    }

    async fn list(&self, account: &str, query: &ListQuery) -> StoreResult<Vec<StoredObject>> {
        let (sql, mut args) = list_sql(query);
        args.insert(0, rusqlite::types::Value::Text(account.to_string()));
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row_to_object)?;
            rows.collect()
        })
        .await
    }

    async fn idempotency_get(
        &self,
        account: &str,
        key: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let (account, key) = (account.to_string(), key.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT key, fingerprint, status, body, created FROM idempotency WHERE account = ?1 AND key = ?2",
            )?
            .query_row(params![account, key], |r| {
                Ok(IdempotencyRecord {
                    key: r.get(0)?,
                    fingerprint: r.get(1)?,
                    status: r.get(2)?,
                    body: r.get(3)?,
                    created: r.get(4)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), CommitError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.submit(|reply| Job::Batch(batch, reply)).await
    }

    async fn purge_idempotency(&self, account: &str, cutoff: i64) -> StoreResult<u64> {
        let account = account.to_string();
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = count.clone();
        self.admin(move |c| {
            let n = c.execute(
                "DELETE FROM idempotency WHERE account = ?1 AND created < ?2",
                params![account, cutoff],
            )?;
            counter.store(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .await?;
        Ok(count.load(std::sync::atomic::Ordering::Relaxed))
    }
}
