//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through one writer thread that practises group commit: it takes every
//! batch waiting in its queue, applies them (redoing the group with a savepoint per
//! batch when one fails, so a conflicting batch fails alone), commits them all in
//! one transaction and only then answers each caller. Reads use a small pool of
//! read-only connections and never wait for the writer.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{oneshot, Semaphore};

use super::sql::{self, Dialect};
use super::*;

const DIALECT: Dialect = Dialect::Sqlite;

/// Batches applied per transaction at most; bounds the latency of the first in a group.
const MAX_GROUP: usize = 512;
const READERS: usize = 4;
/// List pages of up to this many rows are read on the calling thread, as point
/// reads are: such a page reads in tens of microseconds from cached pages, less
/// than the two thread wake-ups of the blocking pool cost (a third of a page's
/// CPU at 10,000 pages per second). Longer pages go to the blocking pool, so no
/// request holds a runtime thread for long.
const INLINE_PAGE_ROWS: usize = 20;

/// The schema's steps (`migrations/sqlite/`); `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = super::migrations::SQLITE;

/// Separates the parts of an index row's key; below every printable character, so
/// keys sort by account, then kind, then field, then value.
const KEY_SEPARATOR: char = '\u{1f}';

/// The key of the index rows naming `value` under `field` for `kind` objects.
/// Migration 6 and the event purge build the same text in SQL (`char(31)`).
fn index_key(account: &str, kind: &str, field: &str, value: &str) -> String {
    let mut key = String::with_capacity(account.len() + kind.len() + field.len() + value.len() + 3);
    for (i, part) in [account, kind, field, value].into_iter().enumerate() {
        if i > 0 {
            key.push(KEY_SEPARATOR);
        }
        key.push_str(part);
    }
    key
}

/// The bounds `[low, high)` of every key under `field` for `kind` objects, whatever
/// the value.
fn index_key_range(account: &str, kind: &str, field: &str) -> (String, String) {
    let low = index_key(account, kind, field, "");
    let mut high = low.clone();
    high.pop();
    high.push(char::from(KEY_SEPARATOR as u8 + 1));
    (low, high)
}

const ROLLBACK_FAILED: &str = "a batch could not be rolled back; its group was abandoned";

type Reply = oneshot::Sender<Result<Committed, CommitError>>;
type AdminWork = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;
type CustomWork = Box<dyn FnOnce(&Connection) -> Result<(), CommitError> + Send>;

/// What the writer thread is sent. Nearly every message is a batch, so the batch
/// travels unboxed: an allocation per batch would buy nothing but a smaller
/// `RestartWal`.
#[allow(clippy::large_enum_variant)]
enum Job {
    /// A batch and what its objects store ([`prepare`]).
    Batch(WriteBatch, Vec<PreparedObject>, Reply),
    Admin(AdminWork, Reply),
    /// Work that may report a conflict (webhook delivery bookkeeping).
    Custom(CustomWork, Reply),
    /// Sent by the checkpoint thread once it has nearly caught up with a long WAL:
    /// the writer checkpoints the last frames itself, between two groups, so its
    /// next transaction starts the WAL again from the beginning.
    RestartWal,
}

pub struct SqliteStore {
    checkpoint_stop: Arc<std::sync::atomic::AtomicBool>,
    jobs: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_slots: Arc<Semaphore>,
}

/// How hard a commit waits for the disk (`sqlite:PATH?synchronous=full|normal`).
///
/// `Normal` (the default): in WAL mode a commit is written to the WAL but not
/// fsynced; a crash of payground (SIGKILL, panic) loses nothing acknowledged, a power
/// loss or kernel crash may lose the last commits. `Full` fsyncs every group commit,
/// so acknowledged writes survive power loss too, at the price of one fsync per group
/// (on this kind of machine it caps a 32-connection load near 2,700 payments/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// `PATH?synchronous=full` → (PATH, Full).
pub fn parse_location(location: &str) -> anyhow::Result<(String, Synchronous)> {
    let (path, query) = location.split_once('?').unwrap_or((location, ""));
    let mut sync = Synchronous::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", v)) if v.eq_ignore_ascii_case("full") => sync = Synchronous::Full,
            Some(("synchronous", v)) if v.eq_ignore_ascii_case("normal") => {
                sync = Synchronous::Normal
            }
            _ => anyhow::bail!(
                "unknown SQLite option {pair:?}: the only one is synchronous=full|normal"
            ),
        }
    }
    Ok((path.to_string(), sync))
}

fn configure(conn: &Connection, sync: Synchronous) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;",
        sync.pragma()
    ))?;
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
        Self::open_with(path, Synchronous::default())
    }

    pub fn open_with(path: &str, sync: Synchronous) -> anyhow::Result<Self> {
        Self::open_with_limits(path, sync, WAL_LIMITS)
    }

    fn open_with_limits(path: &str, sync: Synchronous, limits: WalLimits) -> anyhow::Result<Self> {
        if let Some(dir) = Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        super::wal_vfs::register().map_err(anyhow::Error::msg)?;
        let open = |flags: OpenFlags| {
            Connection::open_with_flags_and_vfs(path, flags, super::wal_vfs::VFS_NAME)
        };
        let read_write = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut writer = open(read_write)?;
        configure(&writer, sync)?;
        migrate(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = open(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
            configure(&conn, sync)?;
            readers.push(conn);
        }
        // Checkpoints run on a connection of their own so the writer rarely pays for
        // copying the WAL back into the database (a sixth of its time when it did).
        // But a background PASSIVE checkpoint never catches up with a writer that
        // keeps appending, and the WAL is reset only by a write transaction that
        // begins when every frame has been copied back: left alone, the WAL grows
        // without bound under steady load (measured: 32 GB after 1.1 million
        // payments). So once the WAL is long and the background pass has left only
        // a few frames behind, the checkpoint thread asks the writer to copy those
        // itself between two groups (`Job::RestartWal`): a pause of a few
        // milliseconds instead of the writer's own checkpoint of everything the
        // background had not yet reached (a 50-110 ms stall every second or two at
        // 5,000 payments/s). The writer's automatic checkpoint stays, far above that
        // point, as a backstop should the thread fall behind.
        writer.execute_batch(&format!("PRAGMA wal_autocheckpoint = {};", limits.backstop))?;
        let checkpointer = open(read_write)?;
        configure(&checkpointer, sync)?;
        let database = std::fs::File::open(path)
            .map_err(|e| tracing::warn!(error = %e, "opening the database file to sync it"))
            .ok();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let (tx, rx) = mpsc::channel();
        let restart = tx.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, database, limits, stopping, restart))?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx))?;
        Ok(SqliteStore {
            checkpoint_stop: stop,
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

    /// A short read (one row by unique key, a small list page) run on the calling
    /// thread when a reader connection is free: such a read takes microseconds, less
    /// than handing it to the blocking pool and waking the task again. Falls back to
    /// [`Self::read`].
    async fn read_point<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        if let Ok(_permit) = self.reader_slots.try_acquire() {
            let conn = self.readers.lock().pop();
            if let Some(conn) = conn {
                let result = f(&conn);
                self.readers.lock().push(conn);
                return result.map_err(StoreError::from);
            }
        }
        self.read(f).await
    }

    async fn submit(&self, job: impl FnOnce(Reply) -> Job) -> Result<Committed, CommitError> {
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
            Ok(_) => Ok(()),
            Err(CommitError::Store(e)) => Err(e),
            Err(other) => Err(StoreError::Unavailable(other.to_string())),
        }
    }

    /// Runs `f` on the writer (in its own savepoint of the next group) and returns
    /// its value once the group has committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, CommitError> {
        let slot = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.submit(|reply| {
            Job::Custom(
                Box::new(move |c| {
                    let value = f(c)?;
                    *out.lock() = Some(value);
                    Ok(())
                }),
                reply,
            )
        })
        .await?;
        let value = slot.lock().take();
        value.ok_or_else(|| StoreError::Unavailable("the writer returned no result".into()).into())
    }

    /// [`Self::write`] for work that cannot conflict.
    async fn write_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        match self
            .write(move |c| f(c).map_err(|e| CommitError::Store(e.into())))
            .await
        {
            Ok(v) => Ok(v),
            Err(CommitError::Store(e)) => Err(e),
            Err(other) => Err(StoreError::Unavailable(other.to_string())),
        }
    }
}

/// Events examined per purge call; the purge job calls again while it gets a full batch.
pub const PURGE_BATCH: usize = 2_000;

const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// When the WAL is restarted, in frames of one page.
#[derive(Debug, Clone, Copy)]
struct WalLimits {
    /// WAL length past which the writer is asked to restart it.
    restart: i64,
    /// The writer's own checkpoint, should the background thread fall behind.
    backstop: i64,
}

const WAL_LIMITS: WalLimits = WalLimits {
    restart: 16_384,
    backstop: 65_536,
};
/// A background pass at least this long left that much time's worth of new frames
/// behind it; it runs again before the writer is asked to copy the rest.
const CATCH_UP_PASS: std::time::Duration = std::time::Duration::from_millis(3);
/// Background passes in a row while closing in on a long WAL's end.
const MAX_CATCH_UP_PASSES: usize = 8;

/// Copies committed WAL frames into the database in the background (PASSIVE: it
/// never blocks the writer or readers), and has the writer restart the WAL once
/// it is long (see [`SqliteStore::open_with`]). `database` is the database file,
/// opened again only to be synced.
fn checkpoint_loop(
    conn: Connection,
    database: Option<std::fs::File>,
    limits: WalLimits,
    stop: Arc<std::sync::atomic::AtomicBool>,
    writer: mpsc::Sender<Job>,
) {
    let pass = || {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
    };
    // The WAL's length when a restart was last asked for: not asked again until the
    // WAL got shorter (it was restarted) or another stretch longer (the restart
    // could not happen: a reader was still on the WAL).
    let mut asked_at: Option<i64> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        let mut passes = 0;
        loop {
            passes += 1;
            let started = std::time::Instant::now();
            let (log, copied) = match pass() {
                Ok(frames) => frames,
                Err(e) => {
                    tracing::warn!(error = %e, "sqlite checkpoint failed");
                    break;
                }
            };
            if asked_at.is_some_and(|at| log < at || log > at + limits.restart) {
                asked_at = None;
            }
            if log < limits.restart || asked_at.is_some() {
                break;
            }
            if passes == 1 {
                // A pass that stops short of the WAL's end (the writer appended
                // meanwhile) does not sync the database file; the checkpoint that
                // reaches the end does, and would sync everything copied since the
                // last one: 100 MB and 20-30 ms at 5,000 payments/s, on the writer.
                // Synced here first, the writer's sync finds only its own pages.
                if let Some(Err(e)) = database.as_ref().map(std::fs::File::sync_data) {
                    tracing::warn!(error = %e, "syncing the database file failed");
                }
                continue;
            }
            // What the writer will copy is what was written during this pass (and
            // its fsync): each pass copies what the last one left, which took less
            // time to write than the pass before took to copy, so a few close in.
            let took = started.elapsed();
            if (took > CATCH_UP_PASS || log > copied) && passes < MAX_CATCH_UP_PASSES {
                continue;
            }
            tracing::debug!(
                log,
                passes,
                took_ms = took.as_secs_f64() * 1e3,
                "asking the writer to restart the WAL"
            );
            if writer.send(Job::RestartWal).is_err() {
                return;
            }
            asked_at = Some(log);
            break;
        }
    }
    // A last full checkpoint leaves a clean database file behind on shutdown.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpoint_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
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
        let mut batches = Vec::with_capacity(group.len());
        let mut closures = Vec::new();
        let mut restart_wal = false;
        for job in group {
            match job {
                Job::Batch(batch, keys, reply) => batches.push((batch, keys, reply)),
                Job::Admin(work, reply) => closures.push((
                    Box::new(move |c: &Connection| {
                        work(c).map_err(|e| CommitError::Store(e.into()))
                    }) as CustomWork,
                    reply,
                )),
                Job::Custom(work, reply) => closures.push((work, reply)),
                Job::RestartWal => restart_wal = true,
            }
        }
        if !batches.is_empty() || !closures.is_empty() {
            run_group(&mut conn, batches, closures);
        }
        if restart_wal {
            // Copies the frames the background pass left; the next group's
            // transaction then writes from the WAL's beginning.
            let started = std::time::Instant::now();
            match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(2)) {
                Ok(frames) => tracing::debug!(
                    frames,
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "writer checkpointed the WAL's last frames"
                ),
                Err(e) => tracing::warn!(error = %e, "the writer's checkpoint failed"),
            }
        }
    }
    tracing::info!("sqlite writer stopped");
}

type GroupBatch = (WriteBatch, Vec<PreparedObject>, Reply);

/// Commits one group: every job's writes in one transaction, each job's outcome
/// its own.
///
/// A job that fails must leave no write behind while the others' stay, which a
/// savepoint per job gives; but a savepoint copies every page it touches to the
/// sub-journal first, and with the SAVEPOINT and RELEASE statements that was 12% of
/// the instructions of a confirmed payment. Batches fail rarely (a lost version
/// race, an idempotency key taken meanwhile, the disk), so they are applied first
/// without savepoints; only when one fails is the transaction rolled back and the
/// group's batches applied again, each in a savepoint, which leaves the same
/// outcome as if they had been so from the start. Closures (delivery bookkeeping,
/// admin work) run once only, so they always run in savepoints, after the batches.
fn run_group(conn: &mut Connection, batches: Vec<GroupBatch>, closures: Vec<(CustomWork, Reply)>) {
    let fail_all = |batches: Vec<GroupBatch>, closures: Vec<(CustomWork, Reply)>, msg: String| {
        let replies = batches
            .into_iter()
            .map(|(_, _, r)| r)
            .chain(closures.into_iter().map(|(_, r)| r));
        for reply in replies {
            let _ = reply.send(Err(StoreError::Unavailable(msg.clone()).into()));
        }
    };
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return fail_all(batches, closures, e.to_string()),
    };
    let mut targets = EventTargets::default();
    let mut committed = Committed::default();
    let mut clean = true;
    for (batch, keys, _) in &batches {
        match apply_batch(&tx, batch, keys, &mut targets) {
            Ok(one) => committed = committed.and(one),
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    let mut outcomes: Vec<(Reply, Result<Committed, CommitError>)> =
        Vec::with_capacity(batches.len() + closures.len());
    let mut poisoned = false;
    let tx = if clean {
        outcomes.extend(
            batches
                .into_iter()
                .map(|(_, _, reply)| (reply, Ok(committed))),
        );
        tx
    } else {
        let tx = match tx.rollback().and_then(|()| conn.transaction()) {
            Ok(tx) => tx,
            Err(e) => return fail_all(batches, closures, e.to_string()),
        };
        let mut targets = EventTargets::default();
        for (batch, keys, reply) in batches {
            let result = apply_in_savepoint(&tx, |c| apply_batch(c, &batch, &keys, &mut targets));
            if result.is_err() {
                // What it saw may have been its own writes, now rolled back.
                targets = EventTargets::default();
            }
            poisoned |= is_poisoned(&result);
            outcomes.push((reply, result));
        }
        tx
    };
    for (work, reply) in closures {
        let result = apply_in_savepoint(&tx, work);
        poisoned |= is_poisoned(&result);
        outcomes.push((reply, result.map(|()| Committed::default())));
    }
    // A job whose savepoint could not be rolled back may have left partial writes:
    // the whole group is abandoned rather than committed with them.
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

fn is_poisoned<T>(result: &Result<T, CommitError>) -> bool {
    matches!(result, Err(CommitError::Store(StoreError::Unavailable(m))) if m == ROLLBACK_FAILED)
}

fn apply_in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, CommitError>,
) -> Result<T, CommitError> {
    // Prepared once: parsing these three statements for every batch was a visible
    // share of the writer's time.
    let run = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(drop)
    };
    if let Err(e) = run("SAVEPOINT batch") {
        return Err(CommitError::Store(e.into()));
    }
    let result = f(conn);
    if result.is_ok() {
        return match run("RELEASE batch") {
            Ok(()) => result,
            Err(e) => {
                tracing::error!(error = %e, "savepoint release failed");
                Err(CommitError::Store(StoreError::Unavailable(
                    ROLLBACK_FAILED.into(),
                )))
            }
        };
    }
    if let Err(e) = run("ROLLBACK TO batch").and_then(|_| run("RELEASE batch")) {
        tracing::error!(error = %e, "savepoint rollback failed");
        return Err(CommitError::Store(StoreError::Unavailable(
            ROLLBACK_FAILED.into(),
        )));
    }
    result
}

/// What the writer stores for an object besides its columns, made before the
/// batch reaches the single writer thread, which is the node's bottleneck.
struct PreparedObject {
    /// The object's `index_keys` text.
    index_keys: String,
    /// Its JSON as the `data` column keeps it ([`object_data::pack`]).
    data: Vec<u8>,
}

fn prepare(batch: &WriteBatch) -> Vec<PreparedObject> {
    batch
        .objects
        .iter()
        .map(|object| PreparedObject {
            index_keys: object.index_keys(),
            data: object_data::pack(&object.data),
        })
        .collect()
}

/// Applies a batch; `prepared` holds [`prepare`] the batch.
fn apply_batch(
    conn: &Connection,
    batch: &WriteBatch,
    prepared: &[PreparedObject],
    targets: &mut EventTargets,
) -> Result<Committed, CommitError> {
    let account = batch.account.as_str();
    let store_err = |e: rusqlite::Error| CommitError::Store(e.into());
    // Each statement is taken from the cache once per batch, not once per row: the
    // cache hashes the SQL text on every lookup, which cost more than some inserts.
    let mut insert_object = None;
    let mut find_version = None;
    let mut update_object = None;
    let mut delete_index = None;
    let mut insert_index = None;
    for (object, prepared) in batch.objects.iter().zip(prepared) {
        let (index_keys, data) = (&prepared.index_keys, &prepared.data);
        let new_keys = object.live_index();
        let (seq, old_keys) = match object.expected_version {
            None => {
                let stmt = cached(
                    conn,
                    &mut insert_object,
                    "INSERT INTO objects (account, id, kind, created, version, deleted, data, index_keys)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7) ON CONFLICT(id) DO NOTHING",
                )?;
                let inserted = stmt
                    .execute(params![
                        account,
                        object.id,
                        object.kind,
                        object.created,
                        object.deleted,
                        data,
                        index_keys
                    ])
                    .map_err(store_err)?;
                if inserted == 0 {
                    return Err(CommitError::Conflict(object.id.clone()));
                }
                (conn.last_insert_rowid(), Vec::new())
            }
            Some(version) => {
                let found: Option<(i64, String)> = cached(
                    conn,
                    &mut find_version,
                    "SELECT seq, index_keys FROM objects
                     WHERE id = ?1 AND account = ?2 AND version = ?3",
                )?
                .query_row(params![object.id, account, version], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(store_err)?;
                let (seq, old_keys) =
                    found.ok_or_else(|| CommitError::Conflict(object.id.clone()))?;
                cached(
                    conn,
                    &mut update_object,
                    "UPDATE objects SET version = version + 1, deleted = ?2, data = ?3,
                     index_keys = ?4 WHERE seq = ?1",
                )?
                .execute(params![seq, object.deleted, data, index_keys])
                .map_err(store_err)?;
                (seq, parse_index_keys(&old_keys))
            }
        };
        // Only the keys that changed are touched: a PaymentIntent moving from
        // `processing` to `succeeded` rewrites one index row, not all of them.
        for (field, value) in old_keys.iter().filter(|k| !new_keys.contains(k)) {
            cached(
                conn,
                &mut delete_index,
                "DELETE FROM object_keys WHERE key = ?1 AND seq = ?2",
            )?
            .execute(params![index_key(account, &object.kind, field, value), seq])
            .map_err(store_err)?;
        }
        for (field, value) in new_keys.iter().filter(|k| !old_keys.contains(k)) {
            cached(
                conn,
                &mut insert_index,
                "INSERT OR IGNORE INTO object_keys (key, seq, id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                index_key(account, &object.kind, field, value),
                seq,
                object.id
            ])
            .map_err(store_err)?;
        }
    }
    if batch
        .objects
        .iter()
        .any(|o| EVENT_TARGET_KINDS.contains(&o.kind.as_str()))
    {
        targets.forget(account);
    }
    let scheduled = if batch.has_jobs() {
        apply_jobs(conn, batch)?
    } else {
        None
    };
    let mut deliveries = 0;
    if !batch.events.is_empty() && targets.any(conn, account)? {
        let [endpoint, listener] = EVENT_TARGET_KINDS;
        let now_ms = crate::clock::system_now_millis();
        let mut insert = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO webhook_deliveries
                    (account, event_id, endpoint_id, push, status, attempts, next_attempt_at,
                     created_at)
                 SELECT DISTINCT ?1, ?2, i.id, i.key IN (?3, ?4), 'pending', 0, ?7, ?7
                 FROM object_keys i
                 WHERE i.key IN (?3, ?4, ?5, ?6)",
            )
            .map_err(store_err)?;
        let key = |kind: &str, value: &str| index_key(account, kind, TARGET_EVENTS_FIELD, value);
        for event in &batch.events {
            deliveries += insert
                .execute(params![
                    account,
                    event.id,
                    key(endpoint, &event.event_type),
                    key(endpoint, "*"),
                    key(listener, &event.event_type),
                    key(listener, "*"),
                    now_ms
                ])
                .map_err(store_err)?;
        }
    }
    if let Some(record) = &batch.idempotency {
        let written = conn
            .prepare_cached(sql::UPSERT_IDEMPOTENCY.text(DIALECT))
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
    Ok(Committed {
        deliveries: deliveries > 0,
        scheduled,
    })
}

/// Writes a batch's jobs: the one it finishes first (so its handler may schedule
/// it again), then those it removes and those it schedules. Returns the earliest
/// `runnable_at` scheduled.
fn apply_jobs(conn: &Connection, batch: &WriteBatch) -> Result<Option<i64>, CommitError> {
    let account = batch.account.as_str();
    let store_err = |e: rusqlite::Error| CommitError::Store(e.into());
    if let Some(lease) = &batch.finishes {
        let removed = conn
            .prepare_cached(
                "DELETE FROM scheduled_jobs
                 WHERE account = ?1 AND kind = ?2 AND object = ?3 AND lease_owner = ?4",
            )
            .and_then(|mut s| {
                s.execute(params![
                    lease.account,
                    lease.job.kind,
                    lease.job.object,
                    lease.owner
                ])
            })
            .map_err(store_err)?;
        if removed == 0 {
            return Err(CommitError::Conflict(lease.label()));
        }
    }
    for job in &batch.cancelled_jobs {
        conn.prepare_cached(
            "DELETE FROM scheduled_jobs WHERE account = ?1 AND kind = ?2 AND object = ?3",
        )
        .and_then(|mut s| s.execute(params![account, job.kind, job.object]))
        .map_err(store_err)?;
    }
    let mut first = None;
    if !batch.jobs.is_empty() {
        let now_ms = crate::clock::system_now_millis();
        // A job on the account's clock runs when the real time reaches its due
        // time less the account's offset (none for an account not stored).
        let mut schedule = conn
            .prepare_cached(
                "INSERT INTO scheduled_jobs
                    (account, kind, object, due_at, clock, runnable_at, attempts, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?5 IS NULL THEN
                    (?4 - COALESCE((SELECT clock_offset FROM accounts WHERE id = ?1), 0)) * 1000
                    END, 0, ?6)
                 ON CONFLICT (account, kind, object) DO UPDATE SET
                    due_at = excluded.due_at, clock = excluded.clock,
                    runnable_at = excluded.runnable_at, lease_owner = NULL,
                    lease_expires_at = NULL, attempts = 0, last_error = NULL
                 RETURNING runnable_at",
            )
            .map_err(store_err)?;
        for job in &batch.jobs {
            let runnable: Option<i64> = schedule
                .query_row(
                    params![
                        account,
                        job.job.kind,
                        job.job.object,
                        job.due_at,
                        job.clock,
                        now_ms
                    ],
                    |r| r.get(0),
                )
                .map_err(store_err)?;
            first = earliest(first, runnable);
        }
    }
    Ok(first)
}

/// The statement in `slot`, taken from the connection's cache the first time.
fn cached<'c, 's>(
    conn: &'c Connection,
    slot: &'s mut Option<rusqlite::CachedStatement<'c>>,
    sql: &str,
) -> Result<&'s mut rusqlite::CachedStatement<'c>, CommitError> {
    let stmt = match slot.take() {
        Some(stmt) => stmt,
        None => conn
            .prepare_cached(sql)
            .map_err(|e| CommitError::Store(e.into()))?,
    };
    Ok(slot.insert(stmt))
}

/// Whether accounts have an event target that takes any event (their events may
/// need deliveries), as seen by one group's transaction. A group of payments of one
/// account asks once instead of once per event; a batch that writes an endpoint or
/// listener makes the next one ask again.
#[derive(Default)]
struct EventTargets(std::collections::HashMap<String, bool>);

impl EventTargets {
    fn any(&mut self, conn: &Connection, account: &str) -> Result<bool, CommitError> {
        if let Some(&known) = self.0.get(account) {
            return Ok(known);
        }
        let [endpoint, listener] = EVENT_TARGET_KINDS;
        let (endpoint_low, endpoint_high) = index_key_range(account, endpoint, TARGET_EVENTS_FIELD);
        let (listener_low, listener_high) = index_key_range(account, listener, TARGET_EVENTS_FIELD);
        let found = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM object_keys WHERE key >= ?1 AND key < ?2)
                     OR EXISTS (SELECT 1 FROM object_keys WHERE key >= ?3 AND key < ?4)",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![endpoint_low, endpoint_high, listener_low, listener_high],
                    |r| r.get(0),
                )
            })
            .map_err(|e| CommitError::Store(e.into()))?;
        self.0.insert(account.to_string(), found);
        Ok(found)
    }

    fn forget(&mut self, account: &str) {
        self.0.remove(account);
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_string();
        self.read(move |c| {
            c.query_row(sql::META_GET.text(DIALECT), params![key], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.admin(move |c| {
            c.execute(sql::META_SET.text(DIALECT), params![key, value])
                .map(|_| ())
        })
        .await
    }

    async fn create_account(&self, account: &Account) -> StoreResult<()> {
        let a = account.clone();
        self.admin(move |c| {
            c.execute(
                sql::CREATE_ACCOUNT.text(DIALECT),
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
            c.query_row(sql::ACCOUNT.text(DIALECT), params![id], |r| sql::account(r))
                .optional()
        })
        .await
    }

    async fn account_by_key(&self, key: &str) -> StoreResult<Option<Account>> {
        let key = key.to_string();
        self.read(move |c| {
            c.query_row(sql::ACCOUNT_BY_KEY.text(DIALECT), params![key], |r| {
                sql::account(r)
            })
            .optional()
        })
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(|c| {
            let mut stmt = c.prepare(sql::ACCOUNTS.text(DIALECT))?;
            let rows = stmt.query_map([], |r| sql::account(r))?;
            rows.collect()
        })
        .await
    }

    async fn set_clock_offset(&self, account: &str, offset: i64) -> StoreResult<()> {
        let account = account.to_string();
        self.admin(move |c| {
            let moved = c.execute(
                "UPDATE accounts SET clock_offset = MAX(clock_offset, ?2) WHERE id = ?1",
                params![account, offset],
            )?;
            if moved > 0 {
                // The account's jobs on its clock that no one holds run by the
                // moved clock: one whose due time it passed is runnable now.
                c.prepare_cached(
                    "UPDATE scheduled_jobs SET runnable_at = MIN(runnable_at,
                        (due_at - (SELECT clock_offset FROM accounts WHERE id = ?1)) * 1000)
                     WHERE account = ?1 AND clock IS NULL AND lease_owner IS NULL",
                )?
                .execute(params![account])?;
            }
            Ok(())
        })
        .await
    }

    async fn get(&self, account: &str, id: &str) -> StoreResult<Option<StoredObject>> {
        let (account, id) = (account.to_string(), id.to_string());
        self.read_point(move |c| {
            c.prepare_cached(sql::OBJECT.text(DIALECT))?
                .query_row(params![id, account], |r| sql::object(r))
                .optional()
        })
        .await
    }

    async fn list(&self, account: &str, query: &ListQuery) -> StoreResult<Vec<StoredObject>> {
        // A filtered page walks the index rows of one key, each joined to its
        // object by seq (the rowid).
        let (text, args) = sql::list(DIALECT, account, query, |b, at, field, value| {
            let key = b.bind(index_key(account, &query.kind, field, value));
            b.push(&format!(
                "object_keys i JOIN objects o ON o.seq = i.seq WHERE i.key = {key} AND o.account = {at}"
            ));
            "i.seq"
        });
        let page = move |c: &Connection| {
            let mut stmt = c.prepare_cached(&text)?;
            let rows =
                stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| sql::object(r))?;
            rows.collect()
        };
        if query.limit <= INLINE_PAGE_ROWS {
            self.read_point(page).await
        } else {
            self.read(page).await
        }
    }

    async fn idempotency_get(
        &self,
        account: &str,
        key: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let (account, key) = (account.to_string(), key.to_string());
        self.read_point(move |c| {
            c.prepare_cached(sql::IDEMPOTENCY_RECORD.text(DIALECT))?
                .query_row(params![account, key], |r| sql::idempotency_record(r))
                .optional()
        })
        .await
    }

    async fn commit(&self, batch: WriteBatch) -> Result<Committed, CommitError> {
        if batch.is_empty() {
            return Ok(Committed::default());
        }
        let prepared = prepare(&batch);
        self.submit(|reply| Job::Batch(batch, prepared, reply))
            .await
    }

    async fn purge_idempotency(&self, account: &str, cutoff: i64) -> StoreResult<u64> {
        let account = account.to_string();
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = count.clone();
        self.admin(move |c| {
            let n = c.execute(
                sql::PURGE_IDEMPOTENCY.text(DIALECT),
                params![account, cutoff],
            )?;
            counter.store(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .await?;
        Ok(count.load(std::sync::atomic::Ordering::Relaxed))
    }

    async fn list_where(
        &self,
        account: &str,
        query: &ListQuery,
        conditions: &[IndexCondition],
    ) -> StoreResult<Vec<StoredObject>> {
        let (text, args) = sql::list_where(DIALECT, account, query, conditions);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&text)?;
            let rows =
                stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| sql::object(r))?;
            rows.collect()
        })
        .await
    }

    async fn claim_deliveries(&self, claim: &DeliveryClaim) -> StoreResult<Vec<Delivery>> {
        let claim = claim.clone();
        let mut rows = self
            .write_store(move |c| {
                let lease_until = claim.now_ms + claim.lease_ms;
                // Each endpoint's oldest due rows whose lease is free. The rows it
                // skips are those in flight or being finished: at most its share
                // and a group's worth, however long its backlog.
                let mut take = c.prepare_cached(&format!(
                    "UPDATE webhook_deliveries SET lease_owner = ?1, lease_expires_at = ?2
                     WHERE (event_id, endpoint_id) IN (
                        SELECT event_id, endpoint_id FROM webhook_deliveries
                        WHERE status = 'pending' AND endpoint_id = ?3 AND push = ?4
                          AND next_attempt_at <= ?5
                          AND (lease_expires_at IS NULL OR lease_expires_at <= ?5)
                        ORDER BY next_attempt_at LIMIT ?6
                     ) RETURNING {}",
                    sql::DELIVERY_COLUMNS
                ))?;
                let mut take_from = |endpoint: &str, push: bool, n: usize| {
                    let n = i64::try_from(n).unwrap_or(i64::MAX);
                    take.query_map(
                        params![claim.owner, lease_until, endpoint, push, claim.now_ms, n],
                        |r| sql::delivery(r),
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
                };
                let mut claimed = Vec::new();
                if let Some(listener) = &claim.listener {
                    claimed = take_from(listener, false, claim.limit)?;
                } else {
                    // The endpoints with pending rows, one index probe each (a skip
                    // scan of the pending index): a few, however many rows.
                    let mut next = c.prepare_cached(
                        "SELECT endpoint_id FROM webhook_deliveries
                         WHERE status = 'pending' AND endpoint_id > ?1
                         ORDER BY endpoint_id LIMIT 1",
                    )?;
                    let mut after = String::new();
                    while claimed.len() < claim.limit {
                        let found: Option<String> =
                            next.query_row(params![after], |r| r.get(0)).optional()?;
                        let Some(endpoint) = found else { break };
                        let share = claim
                            .shares
                            .as_ref()
                            .map_or(usize::MAX, |s| s.of(&endpoint));
                        let n = share.min(claim.limit - claimed.len());
                        if n > 0 {
                            claimed.extend(take_from(&endpoint, true, n)?);
                        }
                        after = endpoint;
                    }
                }
                Ok(claimed)
            })
            .await?;
        rows.sort_by(|a, b| {
            (a.next_attempt_at, &a.event_id).cmp(&(b.next_attempt_at, &b.event_id))
        });
        Ok(rows)
    }

    async fn finish_deliveries(&self, results: Vec<DeliveryResult>) -> StoreResult<Vec<bool>> {
        self.write_store(move |c| {
            let mut record = c.prepare_cached(
                "INSERT INTO webhook_attempts (id, account, event_id, endpoint_id, attempt,
                    attempted_at, status_code, latency_ms, response_body, error, succeeded)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT(id) DO NOTHING",
            )?;
            let mut settle = c.prepare_cached(
                "UPDATE webhook_deliveries SET status = ?1, attempts = attempts + ?2,
                    next_attempt_at = COALESCE(?3, next_attempt_at),
                    succeeded_at = COALESCE(succeeded_at, ?4),
                    lease_owner = NULL, lease_expires_at = NULL
                 WHERE event_id = ?5 AND endpoint_id = ?6 AND account = ?7 AND lease_owner = ?8",
            )?;
            let mut settled = Vec::with_capacity(results.len());
            for result in &results {
                if let Some(a) = &result.attempt {
                    record.execute(params![
                        a.id,
                        result.account,
                        result.event_id,
                        result.endpoint_id,
                        a.attempt,
                        a.attempted_at,
                        a.status_code,
                        a.latency_ms,
                        a.response_body,
                        a.error,
                        a.succeeded
                    ])?;
                }
                let (status, next_at, succeeded_at) = result.columns();
                let changed = settle.execute(params![
                    status,
                    i64::from(result.attempt.is_some()),
                    next_at,
                    succeeded_at,
                    result.event_id,
                    result.endpoint_id,
                    result.account,
                    result.lease_owner
                ])?;
                settled.push(changed > 0);
            }
            Ok(settled)
        })
        .await
    }

    async fn release_deliveries(&self, owner: &str) -> StoreResult<u64> {
        let owner = owner.to_string();
        self.write_store(move |c| {
            let n = c.execute(sql::RELEASE_DELIVERIES.text(DIALECT), params![owner])?;
            Ok(n as u64)
        })
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
        let (account, event_id, endpoint_id) = (
            account.to_string(),
            event_id.to_string(),
            endpoint_id.to_string(),
        );
        self.admin(move |c| {
            c.execute(
                sql::REDELIVER.text(DIALECT),
                params![account, event_id, endpoint_id, push, now_ms],
            )
            .map(|_| ())
        })
        .await
    }

    async fn delivery(
        &self,
        account: &str,
        event_id: &str,
        endpoint_id: &str,
    ) -> StoreResult<Option<Delivery>> {
        let (account, event_id, endpoint_id) = (
            account.to_string(),
            event_id.to_string(),
            endpoint_id.to_string(),
        );
        self.read(move |c| {
            c.prepare_cached(sql::DELIVERY.text(DIALECT))?
                .query_row(params![event_id, endpoint_id, account], |r| {
                    sql::delivery(r)
                })
                .optional()
        })
        .await
    }

    async fn pending_webhooks(&self, account: &str, event_ids: &[String]) -> StoreResult<Vec<i64>> {
        let (account, event_ids) = (account.to_string(), event_ids.to_vec());
        self.read_point(move |c| {
            // `+push`: without it SQLite's planner may take another index on `push`
            // and count by scanning every push delivery ever made; the primary key
            // finds the event's few rows.
            let mut count = c.prepare_cached(
                "SELECT COUNT(*) FROM webhook_deliveries
                 WHERE event_id = ?1 AND account = ?2 AND +push = 1 AND succeeded_at IS NULL",
            )?;
            event_ids
                .iter()
                .map(|id| count.query_row(params![id, account], |r| r.get(0)))
                .collect()
        })
        .await
    }

    async fn list_attempts(
        &self,
        account: &str,
        query: &AttemptQuery,
    ) -> StoreResult<Vec<AttemptRecord>> {
        let (text, args) = sql::attempts(DIALECT, account, query);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&text)?;
            let rows =
                stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| sql::attempt(r))?;
            rows.collect()
        })
        .await
    }

    async fn purge_events(&self, account: &str, cutoff: i64) -> StoreResult<u64> {
        let account = account.to_string();
        self.write_store(move |c| {
            // The doomed events once; every table that refers to them goes with them.
            c.execute(
                "CREATE TEMP TABLE IF NOT EXISTS purged_events (id TEXT PRIMARY KEY)",
                [],
            )?;
            c.execute("DELETE FROM temp.purged_events", [])?;
            let n = c.execute(
                &format!(
                    "INSERT INTO temp.purged_events (id) {}",
                    sql::OLDEST_EVENTS.text(DIALECT)
                ),
                params![account, cutoff, PURGE_BATCH as i64],
            )?;
            if n > 0 {
                for table in ["webhook_attempts", "webhook_deliveries"] {
                    c.execute(
                        &format!(
                            "DELETE FROM {table} WHERE account = ?1
                             AND event_id IN (SELECT id FROM temp.purged_events)"
                        ),
                        params![account],
                    )?;
                }
                c.execute(
                    "DELETE FROM object_keys WHERE (key, seq) IN (
                        SELECT o.account || char(31) || o.kind || char(31)
                               || json_extract(k.value, '$[0]') || char(31)
                               || json_extract(k.value, '$[1]'), o.seq
                        FROM objects o, json_each(o.index_keys) k
                        WHERE o.account = ?1 AND o.id IN (SELECT id FROM temp.purged_events))",
                    params![account],
                )?;
                c.execute(
                    "DELETE FROM objects WHERE account = ?1 AND id IN (SELECT id FROM temp.purged_events)",
                    params![account],
                )?;
            }
            c.execute("DELETE FROM temp.purged_events", [])?;
            Ok(n as u64)
        })
        .await
    }

    async fn claim_jobs(&self, claim: &JobClaim) -> StoreResult<Vec<ScheduledJob>> {
        let claim = claim.clone();
        self.write_store(move |c| {
            // The lease's end becomes the job's runnable time: held, it leaves the
            // range a claim scans, and comes back into it when the lease runs out.
            let lease_until = claim.now_ms + claim.lease_ms;
            let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
            let mut take = c.prepare_cached(&format!(
                "UPDATE scheduled_jobs SET lease_owner = ?1, lease_expires_at = ?2,
                    runnable_at = ?2, attempts = attempts + 1
                 WHERE (account, kind, object) IN (
                    SELECT account, kind, object FROM scheduled_jobs
                    WHERE runnable_at <= ?3 ORDER BY runnable_at LIMIT ?4
                 ) RETURNING {}",
                sql::JOB_COLUMNS
            ))?;
            let rows = take.query_map(
                params![claim.owner, lease_until, claim.now_ms, limit],
                |r| sql::scheduled_job(r),
            )?;
            rows.collect()
        })
        .await
    }

    async fn retry_job(
        &self,
        lease: &JobLease,
        retry_at_ms: i64,
        error: &str,
    ) -> StoreResult<bool> {
        let (lease, error) = (lease.clone(), error.to_string());
        self.write_store(move |c| {
            let changed = c
                .prepare_cached(sql::RETRY_JOB.text(DIALECT))?
                .execute(params![
                    lease.account,
                    lease.job.kind,
                    lease.job.object,
                    lease.owner,
                    retry_at_ms,
                    error
                ])?;
            Ok(changed > 0)
        })
        .await
    }

    async fn next_job_at(&self) -> StoreResult<Option<i64>> {
        self.read_point(|c| {
            c.prepare_cached(sql::NEXT_JOB_AT.text(DIALECT))?
                .query_row([], |r| r.get(0))
        })
        .await
    }

    async fn job(&self, account: &str, job: &JobId) -> StoreResult<Option<ScheduledJob>> {
        let (account, job) = (account.to_string(), job.clone());
        self.read(move |c| {
            c.prepare_cached(sql::JOB.text(DIALECT))?
                .query_row(params![account, job.kind, job.object], |r| {
                    sql::scheduled_job(r)
                })
                .optional()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under writes that never pause, the WAL is restarted from its beginning
    /// again and again: it stays near what one checkpoint cycle writes instead of
    /// growing by everything written (the writer's own checkpoint is set out of reach here, so
    /// only the restart asked for by the checkpoint thread can bound it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_restarted_under_steady_writes() {
        let dir = std::env::temp_dir().join(format!("payground-wal-{}", crate::ids::new_id("t")));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("wal.db");
        let path = path.to_str().expect("utf-8 path").to_string();
        let limits = WalLimits {
            restart: 256,
            backstop: 10_000_000,
        };
        let store = Arc::new(
            SqliteStore::open_with_limits(&path, Synchronous::Normal, limits).expect("open"),
        );
        let wal = format!("{path}-wal");
        let data = format!(r#"{{"text":"{}"}}"#, "x".repeat(3_000));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut writers = Vec::new();
        for w in 0..8 {
            let (store, data) = (store.clone(), data.clone());
            writers.push(tokio::spawn(async move {
                let mut n = 0u64;
                while std::time::Instant::now() < deadline {
                    let object = ObjectWrite {
                        id: format!("cus_w{w}n{n}"),
                        kind: "customer".into(),
                        created: 1,
                        data: data.clone(),
                        expected_version: None,
                        index: vec![],
                        deleted: false,
                    };
                    store
                        .commit(WriteBatch {
                            account: "acct_a".into(),
                            objects: vec![object],
                            events: vec![],
                            idempotency: None,
                            idempotency_cutoff: 0,
                            ..Default::default()
                        })
                        .await
                        .expect("commit");
                    n += 1;
                }
                n
            }));
        }
        // The WAL header's checkpoint sequence number (bytes 12..16) goes up by
        // one each time the WAL is written again from its beginning; counting
        // those, rather than comparing lengths, holds however slowly this machine
        // (a debug build, other tests beside it) copies frames.
        let sequence = |wal: &str| -> Option<u32> {
            use std::io::Read;
            let mut header = [0u8; 16];
            std::fs::File::open(wal)
                .ok()?
                .read_exact(&mut header)
                .ok()?;
            Some(u32::from_be_bytes([
                header[12], header[13], header[14], header[15],
            ]))
        };
        let mut first = None;
        let mut last = None;
        let mut longest = 0;
        while std::time::Instant::now() < deadline {
            if let Some(s) = sequence(&wal) {
                first.get_or_insert(s);
                last = Some(s);
            }
            longest = longest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut written = 0;
        for w in writers {
            written += w.await.expect("writer") * data.len() as u64;
        }
        assert!(
            written > 20 * 1024 * 1024,
            "too little was written to tell: {written} bytes"
        );
        let restarts = last.unwrap_or(0).wrapping_sub(first.unwrap_or(0));
        assert!(
            restarts >= 2,
            "the WAL was restarted {restarts} times while {written} bytes of objects were written"
        );
        // Every commit puts at least its object's text in the WAL, so a WAL never
        // restarted would end longer than `written`.
        assert!(
            longest < written,
            "the WAL reached {longest} bytes with {written} bytes of objects written"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A database file in a fresh temporary folder, brought to schema `version` by
    /// the migrations of that time, with `rows` written into it; the folder (to
    /// remove afterwards) and the file's path.
    fn database_at_schema(version: usize, rows: &str) -> (std::path::PathBuf, String) {
        let dir =
            std::env::temp_dir().join(format!("payground-m{version}-{}", crate::ids::new_id("t")));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("old.db").to_str().expect("utf-8 path").to_string();
        let conn = Connection::open(&path).expect("open");
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).expect("old migration");
        }
        conn.execute_batch(&format!("PRAGMA user_version = {version};"))
            .expect("old version");
        conn.execute_batch(rows).expect("old rows");
        (dir, path)
    }

    /// A database written before objects kept their index keys: migration 3 fills
    /// them from the index, so the next version of an old object still drops its
    /// old index rows.
    #[tokio::test]
    async fn migration_3_carries_index_keys_over() {
        let (dir, path) = database_at_schema(
            2,
            "INSERT INTO objects (seq, account, id, kind, created, version, data)
             VALUES (7, 'acct_a', 'cus_old', 'customer', 1, 1, '{}');
             INSERT INTO object_index VALUES ('acct_a', 'customer', 'email', 'a@x', 7, 'cus_old');
             INSERT INTO object_index VALUES ('acct_a', 'customer', 'name', 'A', 7, 'cus_old');",
        );
        let store = SqliteStore::open(&path).expect("migrated open");
        let by = |field: &str, value: &str| ListQuery {
            kind: "customer".into(),
            limit: 10,
            filter: Some((field.into(), value.into())),
            ..Default::default()
        };
        let listed = store
            .list("acct_a", &by("email", "a@x"))
            .await
            .expect("list");
        assert_eq!(listed.len(), 1, "the old index still answers");
        let update = ObjectWrite {
            id: "cus_old".into(),
            kind: "customer".into(),
            created: 1,
            data: r#"{"v":2}"#.into(),
            expected_version: Some(1),
            index: vec![("email".into(), "b@x".into())],
            deleted: false,
        };
        store
            .commit(WriteBatch {
                account: "acct_a".into(),
                objects: vec![update],
                ..Default::default()
            })
            .await
            .expect("update");
        for (field, value, expected) in [("email", "a@x", 0), ("name", "A", 0), ("email", "b@x", 1)]
        {
            let listed = store.list("acct_a", &by(field, value)).await.expect("list");
            assert_eq!(listed.len(), expected, "{field}={value}");
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A database written while idempotency records were keyed WITHOUT ROWID:
    /// migration 5 moves them, and they still replay and still refuse a second
    /// record under the same key.
    #[tokio::test]
    async fn migration_5_keeps_idempotency_records() {
        let (dir, path) = database_at_schema(
            4,
            "INSERT INTO idempotency VALUES ('acct_a', 'key_old', 'fp', 200, '{\"id\":\"pi_1\"}', 10);",
        );
        let store = SqliteStore::open(&path).expect("migrated open");
        let found = store
            .idempotency_get("acct_a", "key_old")
            .await
            .expect("get")
            .expect("the record is there");
        assert_eq!(
            (found.status, found.body.as_str()),
            (200, r#"{"id":"pi_1"}"#)
        );
        let again = |cutoff: i64| WriteBatch {
            account: "acct_a".into(),
            objects: vec![object("cus_new", "customer", None)],
            events: vec![],
            idempotency: Some(record("key_old")),
            idempotency_cutoff: cutoff,
            ..Default::default()
        };
        assert!(
            matches!(
                store.commit(again(0)).await,
                Err(CommitError::IdempotencyTaken)
            ),
            "a live record still holds its key"
        );
        store
            .commit(again(11))
            .await
            .expect("an expired record is replaced");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A database whose index rows were five columns: migration 6 keys them by one
    /// text, and they still answer filtered lists, still route events to the
    /// endpoint that takes them, and are still replaced when their object changes.
    #[tokio::test]
    async fn migration_6_keeps_index_rows() {
        let (dir, path) = database_at_schema(
            5,
            r#"INSERT INTO objects (seq, account, id, kind, created, version, data, index_keys)
             VALUES (7, 'acct_a', 'cus_old', 'customer', 1, 1, '{}', '[["email","a@x"]]'),
                    (8, 'acct_a', 'we_old', 'webhook_endpoint', 1, 1, '{}',
                     '[["target_event","customer.updated"]]'),
                    (9, 'acct_b', 'cus_other', 'customer', 1, 1, '{}', '[["email","a@x"]]');
             INSERT INTO object_index VALUES
                ('acct_a', 'customer', 'email', 'a@x', 7, 'cus_old'),
                ('acct_a', 'webhook_endpoint', 'target_event', 'customer.updated', 8, 'we_old'),
                ('acct_b', 'customer', 'email', 'a@x', 9, 'cus_other');"#,
        );
        let store = SqliteStore::open(&path).expect("migrated open");
        let by_email = |value: &str| ListQuery {
            kind: "customer".into(),
            limit: 10,
            filter: Some(("email".into(), value.into())),
            ..Default::default()
        };
        let listed = store.list("acct_a", &by_email("a@x")).await.expect("list");
        let ids: Vec<_> = listed.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(
            ids,
            ["cus_old"],
            "the old rows answer, each in its own account"
        );
        let event = |id: &str, event_type: &str| WriteBatch {
            account: "acct_a".into(),
            objects: vec![object(id, "event", None)],
            events: vec![EmittedEvent {
                id: id.into(),
                event_type: event_type.into(),
            }],
            ..Default::default()
        };
        let taken = store
            .commit(event("evt_taken", "customer.updated"))
            .await
            .expect("event");
        assert!(taken.deliveries, "the old endpoint still takes its type");
        let other = store
            .commit(event("evt_other", "customer.created"))
            .await
            .expect("event");
        assert!(!other.deliveries, "and only its type");
        let update = ObjectWrite {
            expected_version: Some(1),
            index: vec![("email".into(), "b@x".into())],
            ..object("cus_old", "customer", None)
        };
        store
            .commit(WriteBatch {
                account: "acct_a".into(),
                objects: vec![update],
                ..Default::default()
            })
            .await
            .expect("update");
        for (value, expected) in [("a@x", 0), ("b@x", 1)] {
            let listed = store.list("acct_a", &by_email(value)).await.expect("list");
            assert_eq!(listed.len(), expected, "email={value}");
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn object(id: &str, kind: &str, version: Option<i64>) -> ObjectWrite {
        ObjectWrite {
            id: id.into(),
            kind: kind.into(),
            created: 1,
            data: format!(r#"{{"id":"{id}"}}"#),
            expected_version: version,
            index: vec![],
            deleted: false,
        }
    }

    fn record(key: &str) -> IdempotencyRecord {
        IdempotencyRecord {
            key: key.into(),
            fingerprint: "fp".into(),
            status: 200,
            body: "{}".into(),
            created: 10,
        }
    }

    /// Runs `batches` as one group on the writer's connection, as the writer
    /// would, and returns each batch's outcome.
    fn run(conn: &mut Connection, batches: Vec<WriteBatch>) -> Vec<Result<Committed, CommitError>> {
        let mut replies = Vec::new();
        let group = batches
            .into_iter()
            .map(|b| {
                let (reply, done) = oneshot::channel();
                replies.push(done);
                let prepared = prepare(&b);
                (b, prepared, reply)
            })
            .collect();
        run_group(conn, group, Vec::new());
        replies
            .into_iter()
            .map(|mut r| r.try_recv().expect("answered"))
            .collect()
    }

    fn ids(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let rows = stmt.query_map([], |r| r.get(0)).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    /// Groups run on the writer's connection: events before the account's first
    /// endpoint get no deliveries, events after it do, whatever the memo of the
    /// group knew; and a batch that fails after writing leaves nothing while the
    /// rest of its group commits, whichever way it is applied.
    #[test]
    fn a_group_sees_its_own_endpoints_and_its_failures_stay_alone() {
        let dir = std::env::temp_dir().join(format!("payground-g-{}", crate::ids::new_id("t")));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("group.db");
        let mut conn = Connection::open(&path).expect("open");
        migrate(&mut conn).expect("migrate");
        let batch = |objects: Vec<ObjectWrite>, events: &[&str]| WriteBatch {
            account: "acct_a".into(),
            objects,
            events: events
                .iter()
                .map(|e| EmittedEvent {
                    id: e.to_string(),
                    event_type: "customer.created".into(),
                })
                .collect(),
            idempotency: None,
            idempotency_cutoff: 0,
            ..Default::default()
        };
        let endpoint = |version| ObjectWrite {
            index: vec![(TARGET_EVENTS_FIELD.into(), "*".into())],
            ..object("we_1", EVENT_TARGET_KINDS[0], version)
        };
        let outcomes = run(
            &mut conn,
            vec![
                batch(vec![object("evt_before", "event", None)], &["evt_before"]),
                batch(vec![endpoint(None)], &[]),
                batch(vec![object("evt_after", "event", None)], &["evt_after"]),
                // Writes an event, then finds its update stale: all of it goes.
                batch(
                    vec![
                        object("evt_lost", "event", None),
                        object("cus_none", "customer", Some(3)),
                    ],
                    &["evt_lost"],
                ),
                WriteBatch {
                    idempotency: Some(record("key_1")),
                    ..batch(vec![object("evt_last", "event", None)], &["evt_last"])
                },
            ],
        );
        assert!(matches!(
            outcomes[0],
            Ok(Committed {
                deliveries: false,
                ..
            })
        ));
        assert!(matches!(
            outcomes[2],
            Ok(Committed {
                deliveries: true,
                ..
            })
        ));
        assert!(outcomes[1].is_ok());
        assert!(matches!(&outcomes[3], Err(CommitError::Conflict(id)) if id == "cus_none"));
        assert!(outcomes[4].is_ok());
        let deliveries = "SELECT event_id FROM webhook_deliveries ORDER BY event_id";
        assert_eq!(ids(&conn, deliveries), ["evt_after", "evt_last"]);
        assert_eq!(
            ids(&conn, "SELECT id FROM objects ORDER BY seq"),
            ["evt_before", "we_1", "evt_after", "evt_last"]
        );
        // The endpoint's deletion rolls back with its batch, refused only at its
        // idempotency key after its deliveries were decided: the next batch's
        // event still has the endpoint to go to.
        let mut gone = endpoint(Some(1));
        gone.deleted = true;
        let outcomes = run(
            &mut conn,
            vec![
                WriteBatch {
                    idempotency: Some(record("key_1")),
                    ..batch(vec![gone, object("evt_x", "event", None)], &["evt_x"])
                },
                batch(vec![object("evt_y", "event", None)], &["evt_y"]),
            ],
        );
        assert!(matches!(outcomes[0], Err(CommitError::IdempotencyTaken)));
        assert!(outcomes[1].is_ok());
        assert_eq!(ids(&conn, deliveries), ["evt_after", "evt_last", "evt_y"]);
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
