//! Storage: one [`Store`] interface, two implementations (SQLite embedded, PostgreSQL
//! for several nodes).
//!
//! Every Stripe object is one row holding its JSON (`data`) plus the columns lists
//! need. A request's whole effect (objects, their index rows, the events it caused
//! with the webhook deliveries they call for, and its idempotency record) is one [`WriteBatch`],
//! committed atomically before the response is sent. Concurrent writers are kept
//! apart by row versions: a batch that updates a row someone else changed first
//! fails with [`CommitError::Conflict`] and the operation runs again on fresh data.
//!
//! Work due later (a debit's settlement, and later expiries and renewals) is a row
//! of `scheduled_jobs`, written by the batch of the state change that calls for it
//! and removed by the batch of the handler that does it ([`WriteBatch::jobs`],
//! [`WriteBatch::finishes`]).

mod migrations;
mod object_data;
pub mod postgres;
mod sql;
pub mod sqlite;
#[cfg(test)]
mod tests;
mod wal_vfs;

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

impl Account {
    /// The account's current time (unix seconds): what its objects are stamped
    /// with and its expiries are measured against.
    pub fn now(&self) -> i64 {
        crate::clock::account_now(self.clock_offset)
    }
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

impl ObjectWrite {
    /// The lookup keys this version leaves in the index (none once deleted), as the
    /// JSON text stored beside the object (`[["customer","cus_1"]]`). Keeping them on
    /// the object row lets a later version remove exactly its predecessor's index rows
    /// by primary key, so the index needs no second b-tree by object id: that b-tree
    /// was a tenth of the writer's work on every payment.
    pub fn index_keys(&self) -> String {
        if self.deleted || self.index.is_empty() {
            return "[]".to_string();
        }
        serde_json::to_string(&self.index).unwrap_or_else(|_| "[]".to_string())
    }

    /// The keys this version leaves in the index, as pairs.
    pub fn live_index(&self) -> &[(String, String)] {
        if self.deleted {
            &[]
        } else {
            &self.index
        }
    }
}

/// The pairs of a stored `index_keys` text; unreadable text (never written by
/// payground) counts as no keys.
pub fn parse_index_keys(text: &str) -> Vec<(String, String)> {
    serde_json::from_str(text).unwrap_or_default()
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

/// Kinds of objects that receive events: webhook endpoints and `payground listen`
/// clients.
pub const EVENT_TARGET_KINDS: [&str; 2] = ["webhook_endpoint", "payground.listener"];

/// The index field under which an event target names the event types it takes: one
/// row per entry of its `enabled_events` (`*` for every type) while it takes any.
///
/// A commit matches each event it writes against these rows and creates one
/// delivery per target in the event's own transaction. So the targets are exactly
/// those that existed when the event happened, as Stripe delivers, and no fan-out
/// job is needed: an event of an account nobody listens to costs one index probe,
/// and one that somebody does costs its delivery rows, nothing more.
pub const TARGET_EVENTS_FIELD: &str = "target_event";

/// An event a batch writes (its object is among the batch's objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmittedEvent {
    pub id: String,
    pub event_type: String,
}

/// Everything one request changes, committed in one transaction.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub account: String,
    pub objects: Vec<ObjectWrite>,
    /// Events among `objects`: each gets a delivery per event target of the account
    /// that takes its type (see [`TARGET_EVENTS_FIELD`]).
    pub events: Vec<EmittedEvent>,
    pub idempotency: Option<IdempotencyRecord>,
    /// Records older than this (account time) may be replaced by `idempotency`.
    pub idempotency_cutoff: i64,
    /// Jobs the batch schedules, in the account: scheduling a job again (the same
    /// kind and object) replaces its due time, its lease and its attempts.
    pub jobs: Vec<JobSchedule>,
    /// Jobs the batch removes, whoever holds them: the state change made them moot.
    pub cancelled_jobs: Vec<JobId>,
    /// The job this batch is the handler's work of: the commit removes it only while
    /// the lease is still held, and otherwise fails with a conflict on
    /// [`JobLease::label`], so the handler's effect and the job's removal are one
    /// transaction and a job whose lease another node took over is done once.
    pub finishes: Option<JobLease>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
            && self.events.is_empty()
            && self.idempotency.is_none()
            && self.jobs.is_empty()
            && self.cancelled_jobs.is_empty()
            && self.finishes.is_none()
    }

    /// Whether the batch writes or removes jobs.
    pub fn has_jobs(&self) -> bool {
        !self.jobs.is_empty() || !self.cancelled_jobs.is_empty() || self.finishes.is_some()
    }

    /// Makes the batch finish the job `lease` holds; a removal of the same job it
    /// asked for is dropped, as it would not wait for the lease.
    pub fn finish_job(&mut self, lease: JobLease) {
        self.cancelled_jobs.retain(|job| *job != lease.job);
        self.finishes = Some(lease);
    }
}

/// What a commit did beyond what its batch says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Deliveries were created (by this batch or another of its group): the
    /// delivery worker has work.
    pub deliveries: bool,
    /// The earliest time (unix milliseconds, real time) at which a job the batch
    /// (or another of its group) scheduled can run: the scheduler may have to wake
    /// earlier than it meant to.
    pub scheduled: Option<i64>,
}

impl Committed {
    /// What a group's commits did together.
    pub fn and(self, other: Committed) -> Committed {
        Committed {
            deliveries: self.deliveries || other.deliveries,
            scheduled: earliest(self.scheduled, other.scheduled),
        }
    }
}

/// The earlier of two times either of which may be unknown.
pub fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A job, named within its account by what it does and to which object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId {
    /// What to do, e.g. `payment_intent.settle`: the scheduler runs the handler
    /// of this kind.
    pub kind: String,
    /// The id of the object it concerns.
    pub object: String,
}

/// A job a batch schedules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSchedule {
    pub job: JobId,
    /// When it is due: unix seconds on its clock.
    pub due_at: i64,
    /// Whose clock `due_at` is on: `None`, the account's (whose offset, moved by
    /// [`Store::set_clock_offset`], makes its jobs due earlier); `Some(id)`, a
    /// test clock's, whose jobs wait until that clock is advanced past them.
    pub clock: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledJob {
    pub account: String,
    pub job: JobId,
    pub due_at: i64,
    pub clock: Option<String>,
    /// When a claim may take it (unix milliseconds, real time): its due time on
    /// the account's clock, then the end of its lease while it is held, then its
    /// retry after a failure. `None` for a job on a test clock.
    pub runnable_at: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    /// Claims so far, the current one included.
    pub attempts: i64,
    /// What the last failed attempt said.
    pub last_error: Option<String>,
    /// When it was first scheduled (unix milliseconds, real time).
    pub created_at: i64,
}

impl ScheduledJob {
    /// The lease a claim gave this job, if it holds one.
    pub fn lease(&self) -> Option<JobLease> {
        Some(JobLease {
            account: self.account.clone(),
            job: self.job.clone(),
            owner: self.lease_owner.clone()?,
        })
    }
}

/// A job held by a claimer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    pub account: String,
    pub job: JobId,
    pub owner: String,
}

impl JobLease {
    /// What a commit that finds the lease lost names in its conflict. Object ids
    /// have no spaces, so it is never an object's.
    pub fn label(&self) -> String {
        format!("job {} of {}", self.job.kind, self.job.object)
    }
}

/// Which runnable jobs a claim takes.
#[derive(Debug, Clone)]
pub struct JobClaim {
    /// Written as the lease owner; finishing requires it.
    pub owner: String,
    pub now_ms: i64,
    pub lease_ms: i64,
    pub limit: usize,
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
    /// Events only, and only in [`Store::list_where`]: `Some(false)` keeps events with
    /// a push delivery that has not succeeded (their `pending_webhooks` is not 0),
    /// `Some(true)` the others (Stripe's `delivery_success`).
    pub delivery_success: Option<bool>,
}

/// A value an index row must have for [`Store::list_where`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexValue {
    Exact(String),
    /// Any value starting with this text (Stripe's `customer.*` event wildcard).
    Prefix(String),
}

/// One condition of [`Store::list_where`]: the object has an index row on `field`
/// whose value matches any of `any_of` (or, when `negated`, has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexCondition {
    pub field: String,
    pub any_of: Vec<IndexValue>,
    pub negated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt at `next_attempt_at`.
    Pending,
    Succeeded,
    /// Retries exhausted, or the endpoint went away.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// The delivery of one event to one endpoint. Times are unix milliseconds, real time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub account: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub push: bool,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    /// When it first succeeded; `pending_webhooks` counts push deliveries without it.
    pub succeeded_at: Option<i64>,
}

/// Which due deliveries a claim takes.
#[derive(Debug, Clone)]
pub struct DeliveryClaim {
    /// Written as the lease owner; finishing requires it.
    pub owner: String,
    pub now_ms: i64,
    pub lease_ms: i64,
    pub limit: usize,
    /// `None`: push deliveries of every endpoint (the worker). `Some(id)`: pull
    /// deliveries of that listener.
    pub listener: Option<String>,
    /// How many deliveries of each endpoint this claim may lease; `None`: no cap.
    /// The caller knows what it has in flight per endpoint, and asks only for what
    /// is left of each endpoint's share: a saturated endpoint's rows stay unleased
    /// (no lease waits unused) while other endpoints' rows are taken past them.
    pub shares: Option<EndpointShares>,
}

/// Per-endpoint allowances of a [`DeliveryClaim`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointShares {
    /// For every endpoint not in `endpoints`.
    pub default: usize,
    /// Endpoints with an allowance of their own (0: take none now).
    pub endpoints: Vec<(String, usize)>,
}

impl EndpointShares {
    pub fn of(&self, endpoint: &str) -> usize {
        self.endpoints
            .iter()
            .find(|(id, _)| id == endpoint)
            .map_or(self.default, |(_, n)| *n)
    }
}

/// One HTTP attempt of a delivery, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Storage order; ignored when writing.
    pub seq: i64,
    pub id: String,
    pub account: String,
    pub event_id: String,
    pub endpoint_id: String,
    /// 1 for the first attempt of the delivery.
    pub attempt: i64,
    /// Unix milliseconds, real time.
    pub attempted_at: i64,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// At most 1 KiB of the response body.
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub succeeded: bool,
}

/// What becomes of a delivery after an attempt (or without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    Succeeded,
    /// Pending again, due at this time (unix milliseconds).
    RetryAt(i64),
    Failed,
}

/// Finishing a claimed delivery, committed atomically.
#[derive(Debug, Clone)]
pub struct DeliveryResult {
    pub account: String,
    pub event_id: String,
    pub endpoint_id: String,
    /// The delivery changes only while this owner still holds its lease.
    pub lease_owner: String,
    /// Recorded even when the lease was lost: the attempt happened.
    pub attempt: Option<AttemptRecord>,
    pub next: DeliveryNext,
    pub now_ms: i64,
}

impl DeliveryResult {
    /// The status, next due time and success time the delivery is left with.
    pub fn columns(&self) -> (&'static str, Option<i64>, Option<i64>) {
        match self.next {
            DeliveryNext::Succeeded => {
                (DeliveryStatus::Succeeded.as_str(), None, Some(self.now_ms))
            }
            DeliveryNext::RetryAt(at) => (DeliveryStatus::Pending.as_str(), Some(at), None),
            DeliveryNext::Failed => (DeliveryStatus::Failed.as_str(), None, None),
        }
    }
}

/// Which attempts [`Store::list_attempts`] returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct AttemptQuery {
    pub event_id: Option<String>,
    pub endpoint_id: Option<String>,
    /// Only attempts recorded before the attempt with this id.
    pub starting_after: Option<String>,
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
    /// Moves the account's clock; only ever forward. The account's jobs on its
    /// clock that no one holds become runnable by the new time, in the same
    /// transaction.
    async fn set_clock_offset(&self, account: &str, offset: i64) -> StoreResult<()>;

    async fn get(&self, account: &str, id: &str) -> StoreResult<Option<StoredObject>>;
    async fn list(&self, account: &str, query: &ListQuery) -> StoreResult<Vec<StoredObject>>;
    async fn idempotency_get(
        &self,
        account: &str,
        key: &str,
    ) -> StoreResult<Option<IdempotencyRecord>>;

    /// Commits the batch atomically, with a delivery per event and target that
    /// takes it; returns only once it is durable.
    async fn commit(&self, batch: WriteBatch) -> Result<Committed, CommitError>;

    /// Deletes idempotency records created before `cutoff` (account time is applied by the caller).
    async fn purge_idempotency(&self, account: &str, cutoff: i64) -> StoreResult<u64>;

    /// Like [`Store::list`] without its `filter`: live objects of `query.kind` that
    /// satisfy every condition, newest first, with the query's range, cursor and limit.
    async fn list_where(
        &self,
        account: &str,
        query: &ListQuery,
        conditions: &[IndexCondition],
    ) -> StoreResult<Vec<StoredObject>>;

    /// Leases due pending deliveries whose lease is free (each endpoint's oldest due
    /// first) to `claim.owner`, at most `claim.shares` allows of each endpoint.
    async fn claim_deliveries(&self, claim: &DeliveryClaim) -> StoreResult<Vec<Delivery>>;

    /// Records each attempt and moves each delivery on, all in one transaction (the
    /// delivery worker finishes the attempts that ended meanwhile together). For
    /// each result, `false` when its lease was lost: its attempt is recorded,
    /// nothing else changes.
    async fn finish_deliveries(&self, results: Vec<DeliveryResult>) -> StoreResult<Vec<bool>>;

    /// Gives up every lease `owner` holds (a node shutting down), so others take them at once.
    async fn release_deliveries(&self, owner: &str) -> StoreResult<u64>;

    /// Makes the delivery of an event to an endpoint due now, creating it if needed
    /// (a resend). Its lease, if any, is dropped.
    async fn redeliver(
        &self,
        account: &str,
        event_id: &str,
        endpoint_id: &str,
        push: bool,
        now_ms: i64,
    ) -> StoreResult<()>;

    async fn delivery(
        &self,
        account: &str,
        event_id: &str,
        endpoint_id: &str,
    ) -> StoreResult<Option<Delivery>>;

    /// For each event, its push deliveries that have never succeeded: its
    /// `pending_webhooks`, counted when it is read rather than kept in the event,
    /// which would be rewritten at every delivery.
    async fn pending_webhooks(&self, account: &str, event_ids: &[String]) -> StoreResult<Vec<i64>>;

    async fn list_attempts(
        &self,
        account: &str,
        query: &AttemptQuery,
    ) -> StoreResult<Vec<AttemptRecord>>;

    /// Deletes the account's events created before `cutoff` (account time) with their
    /// index rows, deliveries and attempts; returns how many events went.
    async fn purge_events(&self, account: &str, cutoff: i64) -> StoreResult<u64>;

    /// Leases up to `claim.limit` runnable jobs of any account (the earliest
    /// first) to `claim.owner` until `now_ms + lease_ms`, counting an attempt for
    /// each. A job whose lease ran out is runnable again; several claimers at once
    /// get disjoint jobs.
    async fn claim_jobs(&self, claim: &JobClaim) -> StoreResult<Vec<ScheduledJob>>;

    /// A handler failed: while `lease` is still held, the job is released,
    /// runnable again at `retry_at_ms`, with `error` kept. `false` when the lease
    /// was lost (nothing changes).
    async fn retry_job(&self, lease: &JobLease, retry_at_ms: i64, error: &str)
        -> StoreResult<bool>;

    /// When the next job becomes runnable (unix milliseconds, real time), whether
    /// it is due, held by a lease that ends then, or waiting for a retry.
    async fn next_job_at(&self) -> StoreResult<Option<i64>>;

    async fn job(&self, account: &str, job: &JobId) -> StoreResult<Option<ScheduledJob>>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store a `--database` URL names, running migrations.
pub async fn open(url: &str) -> anyhow::Result<DynStore> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let (path, sync) = sqlite::parse_location(path.trim_start_matches("//"))?;
        Ok(Arc::new(sqlite::SqliteStore::open_with(&path, sync)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        anyhow::bail!("unsupported database URL {url:?}: use sqlite:PATH or postgres://...")
    }
}
