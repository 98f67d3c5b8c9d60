//! The PostgreSQL store, for several nodes sharing one database.
//!
//! Same tables and semantics as the SQLite store. Each batch is one transaction on
//! a pooled connection (READ COMMITTED unless the server's default says otherwise).
//! Optimistic concurrency comes from the statements themselves: an insert that
//! finds its id taken, an update whose expected version no longer matches, or an
//! idempotency key already held by a fresh record affects no row, and the whole
//! batch rolls back. A concurrent writer on the same row makes the statement wait
//! for it and then re-check its condition against the committed row, so exactly
//! one of several racing batches wins. Serialization failures, deadlocks and
//! unique violations on an object's id are reported as conflicts too, so callers
//! retry them like any other.

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::sql::{self, Arg, Dialect};
use super::*;

const DIALECT: Dialect = Dialect::Postgres;

/// Connections per node.
const POOL_SIZE: usize = 16;
/// How long a request waits for a free connection before giving up.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening one new connection may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the liveness check of a returned connection may take.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Advisory lock key that serialises migrations between nodes booting at once ("paygroun").
const MIGRATION_LOCK: i64 = 0x7061_7967_726f_756e;

/// The schema's steps (`migrations/postgres/`); `schema_migrations` lists those applied.
pub(super) const MIGRATIONS: &[&str] = super::migrations::POSTGRES;

const INSERT_OBJECT: &str =
    "INSERT INTO objects (account, id, kind, created, version, deleted, data, index_keys)
     VALUES ($1, $2, $3, $4, 1, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING seq";
const UPDATE_OBJECT: &str =
    "UPDATE objects SET version = version + 1, deleted = $4, data = $5, index_keys = $6
     WHERE id = $1 AND account = $2 AND version = $3 RETURNING seq";
/// The statement that removes the index rows of the stored versions of the objects
/// `$ids` picks, by primary key from the keys each row keeps; it runs before the
/// rows are updated.
macro_rules! delete_index {
    ($ids:literal) => {
        concat!(
            "DELETE FROM object_index i
     USING objects o, json_array_elements(o.index_keys::JSON) k
     WHERE ",
            $ids,
            " AND i.account = o.account AND i.kind = o.kind
       AND i.field = k->>0 AND i.value = k->>1 AND i.seq = o.seq"
        )
    };
}
/// Removes the index rows of the objects whose ids are in the array `$1`.
const DELETE_INDEX: &str = delete_index!("o.id = ANY($1)");
/// [`DELETE_INDEX`] for one object, as a transaction of one batch removes them. With
/// an array of ids the server plans the statement anew at every execution (its
/// generic plan, costed for ten ids, never beats a plan for one), 0.2 ms each time;
/// with one id the generic plan is as cheap, and is kept.
const DELETE_INDEX_ONE: &str = delete_index!("o.id = $1");
const INSERT_INDEX: &str = "INSERT INTO object_index (account, kind, field, value, seq, id)
     SELECT $1, $2, t.field, t.value, $5, $6 FROM unnest($3::TEXT[], $4::TEXT[]) AS t(field, value)
     ON CONFLICT DO NOTHING";
/// A delivery for each event and each target of its account that takes its type
/// (see [`TARGET_EVENTS_FIELD`]), due now; the events may be of several accounts.
const INSERT_DELIVERIES: &str = "INSERT INTO webhook_deliveries
        (account, event_id, endpoint_id, push, status, attempts, next_attempt_at, created_at)
     SELECT DISTINCT t.a, t.e, i.id, i.kind = $4::TEXT, 'pending', 0, $6::BIGINT, $6::BIGINT
     FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS t(a, e, ty)
     JOIN object_index i ON i.account = t.a AND i.kind IN ($4::TEXT, $5::TEXT)
        AND i.field = 'target_event' AND i.value IN (t.ty, '*')
     ON CONFLICT (event_id, endpoint_id) DO NOTHING";
const UPSERT_IDEMPOTENCY: &str = sql::UPSERT_IDEMPOTENCY.text(DIALECT);

pub struct PostgresStore {
    pool: Pool,
    /// Batches waiting for [`group_commit_loop`].
    commits: tokio::sync::mpsc::UnboundedSender<PendingCommit>,
}

/// A batch waiting to be committed, and where its outcome goes.
struct PendingCommit {
    batch: WriteBatch,
    reply: tokio::sync::oneshot::Sender<Result<Committed, CommitError>>,
}

/// Group transactions in flight at once; while all are busy, new batches queue and
/// the next group takes them all. Two keep the database as busy as four did (the
/// same payments per second at 4, 32 and 128 connections) in groups twice as large:
/// half the transactions and WAL flushes, ~10% less database CPU per payment and a
/// lower p99. Several nodes on one database add up their groups in flight, so fewer
/// per node also keeps a second node's groups from shrinking everyone's.
pub(super) const GROUPS_IN_FLIGHT: usize = 2;
/// Batches per group transaction at most.
const MAX_GROUP: usize = 256;

/// A readable account of a driver error: `Display` on `tokio_postgres::Error` says
/// only "db error", the server's message lives in its source.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            s.push_str(&format!(" ({detail})"));
        }
        return s;
    }
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

fn describe_pool(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// Keeps the driver error (callers may inspect it) and logs what was being done.
fn pg_err(context: &'static str, e: tokio_postgres::Error) -> StoreError {
    tracing::warn!(context, error = %describe(&e), "postgres store error");
    StoreError::Postgres(e)
}

/// Maps an error met while applying a batch: races become conflicts, the rest store errors.
fn commit_err(context: &'static str, conflict_on: &str, e: tokio_postgres::Error) -> CommitError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            return CommitError::Conflict(conflict_on.to_string());
        }
        if *code == SqlState::UNIQUE_VIOLATION {
            match db.constraint() {
                Some("objects_by_id") => return CommitError::Conflict(conflict_on.to_string()),
                Some("idempotency_pkey") => return CommitError::IdempotencyTaken,
                _ => {}
            }
        }
    }
    CommitError::Store(pg_err(context, e))
}

impl PostgresStore {
    /// Connects a pool to the database a `postgres://` URL names and brings its schema up to date.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        // The URL may hold a password: keep it out of error messages.
        let config: tokio_postgres::Config =
            url.parse().context("invalid PostgreSQL connection URL")?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CREATE_TIMEOUT))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .build()
            .context("building the PostgreSQL connection pool")?;
        let (commits, queue) = tokio::sync::mpsc::unbounded_channel();
        let store = PostgresStore {
            pool: pool.clone(),
            commits,
        };
        store.migrate().await?;
        tokio::spawn(group_commit_loop(pool, queue));
        Ok(store)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {}", describe_pool(&e)))?;
        let fail = |what: &'static str| {
            move |e: tokio_postgres::Error| anyhow::anyhow!("{what}: {}", describe(&e))
        };
        let tx = client
            .transaction()
            .await
            .map_err(fail("starting the migration transaction"))?;
        // Nodes booting together queue here; the lock ends with the transaction.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(fail("taking the migration lock"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(fail("creating schema_migrations"))?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(fail("reading the schema version"))?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            tracing::warn!(
                current,
                known,
                "the PostgreSQL schema is newer than this build; continuing without migrating"
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= current {
                continue;
            }
            tx.batch_execute(sql)
                .await
                .map_err(|e| anyhow::anyhow!("applying migration {version}: {}", describe(&e)))?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(|e| anyhow::anyhow!("recording migration {version}: {}", describe(&e)))?;
            tracing::info!(version, "postgres migration applied");
        }
        tx.commit()
            .await
            .map_err(fail("committing the migrations"))?;
        Ok(())
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| {
            let msg = format!("getting a PostgreSQL connection: {}", describe_pool(&e));
            tracing::warn!(error = %msg, "postgres pool error");
            StoreError::Pool(msg)
        })
    }

    async fn query_opt<T>(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        map: impl FnOnce(&Row) -> Result<T, tokio_postgres::Error>,
    ) -> StoreResult<Option<T>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| pg_err(context, e))?;
        let row = client
            .query_opt(&stmt, params)
            .await
            .map_err(|e| pg_err(context, e))?;
        row.as_ref()
            .map(map)
            .transpose()
            .map_err(|e| pg_err(context, e))
    }

    async fn query<T>(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        map: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
    ) -> StoreResult<Vec<T>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| pg_err(context, e))?;
        let rows = client
            .query(&stmt, params)
            .await
            .map_err(|e| pg_err(context, e))?;
        rows.iter()
            .map(map)
            .collect::<Result<_, _>>()
            .map_err(|e| pg_err(context, e))
    }

    async fn execute(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| pg_err(context, e))?;
        client
            .execute(&stmt, params)
            .await
            .map_err(|e| pg_err(context, e))
    }
}

/// Applies every write of the batch inside `tx`; any `Err` means the caller rolls back.
async fn apply_batch(
    tx: &deadpool_postgres::Transaction<'_>,
    batch: &WriteBatch,
) -> Result<Committed, CommitError> {
    let account = batch.account.as_str();
    for object in &batch.objects {
        let id = object.id.as_str();
        let index_keys = object.index_keys();
        let data = object_data::pack(&object.data);
        let seq: i64 = match object.expected_version {
            None => {
                let stmt = tx
                    .prepare_cached(INSERT_OBJECT)
                    .await
                    .map_err(|e| commit_err("preparing the object insert", id, e))?;
                let row = tx
                    .query_opt(
                        &stmt,
                        &[
                            &account,
                            &object.id,
                            &object.kind,
                            &object.created,
                            &object.deleted,
                            &data,
                            &index_keys,
                        ],
                    )
                    .await
                    .map_err(|e| commit_err("inserting an object", id, e))?;
                match row {
                    Some(row) => row
                        .try_get(0)
                        .map_err(|e| commit_err("reading the new seq", id, e))?,
                    None => return Err(CommitError::Conflict(object.id.clone())),
                }
            }
            Some(version) => {
                let stmt = tx
                    .prepare_cached(DELETE_INDEX_ONE)
                    .await
                    .map_err(|e| commit_err("preparing the index delete", id, e))?;
                tx.execute(&stmt, &[&id])
                    .await
                    .map_err(|e| commit_err("deleting index rows", id, e))?;
                let stmt = tx
                    .prepare_cached(UPDATE_OBJECT)
                    .await
                    .map_err(|e| commit_err("preparing the object update", id, e))?;
                let row = tx
                    .query_opt(
                        &stmt,
                        &[
                            &object.id,
                            &account,
                            &version,
                            &object.deleted,
                            &data,
                            &index_keys,
                        ],
                    )
                    .await
                    .map_err(|e| commit_err("updating an object", id, e))?;
                match row {
                    Some(row) => row
                        .try_get(0)
                        .map_err(|e| commit_err("reading the updated seq", id, e))?,
                    None => return Err(CommitError::Conflict(object.id.clone())),
                }
            }
        };
        if !object.deleted && !object.index.is_empty() {
            let fields: Vec<&str> = object.index.iter().map(|(f, _)| f.as_str()).collect();
            let values: Vec<&str> = object.index.iter().map(|(_, v)| v.as_str()).collect();
            let stmt = tx
                .prepare_cached(INSERT_INDEX)
                .await
                .map_err(|e| commit_err("preparing the index insert", id, e))?;
            tx.execute(
                &stmt,
                &[&account, &object.kind, &fields, &values, &seq, &object.id],
            )
            .await
            .map_err(|e| commit_err("writing index rows", id, e))?;
        }
    }
    let label = batch
        .objects
        .first()
        .map(|o| o.id.as_str())
        .or(batch.idempotency.as_ref().map(|r| r.key.as_str()))
        .unwrap_or("batch");
    let scheduled = match &batch.finishes {
        _ if !batch.has_jobs() => None,
        finishes => {
            let jobs = JobColumns::of(std::iter::once(batch));
            let written = jobs
                .write(tx)
                .await
                .map_err(|e| commit_err("writing jobs", label, e))?;
            if let Some(lease) = finishes.as_ref().filter(|_| written.finished == 0) {
                return Err(CommitError::Conflict(lease.label()));
            }
            written.earliest
        }
    };
    let mut deliveries = 0;
    if !batch.events.is_empty() {
        let stmt = tx
            .prepare_cached(INSERT_DELIVERIES)
            .await
            .map_err(|e| commit_err("preparing the delivery insert", label, e))?;
        let columns = EventColumns::of(std::iter::once(batch));
        deliveries = columns
            .insert(tx, &stmt)
            .await
            .map_err(|e| commit_err("creating deliveries", label, e))?;
    }
    if let Some(record) = &batch.idempotency {
        let stmt = tx
            .prepare_cached(UPSERT_IDEMPOTENCY)
            .await
            .map_err(|e| commit_err("preparing the idempotency upsert", label, e))?;
        let written = tx
            .execute(
                &stmt,
                &[
                    &account,
                    &record.key,
                    &record.fingerprint,
                    &i32::from(record.status),
                    &record.body,
                    &record.created,
                    &batch.idempotency_cutoff,
                ],
            )
            .await
            .map_err(|e| commit_err("writing the idempotency record", label, e))?;
        if written == 0 {
            return Err(CommitError::IdempotencyTaken);
        }
    }
    Ok(Committed {
        deliveries: deliveries > 0,
        scheduled,
    })
}

/// Removes the jobs whose leases `$1..$4` (account, kind, object, owner) still hold.
const FINISH_JOBS: &str = "DELETE FROM scheduled_jobs j
     USING unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[]) AS f(a, k, o, l)
     WHERE j.account = f.a AND j.kind = f.k AND j.object = f.o AND j.lease_owner = f.l";
const CANCEL_JOBS: &str = "DELETE FROM scheduled_jobs j
     USING unnest($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS c(a, k, o)
     WHERE j.account = c.a AND j.kind = c.k AND j.object = c.o";
/// Schedules jobs, or reschedules them (their lease and attempts start over). A
/// job on the account's clock runs when the real time reaches its due time less
/// the account's offset (none for an account not stored). The account's row is
/// read FOR SHARE: a clock move under way (which holds it to update it) commits
/// first and is read here, and one that comes later waits for this transaction
/// and then moves these jobs with the others.
const SCHEDULE_JOBS: &str = "INSERT INTO scheduled_jobs
        (account, kind, object, due_at, clock, runnable_at, attempts, created_at)
     SELECT t.a, t.k, t.o, t.d, t.c,
            CASE WHEN t.c IS NULL THEN (t.d - COALESCE(
                (SELECT clock_offset FROM accounts WHERE id = t.a FOR SHARE), 0)) * 1000 END,
            0, $6::BIGINT
     FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[])
          AS t(a, k, o, d, c)
     ON CONFLICT (account, kind, object) DO UPDATE SET
        due_at = excluded.due_at, clock = excluded.clock, runnable_at = excluded.runnable_at,
        lease_owner = NULL, lease_expires_at = NULL, attempts = 0, last_error = NULL
     RETURNING runnable_at";

/// The jobs some batches finish, cancel and schedule, as the columns of
/// [`FINISH_JOBS`], [`CANCEL_JOBS`] and [`SCHEDULE_JOBS`].
#[derive(Default)]
struct JobColumns<'a> {
    /// Account, kind, object and lease owner of each job finished.
    finished: [Vec<&'a str>; 4],
    /// Account, kind and object of each job cancelled.
    cancelled: [Vec<&'a str>; 3],
    /// Account, kind and object of each job scheduled, then its due time and clock.
    scheduled: [Vec<&'a str>; 3],
    due_at: Vec<i64>,
    clocks: Vec<Option<&'a str>>,
}

/// What [`JobColumns::write`] did.
#[derive(Default)]
struct JobsWritten {
    /// Jobs finished under a lease still held.
    finished: u64,
    /// The earliest `runnable_at` scheduled.
    earliest: Option<i64>,
}

impl<'a> JobColumns<'a> {
    fn of(batches: impl IntoIterator<Item = &'a WriteBatch>) -> Self {
        let mut columns = JobColumns::default();
        for batch in batches {
            if let Some(lease) = &batch.finishes {
                let row = [
                    &lease.account,
                    &lease.job.kind,
                    &lease.job.object,
                    &lease.owner,
                ];
                for (column, text) in columns.finished.iter_mut().zip(row) {
                    column.push(text);
                }
            }
            for job in &batch.cancelled_jobs {
                for (column, text) in
                    columns
                        .cancelled
                        .iter_mut()
                        .zip([&batch.account, &job.kind, &job.object])
                {
                    column.push(text);
                }
            }
            for job in &batch.jobs {
                for (column, text) in columns.scheduled.iter_mut().zip([
                    &batch.account,
                    &job.job.kind,
                    &job.job.object,
                ]) {
                    column.push(text);
                }
                columns.due_at.push(job.due_at);
                columns.clocks.push(job.clock.as_deref());
            }
        }
        columns
    }

    /// Jobs finished: the batches that finish one.
    fn finishes(&self) -> usize {
        self.finished[0].len()
    }

    fn is_empty(&self) -> bool {
        self.finished[0].is_empty() && self.cancelled[0].is_empty() && self.scheduled[0].is_empty()
    }

    /// Finishes, cancels and schedules, in that order (a handler may schedule its
    /// own job again), the statements sent together.
    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<JobsWritten, tokio_postgres::Error> {
        let finished = async {
            if self.finished[0].is_empty() {
                return Ok(0);
            }
            let stmt = tx.prepare_cached(FINISH_JOBS).await?;
            let [a, k, o, l] = &self.finished;
            tx.execute(&stmt, &[a, k, o, l]).await
        };
        let cancelled = async {
            if self.cancelled[0].is_empty() {
                return Ok(0);
            }
            let stmt = tx.prepare_cached(CANCEL_JOBS).await?;
            let [a, k, o] = &self.cancelled;
            tx.execute(&stmt, &[a, k, o]).await
        };
        let scheduled = async {
            if self.scheduled[0].is_empty() {
                return Ok(Vec::new());
            }
            let stmt = tx.prepare_cached(SCHEDULE_JOBS).await?;
            let [a, k, o] = &self.scheduled;
            let now_ms = crate::clock::system_now_millis();
            tx.query(&stmt, &[a, k, o, &self.due_at, &self.clocks, &now_ms])
                .await
        };
        let (finished, cancelled, scheduled) = futures::join!(finished, cancelled, scheduled);
        cancelled?;
        let mut earliest = None;
        for row in scheduled? {
            earliest = super::earliest(earliest, row.try_get(0)?);
        }
        Ok(JobsWritten {
            finished: finished?,
            earliest,
        })
    }
}

/// The events of some batches as the columns of [`INSERT_DELIVERIES`].
#[derive(Default)]
struct EventColumns<'a> {
    accounts: Vec<&'a str>,
    ids: Vec<&'a str>,
    types: Vec<&'a str>,
}

impl<'a> EventColumns<'a> {
    fn of(batches: impl IntoIterator<Item = &'a WriteBatch>) -> Self {
        let mut columns = EventColumns::default();
        for batch in batches {
            for event in &batch.events {
                columns.accounts.push(&batch.account);
                columns.ids.push(&event.id);
                columns.types.push(&event.event_type);
            }
        }
        columns
    }

    async fn insert(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        stmt: &tokio_postgres::Statement,
    ) -> Result<u64, tokio_postgres::Error> {
        if self.ids.is_empty() {
            return Ok(0);
        }
        let [endpoint, listener] = EVENT_TARGET_KINDS;
        let now_ms = crate::clock::system_now_millis();
        tx.execute(
            stmt,
            &[
                &self.accounts,
                &self.ids,
                &self.types,
                &endpoint,
                &listener,
                &now_ms,
            ],
        )
        .await
    }
}

/// Commits one batch in a transaction of its own.
async fn commit_one(pool: &Pool, batch: &WriteBatch) -> Result<Committed, CommitError> {
    let mut client = pool.get().await.map_err(|e| {
        StoreError::Pool(format!(
            "getting a PostgreSQL connection: {}",
            describe_pool(&e)
        ))
    })?;
    let label = batch
        .objects
        .first()
        .map(|o| o.id.as_str())
        .unwrap_or("batch");
    let tx = client
        .transaction()
        .await
        .map_err(|e| commit_err("starting a transaction", label, e))?;
    match apply_batch(&tx, batch).await {
        Ok(committed) => tx
            .commit()
            .await
            .map(|()| committed)
            .map_err(|e| commit_err("committing a batch", label, e)),
        Err(err) => {
            if let Err(e) = tx.rollback().await {
                // The connection is probably gone; the server rolls back on its own.
                tracing::warn!(error = %describe(&e), "postgres rollback failed");
            }
            Err(err)
        }
    }
}

/// Group commit, as the SQLite writer does it: batches that arrive while earlier
/// groups are still committing are committed together, in one transaction of a few
/// multi-row statements (one per table) instead of one transaction of ~15 round
/// trips each. The database then pays one WAL flush and a handful of statements per
/// group rather than per payment; that, not the network, is what limits a node. A
/// group that only creates objects (a payment does) is one statement and one round
/// trip ([`INSERT_GROUP`]), a single batch's included.
///
/// A group is all or nothing: if any of its batches would fail (a stale version, a
/// taken id or idempotency key), the group rolls back and every batch is committed
/// again on its own, so each gets exactly the outcome it would have had alone.
async fn group_commit_loop(
    pool: Pool,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<PendingCommit>,
) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(GROUPS_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            commit_group(&pool, group).await;
            drop(permit);
        });
    }
}

/// Splits off the batches that touch an object, idempotency key or job an earlier
/// batch of the group also touches (two writers of one PaymentIntent): they are
/// committed on their own after the group, so the group need not roll back for
/// them, and each then sees the group's result (and conflicts as it would alone).
fn split_overlapping(group: Vec<PendingCommit>) -> (Vec<PendingCommit>, Vec<PendingCommit>) {
    let mut ids = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    let mut jobs = std::collections::HashSet::new();
    let (mut disjoint, mut overlapping) = (Vec::new(), Vec::new());
    for pending in group {
        let batch = &pending.batch;
        let key = batch
            .idempotency
            .as_ref()
            .map(|r| (batch.account.clone(), r.key.clone()));
        let batch_jobs: Vec<(String, JobId)> = if batch.has_jobs() {
            let account = &batch.account;
            batch
                .finishes
                .iter()
                .map(|lease| (&lease.account, &lease.job))
                .chain(batch.cancelled_jobs.iter().map(|job| (account, job)))
                .chain(batch.jobs.iter().map(|job| (account, &job.job)))
                .map(|(account, job)| (account.clone(), job.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let clashes = batch.objects.iter().any(|o| ids.contains(&o.id))
            || key.as_ref().is_some_and(|k| keys.contains(k))
            || batch_jobs.iter().any(|j| jobs.contains(j));
        if clashes {
            overlapping.push(pending);
            continue;
        }
        ids.extend(batch.objects.iter().map(|o| o.id.clone()));
        keys.extend(key);
        jobs.extend(batch_jobs);
        disjoint.push(pending);
    }
    (disjoint, overlapping)
}

async fn commit_group(pool: &Pool, group: Vec<PendingCommit>) {
    let (group, overlapping) = split_overlapping(group);
    commit_disjoint(pool, group).await;
    for pending in overlapping {
        let outcome = commit_one(pool, &pending.batch).await;
        let _ = pending.reply.send(outcome);
    }
}

async fn commit_disjoint(pool: &Pool, group: Vec<PendingCommit>) {
    let batches: Vec<&WriteBatch> = group.iter().map(|p| &p.batch).collect();
    let outcome = if let Some(window) = only_inserts(&batches) {
        Some(insert_group(pool, &batches, window).await)
    } else if batches.len() > 1 {
        Some(try_group(pool, &batches).await)
    } else {
        None
    };
    drop(batches);
    match outcome {
        Some(Ok(GroupOutcome::Committed(committed))) => {
            for pending in group {
                let _ = pending.reply.send(Ok(committed));
            }
            return;
        }
        Some(Ok(GroupOutcome::RolledBack)) | None => {}
        Some(Err(GroupError::BeforeCommit(e))) => {
            tracing::debug!(error = %describe(&e), "group commit failed; committing one by one")
        }
        // Whether the group committed is unknown: committing its batches again
        // could write a payment twice, so each caller gets the error, as a
        // single batch's caller would.
        Some(Err(GroupError::Commit(e))) => {
            let message = format!("committing a group: {}", describe(&e));
            tracing::warn!(error = %message, "postgres group commit failed");
            for pending in group {
                let _ = pending
                    .reply
                    .send(Err(StoreError::Unavailable(message.clone()).into()));
            }
            return;
        }
    }
    futures::future::join_all(group.into_iter().map(|pending| async move {
        let outcome = commit_one(pool, &pending.batch).await;
        let _ = pending.reply.send(outcome);
    }))
    .await;
}

/// Columns of a group's rows, one vector per column: each table gets one
/// `INSERT ... SELECT FROM unnest(...)`.
#[derive(Default)]
struct GroupRows<'a> {
    new_accounts: Vec<&'a str>,
    new_ids: Vec<&'a str>,
    new_kinds: Vec<&'a str>,
    new_created: Vec<i64>,
    new_deleted: Vec<bool>,
    new_data: Vec<Vec<u8>>,
    new_index_keys: Vec<String>,
    /// Updates, sorted by id so concurrent groups lock rows in one order.
    updates: Vec<(&'a str, &'a ObjectWrite)>,
    /// Index rows of every object that is not deleted: account, kind, field,
    /// value and the object's id, each key of an object once.
    index: [Vec<&'a str>; 5],
}

impl<'a> GroupRows<'a> {
    fn of(batches: &[&'a WriteBatch]) -> Self {
        let mut rows = GroupRows::default();
        for batch in batches {
            for object in &batch.objects {
                match object.expected_version {
                    None => {
                        rows.new_accounts.push(&batch.account);
                        rows.new_ids.push(&object.id);
                        rows.new_kinds.push(&object.kind);
                        rows.new_created.push(object.created);
                        rows.new_deleted.push(object.deleted);
                        rows.new_data.push(object_data::pack(&object.data));
                        rows.new_index_keys.push(object.index_keys());
                    }
                    Some(_) => rows.updates.push((&batch.account, object)),
                }
                let live = object.live_index();
                for (n, (field, value)) in live.iter().enumerate() {
                    // A repeated key would break INSERT_GROUP's primary key.
                    if live[..n].iter().any(|(f, v)| f == field && v == value) {
                        continue;
                    }
                    for (column, text) in rows.index.iter_mut().zip([
                        batch.account.as_str(),
                        &object.kind,
                        field,
                        value,
                        &object.id,
                    ]) {
                        column.push(text);
                    }
                }
            }
        }
        rows.updates.sort_by_key(|(_, o)| o.id.as_str());
        rows
    }
}

const GROUP_INSERT_OBJECTS: &str =
    "INSERT INTO objects (account, id, kind, created, version, deleted, data, index_keys)
     SELECT t.a, t.i, t.k, t.c, 1, t.d, t.x, t.ik
     FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BOOLEAN[], $6::BYTEA[],
                 $7::TEXT[])
          WITH ORDINALITY AS t(a, i, k, c, d, x, ik, n)
     ORDER BY t.n
     ON CONFLICT (id) DO NOTHING RETURNING id, seq";
const GROUP_UPDATE_OBJECTS: &str =
    "UPDATE objects o SET version = o.version + 1, deleted = u.d, data = u.x, index_keys = u.ik
     FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BOOLEAN[], $5::BYTEA[], $6::TEXT[])
          AS u(i, a, v, d, x, ik)
     WHERE o.id = u.i AND o.account = u.a AND o.version = u.v RETURNING o.id, o.seq";
const GROUP_INSERT_INDEX: &str = "INSERT INTO object_index (account, kind, field, value, seq, id)
     SELECT t.a, t.k, t.f, t.v, o.seq, t.i
     FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[]) AS t(a, k, f, v, i)
     JOIN objects o ON o.id = t.i
     ON CONFLICT DO NOTHING";
/// The whole of a group that only creates objects, as one statement: the objects,
/// their index rows (joined to the objects' new seqs in memory, not looked up by
/// id), the deliveries of their events ([`INSERT_DELIVERIES`], its parameters
/// renumbered) and the requests' idempotency records.
/// Outside a transaction block a statement is its own transaction, so the group
/// costs one round trip and one WAL flush, where BEGIN, four statements and COMMIT
/// cost three round trips and six responses.
///
/// Every refusal fails the statement, so nothing is written and the batches are
/// then committed one by one, each to its own outcome: the inserts carry no ON
/// CONFLICT (a taken id raises a unique violation instead of costing every row a
/// second probe of the id index), and an idempotency key held by a record younger
/// than the window (the upsert leaves it alone) makes the final SELECT cast a
/// sentence to a number, which PostgreSQL refuses at run time.
const INSERT_GROUP: &str = "WITH o AS (
        INSERT INTO objects (account, id, kind, created, version, deleted, data, index_keys)
        SELECT t.a, t.i, t.k, t.c, 1, t.d, t.x, t.ik
        FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BOOLEAN[],
                    $6::BYTEA[], $7::TEXT[])
             WITH ORDINALITY AS t(a, i, k, c, d, x, ik, n)
        ORDER BY t.n
        RETURNING id, seq
     ), ix AS (
        INSERT INTO object_index (account, kind, field, value, seq, id)
        SELECT t.a, t.k, t.f, t.v, o.seq, t.i
        FROM unnest($8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[])
             AS t(a, k, f, v, i)
        JOIN o ON o.id = t.i
     ), d AS (
        INSERT INTO webhook_deliveries
            (account, event_id, endpoint_id, push, status, attempts, next_attempt_at, created_at)
        SELECT DISTINCT t.a, t.e, i.id, i.kind = $16::TEXT, 'pending', 0, $18::BIGINT, $18::BIGINT
        FROM unnest($13::TEXT[], $14::TEXT[], $15::TEXT[]) AS t(a, e, ty)
        JOIN object_index i ON i.account = t.a AND i.kind IN ($16::TEXT, $17::TEXT)
           AND i.field = 'target_event' AND i.value IN (t.ty, '*')
        RETURNING 1
     ), k AS (
        INSERT INTO idempotency (account, key, fingerprint, status, body, created)
        SELECT * FROM unnest($19::TEXT[], $20::TEXT[], $21::TEXT[], $22::INTEGER[], $23::TEXT[],
                             $24::BIGINT[])
        ON CONFLICT (account, key) DO UPDATE SET
           fingerprint = excluded.fingerprint, status = excluded.status,
           body = excluded.body, created = excluded.created
        WHERE idempotency.created < excluded.created - $25::BIGINT
        RETURNING 1
     )
     SELECT CASE WHEN (SELECT count(*) FROM k) = cardinality($20::TEXT[])
                 THEN (SELECT count(*) FROM d)
                 ELSE ('payground: ' || cardinality($20::TEXT[]) - (SELECT count(*) FROM k)
                       || ' idempotency keys are taken')::BIGINT
            END";

/// How long a request's idempotency record keeps its key: `created - idempotency_cutoff`.
fn idempotency_window(batch: &WriteBatch) -> Option<i64> {
    let record = batch.idempotency.as_ref()?;
    Some(record.created - batch.idempotency_cutoff)
}

/// Whether [`INSERT_GROUP`] can commit these batches, and if so with which
/// idempotency window (it takes one for all; 0 when no batch has a record): they
/// only create objects, none of them a webhook endpoint or listener (whose index
/// rows say where events go: the statement's deliveries would not see them, where a
/// transaction's later statement would), and their records share one window. None
/// of them writes jobs: those take statements of their own ([`JobColumns`]).
fn only_inserts(batches: &[&WriteBatch]) -> Option<i64> {
    let window = batches.iter().find_map(|b| idempotency_window(b));
    let one_window = batches
        .iter()
        .all(|batch| batch.idempotency.is_none() || idempotency_window(batch) == window);
    let only_new = batches
        .iter()
        .flat_map(|b| &b.objects)
        .all(|o| o.expected_version.is_none() && !EVENT_TARGET_KINDS.contains(&o.kind.as_str()));
    let no_jobs = batches.iter().all(|b| !b.has_jobs());
    (one_window && only_new && no_jobs).then(|| window.unwrap_or_default())
}

/// Commits a group of batches that pass [`only_inserts`] with [`INSERT_GROUP`]
/// (a group of one too: one round trip instead of a transaction's dozen).
async fn insert_group(
    pool: &Pool,
    batches: &[&WriteBatch],
    window: i64,
) -> Result<GroupOutcome, GroupError> {
    let rows = GroupRows::of(batches);
    let index = &rows.index;
    let events = EventColumns::of(batches.iter().copied());
    let [endpoint, listener] = EVENT_TARGET_KINDS;
    let now_ms = crate::clock::system_now_millis();
    let mut keys: (Vec<&str>, Vec<&str>, Vec<&str>) = Default::default();
    let mut records: (Vec<i32>, Vec<&str>, Vec<i64>) = Default::default();
    for batch in batches {
        if let Some(record) = &batch.idempotency {
            keys.0.push(&batch.account);
            keys.1.push(&record.key);
            keys.2.push(&record.fingerprint);
            records.0.push(i32::from(record.status));
            records.1.push(&record.body);
            records.2.push(record.created);
        }
    }

    let Ok(client) = pool.get().await else {
        return Ok(GroupOutcome::RolledBack);
    };
    let statement = client.prepare_cached(INSERT_GROUP).await?;
    let row = client
        .query_one(
            &statement,
            &[
                &rows.new_accounts,
                &rows.new_ids,
                &rows.new_kinds,
                &rows.new_created,
                &rows.new_deleted,
                &rows.new_data,
                &rows.new_index_keys,
                &index[0],
                &index[1],
                &index[2],
                &index[3],
                &index[4],
                &events.accounts,
                &events.ids,
                &events.types,
                &endpoint,
                &listener,
                &now_ms,
                &keys.0,
                &keys.1,
                &keys.2,
                &records.0,
                &records.1,
                &records.2,
                &window,
            ],
        )
        .await
        .map_err(|e| {
            // The server's refusal means the statement's transaction rolled back;
            // anything else (the connection went) leaves its outcome unknown.
            if e.as_db_error().is_some() {
                GroupError::BeforeCommit(e)
            } else {
                GroupError::Commit(e)
            }
        })?;
    // Committed: should the count not read, the deliverer looks anyway.
    let deliveries = row.try_get::<_, i64>(0).map_or(true, |n| n > 0);
    Ok(GroupOutcome::Committed(Committed {
        deliveries,
        scheduled: None,
    }))
}

enum GroupOutcome {
    Committed(Committed),
    /// Some batch would not have committed as it stands (a stale version, a taken
    /// id or idempotency key), or no connection could be had: nothing was written,
    /// and each batch alone then learns why.
    RolledBack,
}

enum GroupError {
    /// Nothing was committed.
    BeforeCommit(tokio_postgres::Error),
    /// The COMMIT itself failed: the outcome is unknown.
    Commit(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for GroupError {
    fn from(e: tokio_postgres::Error) -> Self {
        GroupError::BeforeCommit(e)
    }
}

/// Commits the batches in one transaction. They touch disjoint objects and
/// idempotency keys ([`split_overlapping`]), so one multi-row statement per table
/// can write them all.
async fn try_group(pool: &Pool, batches: &[&WriteBatch]) -> Result<GroupOutcome, GroupError> {
    let rows = GroupRows::of(batches);

    let Ok(mut client) = pool.get().await else {
        return Ok(GroupOutcome::RolledBack);
    };
    let tx = client.transaction().await?;
    // Prepared once per connection; after that, preparing sends nothing.
    let insert_objects = tx.prepare_cached(GROUP_INSERT_OBJECTS).await?;
    let update_objects = tx.prepare_cached(GROUP_UPDATE_OBJECTS).await?;
    let delete_index = tx.prepare_cached(DELETE_INDEX).await?;
    let insert_index = tx.prepare_cached(GROUP_INSERT_INDEX).await?;
    let insert_deliveries = tx.prepare_cached(INSERT_DELIVERIES).await?;
    let events = EventColumns::of(batches.iter().copied());
    let upsert_idempotency = tx.prepare_cached(UPSERT_IDEMPOTENCY).await?;

    let update_ids: Vec<&str> = rows.updates.iter().map(|(_, o)| o.id.as_str()).collect();
    let update_accounts: Vec<&str> = rows.updates.iter().map(|(a, _)| *a).collect();
    let update_versions: Vec<i64> = rows
        .updates
        .iter()
        .map(|(_, o)| o.expected_version.unwrap_or_default())
        .collect();
    let update_deleted: Vec<bool> = rows.updates.iter().map(|(_, o)| o.deleted).collect();
    let update_data: Vec<Vec<u8>> = rows
        .updates
        .iter()
        .map(|(_, o)| object_data::pack(&o.data))
        .collect();
    let update_index_keys: Vec<String> = rows.updates.iter().map(|(_, o)| o.index_keys()).collect();
    // Index rows name their object by id; the statement finds its seq.
    let index = &rows.index;
    let statuses: Vec<i32> = batches
        .iter()
        .map(|b| b.idempotency.as_ref().map_or(0, |r| i32::from(r.status)))
        .collect();

    // Every statement is sent at once (tokio-postgres pipelines requests in the
    // order their futures are first polled), so a group costs three round trips:
    // BEGIN, this, COMMIT. Whether each batch stands is checked on the results
    // before committing; any failure rolls the whole group back.
    let inserted = async {
        if rows.new_ids.is_empty() {
            return Ok(0);
        }
        tx.query(
            &insert_objects,
            &[
                &rows.new_accounts,
                &rows.new_ids,
                &rows.new_kinds,
                &rows.new_created,
                &rows.new_deleted,
                &rows.new_data,
                &rows.new_index_keys,
            ],
        )
        .await
        .map(|r| r.len())
    };
    let updated = async {
        if update_ids.is_empty() {
            return Ok(0);
        }
        tx.query(
            &update_objects,
            &[
                &update_ids,
                &update_accounts,
                &update_versions,
                &update_deleted,
                &update_data,
                &update_index_keys,
            ],
        )
        .await
        .map(|r| r.len())
    };
    let old_index_deleted = async {
        if update_ids.is_empty() {
            return Ok(0);
        }
        tx.execute(&delete_index, &[&update_ids]).await
    };
    let index_written = async {
        if index[0].is_empty() {
            return Ok(0);
        }
        tx.execute(
            &insert_index,
            &[&index[0], &index[1], &index[2], &index[3], &index[4]],
        )
        .await
    };
    let jobs = JobColumns::of(batches.iter().copied());
    let jobs_written = async {
        if jobs.is_empty() {
            return Ok(JobsWritten::default());
        }
        jobs.write(&tx).await
    };
    let deliveries = events.insert(&tx, &insert_deliveries);
    // Idempotency records are few (only requests that carry a key) and each has
    // its own replacement cutoff: one upsert each.
    let upserts =
        futures::future::join_all(batches.iter().zip(&statuses).filter_map(|(batch, status)| {
            let record = batch.idempotency.as_ref()?;
            let (tx, stmt) = (&tx, &upsert_idempotency);
            Some(async move {
                tx.execute(
                    stmt,
                    &[
                        &batch.account,
                        &record.key,
                        &record.fingerprint,
                        status,
                        &record.body,
                        &record.created,
                        &batch.idempotency_cutoff,
                    ],
                )
                .await
            })
        }));
    // The old index rows are found through the keys the rows hold before the update.
    let (old_index_deleted, inserted, updated, index_written, jobs_written, deliveries, upserts) = futures::join!(
        old_index_deleted,
        inserted,
        updated,
        index_written,
        jobs_written,
        deliveries,
        upserts
    );
    let (inserted, updated) = (inserted?, updated?);
    old_index_deleted?;
    index_written?;
    let jobs_written = jobs_written?;
    let deliveries = deliveries?;
    let mut keys_written = true;
    for written in upserts {
        keys_written &= written? == 1;
    }
    // A job whose lease was lost is the batch's failure, as a stale version is.
    let leases_held = jobs_written.finished == jobs.finishes() as u64;
    if inserted != rows.new_ids.len()
        || updated != update_ids.len()
        || !keys_written
        || !leases_held
    {
        tx.rollback().await?;
        return Ok(GroupOutcome::RolledBack);
    }
    tx.commit().await.map_err(GroupError::Commit)?;
    Ok(GroupOutcome::Committed(Committed {
        deliveries: deliveries > 0,
        scheduled: jobs_written.earliest,
    }))
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>> {
        self.query_opt("reading meta", sql::META_GET.text(DIALECT), &[&key], |r| {
            r.try_get(0)
        })
        .await
    }

    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()> {
        self.execute("writing meta", sql::META_SET.text(DIALECT), &[&key, &value])
            .await
            .map(|_| ())
    }

    async fn create_account(&self, account: &Account) -> StoreResult<()> {
        self.execute(
            "creating an account",
            sql::CREATE_ACCOUNT.text(DIALECT),
            &[
                &account.id,
                &account.secret_key,
                &account.publishable_key,
                &account.clock_offset,
                &account.created,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn account(&self, id: &str) -> StoreResult<Option<Account>> {
        self.query_opt(
            "reading an account",
            sql::ACCOUNT.text(DIALECT),
            &[&id],
            sql::account,
        )
        .await
    }

    async fn account_by_key(&self, key: &str) -> StoreResult<Option<Account>> {
        self.query_opt(
            "reading an account by key",
            sql::ACCOUNT_BY_KEY.text(DIALECT),
            &[&key],
            sql::account,
        )
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.query(
            "listing accounts",
            sql::ACCOUNTS.text(DIALECT),
            &[],
            sql::account,
        )
        .await
    }

    async fn set_clock_offset(&self, account: &str, offset: i64) -> StoreResult<()> {
        let fail = |e| pg_err("moving an account clock", e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(fail)?;
        // The account's row stays locked until the commit: a batch scheduling one
        // of its jobs meanwhile waits (it reads the row FOR SHARE) and then reads
        // the moved clock.
        let moved = tx
            .execute(
                "UPDATE accounts SET clock_offset = GREATEST(clock_offset, $2) WHERE id = $1",
                &[&account, &offset],
            )
            .await
            .map_err(fail)?;
        if moved > 0 {
            // A statement of its own, so it sees the jobs of batches that held the
            // account's row until a moment ago. The account's jobs on its clock
            // that no one holds run by the moved clock: one whose due time it
            // passed is runnable now.
            tx.execute(
                "UPDATE scheduled_jobs SET runnable_at = LEAST(runnable_at,
                    (due_at - (SELECT clock_offset FROM accounts WHERE id = $1)) * 1000)
                 WHERE account = $1 AND clock IS NULL AND lease_owner IS NULL",
                &[&account],
            )
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    async fn get(&self, account: &str, id: &str) -> StoreResult<Option<StoredObject>> {
        self.query_opt(
            "reading an object",
            sql::OBJECT.text(DIALECT),
            &[&id, &account],
            sql::object,
        )
        .await
    }

    async fn list(&self, account: &str, query: &ListQuery) -> StoreResult<Vec<StoredObject>> {
        let (text, args) = sql::list(DIALECT, account, query, |b, at, field, value| {
            let kind = b.bind(query.kind.as_str());
            let (field, value) = (b.bind(field), b.bind(value));
            b.push(&format!(
                "object_index i JOIN objects o
                   ON o.account = i.account AND o.kind = i.kind AND o.seq = i.seq
                 WHERE i.account = {at} AND i.kind = {kind} AND i.field = {field} AND i.value = {value}"
            ));
            "i.seq"
        });
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(Arg::as_postgres).collect();
        self.query("listing objects", &text, &params, sql::object)
            .await
    }

    async fn idempotency_get(
        &self,
        account: &str,
        key: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        self.query_opt(
            "reading an idempotency record",
            sql::IDEMPOTENCY_RECORD.text(DIALECT),
            &[&account, &key],
            sql::idempotency_record,
        )
        .await
    }

    async fn commit(&self, batch: WriteBatch) -> Result<Committed, CommitError> {
        if batch.is_empty() {
            return Ok(Committed::default());
        }
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.commits
            .send(PendingCommit { batch, reply })
            .map_err(|_| StoreError::Unavailable("the group committer has stopped".into()))?;
        outcome
            .await
            .map_err(|_| StoreError::Unavailable("the group committer has stopped".into()))?
    }

    async fn purge_idempotency(&self, account: &str, cutoff: i64) -> StoreResult<u64> {
        self.execute(
            "purging idempotency records",
            sql::PURGE_IDEMPOTENCY.text(DIALECT),
            &[&account, &cutoff],
        )
        .await
    }

    async fn list_where(
        &self,
        account: &str,
        query: &ListQuery,
        conditions: &[IndexCondition],
    ) -> StoreResult<Vec<StoredObject>> {
        let (text, args) = sql::list_where(DIALECT, account, query, conditions);
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(Arg::as_postgres).collect();
        self.query("listing objects by index", &text, &params, sql::object)
            .await
    }

    async fn claim_deliveries(&self, claim: &DeliveryClaim) -> StoreResult<Vec<Delivery>> {
        let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
        let lease_until = claim.now_ms + claim.lease_ms;
        let returning = sql::DELIVERY_COLUMNS
            .split(", ")
            .map(|c| format!("d.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&claim.owner, &lease_until, &claim.now_ms, &limit];
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let shares = claim.shares.clone().unwrap_or(EndpointShares {
            default: usize::MAX,
            endpoints: Vec::new(),
        });
        let share_ids: Vec<&str> = shares.endpoints.iter().map(|(id, _)| id.as_str()).collect();
        let share_sizes: Vec<i64> = shares.endpoints.iter().map(|(_, n)| to_i64(*n)).collect();
        let default_share = to_i64(shares.default);
        let sql = match &claim.listener {
            Some(listener) => {
                params.push(listener);
                format!(
                    "UPDATE webhook_deliveries d SET lease_owner = $1, lease_expires_at = $2
                     FROM (SELECT event_id, endpoint_id FROM webhook_deliveries
                           WHERE push = FALSE AND endpoint_id = $5 AND status = 'pending'
                             AND next_attempt_at <= $3
                             AND (lease_expires_at IS NULL OR lease_expires_at <= $3)
                           ORDER BY next_attempt_at, event_id LIMIT $4
                           FOR UPDATE SKIP LOCKED) c
                     WHERE d.event_id = c.event_id AND d.endpoint_id = c.endpoint_id
                     RETURNING {returning}"
                )
            }
            // The endpoints with pending rows, one index probe each (a loose scan
            // of the pending index); per endpoint its oldest due rows with a free
            // lease, up to its share, locked with SKIP LOCKED inside the endpoint's
            // own subquery: another node's concurrent claim skips them and takes
            // the endpoint's next rows. The oldest of all that were picked are
            // leased; the rest are only unlocked again.
            None => {
                params.push(&share_ids);
                params.push(&share_sizes);
                params.push(&default_share);
                format!(
                    "WITH RECURSIVE endpoints(endpoint_id) AS (
                        (SELECT endpoint_id FROM webhook_deliveries WHERE status = 'pending'
                         ORDER BY endpoint_id LIMIT 1)
                        UNION ALL
                        SELECT (SELECT w.endpoint_id FROM webhook_deliveries w
                                WHERE w.status = 'pending' AND w.endpoint_id > e.endpoint_id
                                ORDER BY w.endpoint_id LIMIT 1)
                        FROM endpoints e WHERE e.endpoint_id IS NOT NULL
                     ), picked AS (
                        SELECT p.event_id, p.endpoint_id, p.next_attempt_at
                        FROM endpoints e
                        LEFT JOIN unnest($5::TEXT[], $6::BIGINT[]) AS s(endpoint_id, n)
                            ON s.endpoint_id = e.endpoint_id
                        CROSS JOIN LATERAL (
                            SELECT w.event_id, w.endpoint_id, w.next_attempt_at
                            FROM webhook_deliveries w
                            WHERE w.endpoint_id = e.endpoint_id AND w.push = TRUE
                              AND w.status = 'pending' AND w.next_attempt_at <= $3
                              AND (w.lease_expires_at IS NULL OR w.lease_expires_at <= $3)
                            ORDER BY w.next_attempt_at, w.event_id
                            LIMIT LEAST(COALESCE(s.n, $7), $4)
                            FOR UPDATE SKIP LOCKED
                        ) p
                        WHERE e.endpoint_id IS NOT NULL
                     ), chosen AS (
                        SELECT event_id, endpoint_id FROM picked
                        ORDER BY next_attempt_at, event_id LIMIT $4
                     )
                     UPDATE webhook_deliveries d SET lease_owner = $1, lease_expires_at = $2
                     FROM chosen c
                     WHERE d.event_id = c.event_id AND d.endpoint_id = c.endpoint_id
                     RETURNING {returning}"
                )
            }
        };
        let mut rows = self
            .query("claiming deliveries", &sql, &params, sql::delivery)
            .await?;
        rows.sort_by(|a, b| {
            (a.next_attempt_at, &a.event_id).cmp(&(b.next_attempt_at, &b.event_id))
        });
        Ok(rows)
    }

    async fn finish_deliveries(&self, results: Vec<DeliveryResult>) -> StoreResult<Vec<bool>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let fail = |e| pg_err("finishing deliveries", e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(fail)?;
        // One statement per table for all the results: the attempts (recorded even
        // when a lease was lost: they happened), then the deliveries still leased to
        // their owner, in one order so concurrent finishers lock alike.
        let attempts: Vec<(&DeliveryResult, &AttemptRecord)> = results
            .iter()
            .filter_map(|r| r.attempt.as_ref().map(|a| (r, a)))
            .collect();
        if !attempts.is_empty() {
            let ids: Vec<&str> = attempts.iter().map(|(_, a)| a.id.as_str()).collect();
            let accounts: Vec<&str> = attempts.iter().map(|(r, _)| r.account.as_str()).collect();
            let events: Vec<&str> = attempts.iter().map(|(r, _)| r.event_id.as_str()).collect();
            let endpoints: Vec<&str> = attempts
                .iter()
                .map(|(r, _)| r.endpoint_id.as_str())
                .collect();
            let numbers: Vec<i64> = attempts.iter().map(|(_, a)| a.attempt).collect();
            let at: Vec<i64> = attempts.iter().map(|(_, a)| a.attempted_at).collect();
            let codes: Vec<Option<i32>> = attempts.iter().map(|(_, a)| a.status_code).collect();
            let latency: Vec<i64> = attempts.iter().map(|(_, a)| a.latency_ms).collect();
            let bodies: Vec<Option<&str>> = attempts
                .iter()
                .map(|(_, a)| a.response_body.as_deref())
                .collect();
            let errors: Vec<Option<&str>> =
                attempts.iter().map(|(_, a)| a.error.as_deref()).collect();
            let succeeded: Vec<bool> = attempts.iter().map(|(_, a)| a.succeeded).collect();
            tx.execute(
                "INSERT INTO webhook_attempts (id, account, event_id, endpoint_id, attempt,
                    attempted_at, status_code, latency_ms, response_body, error, succeeded)
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[],
                    $5::BIGINT[], $6::BIGINT[], $7::INT[], $8::BIGINT[], $9::TEXT[], $10::TEXT[],
                    $11::BOOLEAN[])
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &ids, &accounts, &events, &endpoints, &numbers, &at, &codes, &latency, &bodies,
                    &errors, &succeeded,
                ],
            )
            .await
            .map_err(fail)?;
        }
        let mut order: Vec<usize> = (0..results.len()).collect();
        order.sort_by_key(|&i| (&results[i].event_id, &results[i].endpoint_id));
        let columns: Vec<_> = order.iter().map(|&i| results[i].columns()).collect();
        let pick = |f: fn(&DeliveryResult) -> &String| -> Vec<&str> {
            order.iter().map(|&i| f(&results[i]).as_str()).collect()
        };
        let statuses: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let next_at: Vec<Option<i64>> = columns.iter().map(|c| c.1).collect();
        let succeeded_at: Vec<Option<i64>> = columns.iter().map(|c| c.2).collect();
        let attempted: Vec<i64> = order
            .iter()
            .map(|&i| i64::from(results[i].attempt.is_some()))
            .collect();
        let settled: std::collections::HashSet<(String, String)> = tx
            .query(
                "UPDATE webhook_deliveries d SET status = u.status, attempts = d.attempts + u.tried,
                    next_attempt_at = COALESCE(u.next_at, d.next_attempt_at),
                    succeeded_at = COALESCE(d.succeeded_at, u.succeeded_at),
                    lease_owner = NULL, lease_expires_at = NULL
                 FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::TEXT[],
                             $6::TEXT[], $7::TEXT[], $8::TEXT[])
                      AS u(status, tried, next_at, succeeded_at, event_id, endpoint_id, account, owner)
                 WHERE d.event_id = u.event_id AND d.endpoint_id = u.endpoint_id
                   AND d.account = u.account AND d.lease_owner = u.owner
                 RETURNING d.event_id, d.endpoint_id",
                &[
                    &statuses,
                    &attempted,
                    &next_at,
                    &succeeded_at,
                    &pick(|r| &r.event_id),
                    &pick(|r| &r.endpoint_id),
                    &pick(|r| &r.account),
                    &pick(|r| &r.lease_owner),
                ],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(results
            .iter()
            .map(|r| settled.contains(&(r.event_id.clone(), r.endpoint_id.clone())))
            .collect())
    }

    async fn release_deliveries(&self, owner: &str) -> StoreResult<u64> {
        self.execute(
            "releasing delivery leases",
            sql::RELEASE_DELIVERIES.text(DIALECT),
            &[&owner],
        )
        .await
    }

    async fn redeliver(
        &self,
        account: &str,
        event_id: &str,
        endpoint_id: &str,
        push: bool,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.execute(
            "scheduling a redelivery",
            sql::REDELIVER.text(DIALECT),
            &[&account, &event_id, &endpoint_id, &push, &now_ms],
        )
        .await
        .map(|_| ())
    }

    async fn delivery(
        &self,
        account: &str,
        event_id: &str,
        endpoint_id: &str,
    ) -> StoreResult<Option<Delivery>> {
        self.query_opt(
            "reading a delivery",
            sql::DELIVERY.text(DIALECT),
            &[&event_id, &endpoint_id, &account],
            sql::delivery,
        )
        .await
    }

    async fn pending_webhooks(&self, account: &str, event_ids: &[String]) -> StoreResult<Vec<i64>> {
        self.query(
            "counting undelivered webhooks",
            "SELECT (SELECT COUNT(*) FROM webhook_deliveries d
                     WHERE d.event_id = t.id AND d.account = $1 AND d.push
                       AND d.succeeded_at IS NULL)::BIGINT
             FROM unnest($2::TEXT[]) WITH ORDINALITY AS t(id, n) ORDER BY t.n",
            &[&account, &event_ids],
            |r| r.try_get::<_, i64>(0),
        )
        .await
    }

    async fn list_attempts(
        &self,
        account: &str,
        query: &AttemptQuery,
    ) -> StoreResult<Vec<AttemptRecord>> {
        let (text, args) = sql::attempts(DIALECT, account, query);
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(Arg::as_postgres).collect();
        self.query("listing attempts", &text, &params, sql::attempt)
            .await
    }

    async fn purge_events(&self, account: &str, cutoff: i64) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let fail = |e| pg_err("purging events", e);
        let tx = client.transaction().await.map_err(fail)?;
        // The doomed events once; every table that refers to them goes with them.
        let ids: Vec<String> = tx
            .query(
                sql::OLDEST_EVENTS.text(DIALECT),
                &[&account, &cutoff, &(super::sqlite::PURGE_BATCH as i64)],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        if !ids.is_empty() {
            for table in ["webhook_attempts", "webhook_deliveries"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE account = $1 AND event_id = ANY($2)"),
                    &[&account, &ids],
                )
                .await
                .map_err(fail)?;
            }
            tx.execute(DELETE_INDEX, &[&ids]).await.map_err(fail)?;
            tx.execute(
                "DELETE FROM objects WHERE account = $1 AND id = ANY($2)",
                &[&account, &ids],
            )
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(ids.len() as u64)
    }

    async fn claim_jobs(&self, claim: &JobClaim) -> StoreResult<Vec<ScheduledJob>> {
        let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
        let lease_until = claim.now_ms + claim.lease_ms;
        // Rows another claim has locked are skipped, not waited for; the lease's
        // end becomes the job's runnable time, so a held job leaves the range
        // claims scan until the lease runs out.
        self.query(
            "claiming jobs",
            &format!(
                "UPDATE scheduled_jobs j SET lease_owner = $1, lease_expires_at = $2,
                    runnable_at = $2, attempts = j.attempts + 1
                 FROM (SELECT account, kind, object FROM scheduled_jobs
                       WHERE runnable_at <= $3 ORDER BY runnable_at LIMIT $4
                       FOR UPDATE SKIP LOCKED) c
                 WHERE j.account = c.account AND j.kind = c.kind AND j.object = c.object
                 RETURNING {}",
                sql::JOB_COLUMNS_OF_J
            ),
            &[&claim.owner, &lease_until, &claim.now_ms, &limit],
            sql::scheduled_job,
        )
        .await
    }

    async fn retry_job(
        &self,
        lease: &JobLease,
        retry_at_ms: i64,
        error: &str,
    ) -> StoreResult<bool> {
        let changed = self
            .execute(
                "releasing a job for a retry",
                sql::RETRY_JOB.text(DIALECT),
                &[
                    &lease.account,
                    &lease.job.kind,
                    &lease.job.object,
                    &lease.owner,
                    &retry_at_ms,
                    &error,
                ],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn next_job_at(&self) -> StoreResult<Option<i64>> {
        let next = self
            .query_opt(
                "reading the next job's time",
                sql::NEXT_JOB_AT.text(DIALECT),
                &[],
                |r| r.try_get::<_, Option<i64>>(0),
            )
            .await?;
        Ok(next.flatten())
    }

    async fn job(&self, account: &str, job: &JobId) -> StoreResult<Option<ScheduledJob>> {
        self.query_opt(
            "reading a job",
            sql::JOB.text(DIALECT),
            &[&account, &job.kind, &job.object],
            sql::scheduled_job,
        )
        .await
    }
}
