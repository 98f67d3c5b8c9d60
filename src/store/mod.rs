//! Storage: one [`Store`] interface, two implementations (SQLite embedded, PostgreSQL
//! for several nodes).
//!
//! Every Stripe object is one row holding its JSON (`data`) plus the columns lists
//! need. A request's whole effect (objects, their index rows, the events it caused
//! with their outbox rows, and its idempotency record) is one [`WriteBatch`],
//! committed atomically before the response is sent. Concurrent writers are kept
//! apart by row versions: a batch that updates a row someone else changed first
//! fails with [`CommitError::Conflict`] and the operation runs again on fresh data.

#[cfg(test)]
mod conformance;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

/// One isolated sandbox: its own objects, keys, idempotency records and clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub secret_key: String,
    pub publishable_key: String,
    /// Seconds this account's clock runs ahead of the real one (test helpers move it).
    pub clock_offset: i64,
    pub created: i64,
}

/// An object as stored.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// Insertion order; lists are ordered by it, newest first.
    pub seq: i64,
    pub id: String,
    pub kind: String,
    pub version: i64,
    pub created: i64,
    pub deleted: bool,
    pub data: String,
}

/// A new object or a new version of one.
#[derive(Debug, Clone)]
pub struct ObjectWrite {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub data: String,
    /// `None` inserts a new object; `Some(v)` updates the object only if it is still at version `v`.
    pub expected_version: Option<i64>,
    /// Lookup keys for filtered lists, e.g. ("customer", "cus_123"), ("email", "a@b.c").
    pub index: Vec<(String, String)>,
    /// Deleted objects stay retrievable (Stripe returns `deleted: true`) but leave every list.
    pub deleted: bool,
}

/// The stored response of a request made with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// Hash of method, path and parameters; a replay with another fingerprint is refused.
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    pub created: i64,
}

/// Everything one request changes, committed in one transaction.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub account: String,
    pub objects: Vec<ObjectWrite>,
    /// Ids of events (written in `objects`) waiting for webhook delivery.
    pub outbox: Vec<String>,
    pub idempotency: Option<IdempotencyRecord>,
    /// Records older than this (account time) may be replaced by `idempotency`.
    pub idempotency_cutoff: i64,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.outbox.is_empty() && self.idempotency.is_none()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreatedRange {
    pub gt: Option<i64>,
    pub gte: Option<i64>,
    pub lt: Option<i64>,
    pub lte: Option<i64>,
}

/// Where a page starts, as Stripe's `starting_after` / `ending_before` cursors resolved to `seq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cursor {
    #[default]
    Newest,
    /// Objects older than this one (`starting_after`).
    Before(i64),
    /// Objects newer than this one (`ending_before`).
    After(i64),
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub kind: String,
    /// Only objects indexed with this (field, value).
    pub filter: Option<(String, String)>,
    pub created: CreatedRange,
    pub cursor: Cursor,
    /// Rows to return; callers ask for one more than the page to learn `has_more`.
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// An object changed since it was read, or a new id already exists.
    #[error("write conflict on {0}")]
    Conflict(String),
    /// Another request with the same idempotency key committed first.
    #[error("idempotency key already used")]
    IdempotencyTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {}", postgres_detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The database's own message: tokio-postgres keeps it in the error's source.
fn postgres_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which implementation this is, for logs and the start-up banner.
    fn backend(&self) -> &'static str;

    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>>;
    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()>;

    async fn create_account(&self, account: &Account) -> StoreResult<()>;
    async fn account(&self, id: &str) -> StoreResult<Option<Account>>;
    async fn account_by_key(&self, key: &str) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// Moves the account's clock; only ever forward.
    async fn set_clock_offset(&self, account: &str, offset: i64) -> StoreResult<()>;

    async fn get(&self, account: &str, id: &str) -> StoreResult<Option<StoredObject>>;
    async fn list(&self, account: &str, query: &ListQuery) -> StoreResult<Vec<StoredObject>>;
    async fn idempotency_get(
        &self,
        account: &str,
        key: &str,
    ) -> StoreResult<Option<IdempotencyRecord>>;

    /// Commits the batch atomically; returns only once it is durable.
    async fn commit(&self, batch: WriteBatch) -> Result<(), CommitError>;

    /// Deletes idempotency records created before `cutoff` (account time is applied by the caller).
    async fn purge_idempotency(&self, account: &str, cutoff: i64) -> StoreResult<u64>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store a `--database` URL names, running migrations.
pub async fn open(url: &str) -> anyhow::Result<DynStore> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        Ok(Arc::new(sqlite::SqliteStore::open(path)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        anyhow::bail!("unsupported database URL {url:?}: use sqlite:PATH or postgres://...")
    }
}
