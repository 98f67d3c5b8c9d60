//! SQL both stores send, written once.
//!
//! The two stores keep the same tables, and much of what they send differs only
//! in how a bound parameter is written (`?1` for SQLite, `$1` for PostgreSQL).
//! Such a statement is written here once with `?N`; [`shared!`] makes
//! PostgreSQL's text from it at compile time, so each store still prepares (and
//! caches) one fixed text and formats nothing at run time. Statements built from
//! a query's shape (list pages, attempts) are assembled by a [`Builder`] that
//! numbers each backend's placeholders, asking the [`Dialect`] for the few
//! expressions that really differ (JSON functions, booleans). Rows are read back
//! by the same functions whichever driver returned them ([`Row`]).
//!
//! What differs in substance stays in its store: SQLite's one-text index keys
//! against PostgreSQL's columns, PostgreSQL's multi-row group statements and
//! CTEs, the claims, the purges' working sets.

use std::fmt;

use super::{
    object_data, Account, AttemptQuery, AttemptRecord, Cursor, Delivery, DeliveryStatus,
    IdempotencyRecord, IndexCondition, IndexValue, JobId, ListQuery, ScheduledJob, StoredObject,
};

/// Which backend a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn placeholder_mark(self) -> char {
        match self {
            Dialect::Sqlite => '?',
            Dialect::Postgres => '$',
        }
    }

    /// The condition that keeps live objects of `o`.
    fn not_deleted(self) -> &'static str {
        match self {
            Dialect::Sqlite => "o.deleted = 0",
            Dialect::Postgres => "NOT o.deleted",
        }
    }

    fn false_value(self) -> &'static str {
        match self {
            Dialect::Sqlite => "0",
            Dialect::Postgres => "FALSE",
        }
    }

    /// The (field, value) pairs of `o.index_keys` as a table `i`.
    fn index_keys_of_o(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "(SELECT json_extract(k.value, '$[0]') AS field,
                json_extract(k.value, '$[1]') AS value FROM json_each(o.index_keys) k) i"
            }
            Dialect::Postgres => {
                "(SELECT k->>0 AS field, k->>1 AS value
                FROM json_array_elements(o.index_keys::JSON) k) i"
            }
        }
    }

    /// `i.value` starts with the text bound at `prefix`, `length` characters long.
    fn value_starts_with(self, prefix: Placeholder, length: Placeholder) -> String {
        match self {
            Dialect::Sqlite => format!("substr(i.value, 1, {length}) = {prefix}"),
            Dialect::Postgres => format!("substr(i.value, 1, {length}::BIGINT::INT) = {prefix}"),
        }
    }

    /// Delivery `d` is a push delivery. `+push` on SQLite: without it the planner
    /// may take another index on `push` and count by scanning every push delivery
    /// ever made; the primary key finds an event's few rows.
    fn is_push_delivery(self) -> &'static str {
        match self {
            Dialect::Sqlite => "+d.push = 1",
            Dialect::Postgres => "d.push",
        }
    }
}

/// A statement both stores send, differing only by placeholder syntax.
pub struct Shared {
    sqlite: &'static str,
    postgres: &'static str,
}

impl Shared {
    pub const fn text(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

/// `sql` with every `?` that starts a placeholder (`?` and a digit) made `$`: the
/// same length, so it can be done in a constant.
pub const fn dollar_placeholders<const N: usize>(sql: &str) -> [u8; N] {
    let bytes = sql.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        let starts_placeholder = bytes[i] == b'?' && i + 1 < N && bytes[i + 1].is_ascii_digit();
        out[i] = if starts_placeholder { b'$' } else { bytes[i] };
        i += 1;
    }
    out
}

/// A [`Shared`] statement from its SQLite text.
macro_rules! shared {
    ($sql:expr) => {{
        const SQLITE: &str = $sql;
        const POSTGRES_BYTES: [u8; SQLITE.len()] = dollar_placeholders(SQLITE);
        const POSTGRES: &str = match std::str::from_utf8(&POSTGRES_BYTES) {
            Ok(text) => text,
            Err(_) => panic!("swapping ASCII placeholders keeps the text UTF-8"),
        };
        Shared {
            sqlite: SQLITE,
            postgres: POSTGRES,
        }
    }};
}

/// The columns [`account`] reads.
macro_rules! account_columns {
    () => {
        "id, secret_key, publishable_key, clock_offset, created"
    };
}

/// The columns [`object`] reads, of objects as `o` when `$prefix` is `"o."`.
macro_rules! object_columns {
    ($prefix:literal) => {
        concat!(
            $prefix,
            "seq, ",
            $prefix,
            "id, ",
            $prefix,
            "kind, ",
            $prefix,
            "version, ",
            $prefix,
            "created, ",
            $prefix,
            "deleted, ",
            $prefix,
            "data"
        )
    };
}

/// The columns [`delivery`] reads.
macro_rules! delivery_columns {
    () => {
        "account, event_id, endpoint_id, push, status, attempts, next_attempt_at, \
         lease_owner, lease_expires_at, succeeded_at"
    };
}

pub const DELIVERY_COLUMNS: &str = delivery_columns!();

/// The columns [`scheduled_job`] reads, of jobs as `j` when `$prefix` is `"j."`.
macro_rules! job_columns {
    ($prefix:literal) => {
        concat!(
            $prefix,
            "account, ",
            $prefix,
            "kind, ",
            $prefix,
            "object, ",
            $prefix,
            "due_at, ",
            $prefix,
            "clock, ",
            $prefix,
            "runnable_at, ",
            $prefix,
            "lease_owner, ",
            $prefix,
            "lease_expires_at, ",
            $prefix,
            "attempts, ",
            $prefix,
            "last_error, ",
            $prefix,
            "created_at"
        )
    };
}

pub const JOB_COLUMNS: &str = job_columns!("");
pub const JOB_COLUMNS_OF_J: &str = job_columns!("j.");

pub const META_GET: Shared = shared!("SELECT value FROM meta WHERE key = ?1");
pub const META_SET: Shared = shared!(
    "INSERT INTO meta (key, value) VALUES (?1, ?2)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value"
);
pub const CREATE_ACCOUNT: Shared = shared!(
    "INSERT INTO accounts (id, secret_key, publishable_key, clock_offset, created)
     VALUES (?1, ?2, ?3, ?4, ?5)"
);
pub const ACCOUNT: Shared = shared!(concat!(
    "SELECT ",
    account_columns!(),
    " FROM accounts WHERE id = ?1"
));
pub const ACCOUNT_BY_KEY: Shared = shared!(concat!(
    "SELECT ",
    account_columns!(),
    " FROM accounts WHERE secret_key = ?1 OR publishable_key = ?1"
));
pub const ACCOUNTS: Shared = shared!(concat!(
    "SELECT ",
    account_columns!(),
    " FROM accounts ORDER BY created, id"
));
pub const OBJECT: Shared = shared!(concat!(
    "SELECT ",
    object_columns!(""),
    " FROM objects WHERE id = ?1 AND account = ?2"
));
pub const IDEMPOTENCY_RECORD: Shared = shared!(
    "SELECT key, fingerprint, status, body, created FROM idempotency
     WHERE account = ?1 AND key = ?2"
);
/// Writes a request's idempotency record unless its key is held by a record
/// created at or after `?7` (account time): no row changes then.
pub const UPSERT_IDEMPOTENCY: Shared = shared!(
    "INSERT INTO idempotency (account, key, fingerprint, status, body, created)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT (account, key) DO UPDATE SET
        fingerprint = excluded.fingerprint, status = excluded.status,
        body = excluded.body, created = excluded.created
     WHERE idempotency.created < ?7"
);
pub const PURGE_IDEMPOTENCY: Shared =
    shared!("DELETE FROM idempotency WHERE account = ?1 AND created < ?2");
pub const RELEASE_DELIVERIES: Shared = shared!(
    "UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires_at = NULL
     WHERE lease_owner = ?1"
);
/// Makes a delivery due at `?5`, creating it if needed; its lease is dropped.
pub const REDELIVER: Shared = shared!(
    "INSERT INTO webhook_deliveries
        (account, event_id, endpoint_id, push, status, attempts, next_attempt_at, created_at)
     VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)
     ON CONFLICT (event_id, endpoint_id) DO UPDATE SET
        status = 'pending', next_attempt_at = excluded.next_attempt_at,
        lease_owner = NULL, lease_expires_at = NULL
     WHERE webhook_deliveries.account = excluded.account"
);
pub const DELIVERY: Shared = shared!(concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE event_id = ?1 AND endpoint_id = ?2 AND account = ?3"
));
/// The ids of the account's oldest events (at most `?3` looked at) created
/// before `?2`. An account's events are stored in the order of its clock, so the
/// doomed ones come first, and the writer is never held up by a scan of every
/// event.
pub const OLDEST_EVENTS: Shared = shared!(
    "SELECT id FROM (SELECT id, created FROM objects
                     WHERE account = ?1 AND kind = 'event' ORDER BY seq LIMIT ?3) oldest
     WHERE created < ?2"
);

pub const JOB: Shared = shared!(concat!(
    "SELECT ",
    job_columns!(""),
    " FROM scheduled_jobs WHERE account = ?1 AND kind = ?2 AND object = ?3"
));
/// Releases a job its owner `?4` still holds, runnable again at `?5`, keeping
/// the error `?6`.
pub const RETRY_JOB: Shared = shared!(
    "UPDATE scheduled_jobs SET lease_owner = NULL, lease_expires_at = NULL,
        runnable_at = ?5, last_error = ?6
     WHERE account = ?1 AND kind = ?2 AND object = ?3 AND lease_owner = ?4"
);
/// The earliest runnable time, read off the end of the `runnable_at` index.
pub const NEXT_JOB_AT: Shared = shared!("SELECT MIN(runnable_at) FROM scheduled_jobs");

/// One bound value of a built statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    Int(i64),
}

impl From<&str> for Arg {
    fn from(text: &str) -> Arg {
        Arg::Text(text.to_string())
    }
}

impl From<String> for Arg {
    fn from(text: String) -> Arg {
        Arg::Text(text)
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Arg {
        Arg::Int(n)
    }
}

impl From<usize> for Arg {
    fn from(n: usize) -> Arg {
        Arg::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl Arg {
    pub fn as_postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Arg::Text(s) => s,
            Arg::Int(i) => i,
        }
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Text(s) => s.to_sql(),
            Arg::Int(i) => i.to_sql(),
        }
    }
}

/// The placeholder of the n-th bound value, as its dialect writes it.
#[derive(Debug, Clone, Copy)]
pub struct Placeholder {
    mark: char,
    n: usize,
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.mark, self.n)
    }
}

/// A statement assembled from a query's shape: conditions come from the shape
/// only, every value is bound.
pub struct Builder {
    dialect: Dialect,
    sql: String,
    args: Vec<Arg>,
}

impl Builder {
    pub fn new(dialect: Dialect, start: &str) -> Self {
        Builder {
            dialect,
            sql: start.to_string(),
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) {
        self.sql.push_str(text);
    }

    /// Binds a value; its placeholder goes where the caller writes it.
    pub fn bind(&mut self, arg: impl Into<Arg>) -> Placeholder {
        self.args.push(arg.into());
        Placeholder {
            mark: self.dialect.placeholder_mark(),
            n: self.args.len(),
        }
    }

    /// Appends ` AND {condition} {placeholder}` binding `arg`.
    pub fn and(&mut self, condition: &str, arg: impl Into<Arg>) {
        let p = self.bind(arg);
        self.sql.push_str(&format!(" AND {condition} {p}"));
    }

    /// ` ORDER BY ... LIMIT n`, the limit bound.
    fn order_and_limit(&mut self, column: &str, order: &str, limit: usize) {
        let p = self.bind(limit);
        self.sql
            .push_str(&format!(" ORDER BY {column} {order} LIMIT {p}"));
    }

    /// The page bounds of `query` on `column` and its order, limited.
    fn page(&mut self, query: &ListQuery, column: &str) {
        let (bounds, order) = page_bounds(query, column);
        for (condition, v) in bounds {
            self.and(&condition, v);
        }
        match self.dialect {
            // SQLite list pages keep their size in the text, as they always
            // have: its planner takes a literal limit into account, and a few
            // page sizes make a few cached statements.
            Dialect::Sqlite => {
                self.sql
                    .push_str(&format!(" ORDER BY {column} {order} LIMIT {}", query.limit));
            }
            // One generic plan for every page size.
            Dialect::Postgres => self.order_and_limit(column, order, query.limit),
        }
    }

    pub fn finish(self) -> (String, Vec<Arg>) {
        (self.sql, self.args)
    }
}

/// The bounds a list page puts on its seq `column` and on `created`, as
/// (condition, value) pairs, and the order.
fn page_bounds(query: &ListQuery, column: &str) -> (Vec<(String, i64)>, &'static str) {
    let c = query.created;
    let mut bounds: Vec<(String, i64)> = [
        ("o.created >", c.gt),
        ("o.created >=", c.gte),
        ("o.created <", c.lt),
        ("o.created <=", c.lte),
    ]
    .into_iter()
    .filter_map(|(cond, v)| v.map(|v| (cond.to_string(), v)))
    .collect();
    let order = match query.cursor {
        Cursor::Newest => "DESC",
        Cursor::Before(seq) => {
            bounds.push((format!("{column} <"), seq));
            "DESC"
        }
        Cursor::After(seq) => {
            bounds.push((format!("{column} >"), seq));
            "ASC"
        }
    };
    (bounds, order)
}

/// The SQL of one list page. A page filtered by an index row is read through the
/// store's own index: `filtered` writes its FROM and WHERE (the account bound at
/// the placeholder it is given, the filter's field and value) and returns the
/// seq column that orders the page.
pub fn list(
    dialect: Dialect,
    account: &str,
    query: &ListQuery,
    filtered: impl FnOnce(&mut Builder, Placeholder, &str, &str) -> &'static str,
) -> (String, Vec<Arg>) {
    let mut b = Builder::new(dialect, concat!("SELECT ", object_columns!("o."), " FROM "));
    let account = b.bind(account);
    let column = match &query.filter {
        Some((field, value)) => filtered(&mut b, account, field, value),
        None => {
            let kind = b.bind(query.kind.as_str());
            b.push(&format!(
                "objects o WHERE o.account = {account} AND o.kind = {kind} AND {}",
                dialect.not_deleted()
            ));
            "o.seq"
        }
    };
    b.page(query, column);
    b.finish()
}

/// The SQL of [`Store::list_where`](super::Store::list_where).
pub fn list_where(
    dialect: Dialect,
    account: &str,
    query: &ListQuery,
    conditions: &[IndexCondition],
) -> (String, Vec<Arg>) {
    let mut b = Builder::new(
        dialect,
        concat!("SELECT ", object_columns!("o."), " FROM objects o WHERE "),
    );
    let (account, kind) = (b.bind(account), b.bind(query.kind.as_str()));
    b.push(&format!(
        "o.account = {account} AND o.kind = {kind} AND {}",
        dialect.not_deleted()
    ));
    for condition in conditions {
        let field = b.bind(condition.field.as_str());
        let mut alternatives = Vec::new();
        for value in &condition.any_of {
            match value {
                IndexValue::Exact(v) => {
                    let p = b.bind(v.as_str());
                    alternatives.push(format!("i.value = {p}"));
                }
                IndexValue::Prefix(prefix) => {
                    let p = b.bind(prefix.as_str());
                    let length = b.bind(prefix.chars().count());
                    alternatives.push(dialect.value_starts_with(p, length));
                }
            }
        }
        let any = if alternatives.is_empty() {
            dialect.false_value().to_string()
        } else {
            alternatives.join(" OR ")
        };
        let not = if condition.negated { "NOT " } else { "" };
        // Checked against the candidate row's own keys: a page costs the rows it
        // walks, however many objects share a value.
        b.push(&format!(
            " AND {not}EXISTS (SELECT 1 FROM {} WHERE i.field = {field} AND ({any}))",
            dialect.index_keys_of_o()
        ));
    }
    if let Some(success) = query.delivery_success {
        let not = if success { "NOT " } else { "" };
        b.push(&format!(
            " AND {not}EXISTS (SELECT 1 FROM webhook_deliveries d
                WHERE d.event_id = o.id AND d.account = o.account AND {}
                  AND d.succeeded_at IS NULL)",
            dialect.is_push_delivery()
        ));
    }
    let (bounds, order) = page_bounds(query, "o.seq");
    for (condition, v) in bounds {
        b.and(&condition, v);
    }
    b.order_and_limit("o.seq", order, query.limit);
    b.finish()
}

/// The SQL of [`Store::list_attempts`](super::Store::list_attempts), newest first.
pub fn attempts(dialect: Dialect, account: &str, query: &AttemptQuery) -> (String, Vec<Arg>) {
    let mut b = Builder::new(
        dialect,
        "SELECT seq, id, account, event_id, endpoint_id, attempt, attempted_at, status_code,
                latency_ms, response_body, error, succeeded
         FROM webhook_attempts WHERE account = ",
    );
    let account = b.bind(account);
    b.push(&account.to_string());
    if let Some(event) = &query.event_id {
        b.and("event_id =", event.as_str());
    }
    if let Some(endpoint) = &query.endpoint_id {
        b.and("endpoint_id =", endpoint.as_str());
    }
    if let Some(after) = &query.starting_after {
        let p = b.bind(after.as_str());
        b.push(&format!(
            " AND seq < (SELECT seq FROM webhook_attempts WHERE id = {p} AND account = {account})"
        ));
    }
    b.order_and_limit("seq", "DESC", query.limit);
    b.finish()
}

// ---------------------------------------------------------------------------
// Reading rows.

/// A value either driver can read from a column.
pub trait Column: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> {}

impl<T> Column for T where T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> {}

/// A result row of either driver, read by position.
pub trait Row {
    type Error;
    fn column<T: Column>(&self, i: usize) -> Result<T, Self::Error>;
}

impl Row for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn column<T: Column>(&self, i: usize) -> Result<T, rusqlite::Error> {
        self.get(i)
    }
}

impl Row for tokio_postgres::Row {
    type Error = tokio_postgres::Error;
    fn column<T: Column>(&self, i: usize) -> Result<T, tokio_postgres::Error> {
        self.try_get(i)
    }
}

/// A row of `object_columns!`.
pub fn object<R: Row>(row: &R) -> Result<StoredObject, R::Error> {
    Ok(StoredObject {
        seq: row.column(0)?,
        id: row.column(1)?,
        kind: row.column(2)?,
        version: row.column(3)?,
        created: row.column(4)?,
        deleted: row.column(5)?,
        data: row.column::<ObjectData>(6)?.0,
    })
}

/// A row of `account_columns!`.
pub fn account<R: Row>(row: &R) -> Result<Account, R::Error> {
    Ok(Account {
        id: row.column(0)?,
        secret_key: row.column(1)?,
        publishable_key: row.column(2)?,
        clock_offset: row.column(3)?,
        created: row.column(4)?,
    })
}

/// A row of [`IDEMPOTENCY_RECORD`].
pub fn idempotency_record<R: Row>(row: &R) -> Result<IdempotencyRecord, R::Error> {
    Ok(IdempotencyRecord {
        key: row.column(0)?,
        fingerprint: row.column(1)?,
        status: row.column::<HttpStatus>(2)?.0,
        body: row.column(3)?,
        created: row.column(4)?,
    })
}

/// A row of [`DELIVERY_COLUMNS`].
pub fn delivery<R: Row>(row: &R) -> Result<Delivery, R::Error> {
    Ok(Delivery {
        account: row.column(0)?,
        event_id: row.column(1)?,
        endpoint_id: row.column(2)?,
        push: row.column(3)?,
        status: row.column(4)?,
        attempts: row.column(5)?,
        next_attempt_at: row.column(6)?,
        lease_owner: row.column(7)?,
        lease_expires_at: row.column(8)?,
        succeeded_at: row.column(9)?,
    })
}

/// A row of [`attempts`].
pub fn attempt<R: Row>(row: &R) -> Result<AttemptRecord, R::Error> {
    Ok(AttemptRecord {
        seq: row.column(0)?,
        id: row.column(1)?,
        account: row.column(2)?,
        event_id: row.column(3)?,
        endpoint_id: row.column(4)?,
        attempt: row.column(5)?,
        attempted_at: row.column(6)?,
        status_code: row.column(7)?,
        latency_ms: row.column(8)?,
        response_body: row.column(9)?,
        error: row.column(10)?,
        succeeded: row.column(11)?,
    })
}

/// A row of [`JOB_COLUMNS`].
pub fn scheduled_job<R: Row>(row: &R) -> Result<ScheduledJob, R::Error> {
    Ok(ScheduledJob {
        account: row.column(0)?,
        job: JobId {
            kind: row.column(1)?,
            object: row.column(2)?,
        },
        due_at: row.column(3)?,
        clock: row.column(4)?,
        runnable_at: row.column(5)?,
        lease_owner: row.column(6)?,
        lease_expires_at: row.column(7)?,
        attempts: row.column(8)?,
        last_error: row.column(9)?,
        created_at: row.column(10)?,
    })
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// An object's JSON read back from the `data` column: packed
/// ([`object_data::pack`]) since objects were compressed; JSON text before (a
/// TEXT value in SQLite; PostgreSQL converted its column to bytes).
pub struct ObjectData(pub String);

impl rusqlite::types::FromSql for ObjectData {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::{FromSqlError, ValueRef};
        match value {
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => object_data::unpack(bytes)
                .map(ObjectData)
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

impl<'a> tokio_postgres::types::FromSql<'a> for ObjectData {
    fn from_sql(_: &tokio_postgres::types::Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(ObjectData(object_data::unpack(raw)?))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::BYTEA
    }
}

/// An idempotency record's HTTP status (INTEGER in both stores).
struct HttpStatus(u16);

impl rusqlite::types::FromSql for HttpStatus {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let n = value.as_i64()?;
        u16::try_from(n)
            .map(HttpStatus)
            .map_err(|_| rusqlite::types::FromSqlError::OutOfRange(n))
    }
}

impl<'a> tokio_postgres::types::FromSql<'a> for HttpStatus {
    fn from_sql(ty: &tokio_postgres::types::Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let n = i32::from_sql(ty, raw)?;
        Ok(HttpStatus(u16::try_from(n).map_err(|_| {
            format!("an idempotency record has an invalid status {n}")
        })?))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i32 as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

fn unknown_status(text: &str) -> String {
    format!("unknown delivery status {text:?}")
}

impl rusqlite::types::FromSql for DeliveryStatus {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        DeliveryStatus::parse(text)
            .ok_or_else(|| rusqlite::types::FromSqlError::Other(unknown_status(text).into()))
    }
}

impl<'a> tokio_postgres::types::FromSql<'a> for DeliveryStatus {
    fn from_sql(ty: &tokio_postgres::types::Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let text = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
        DeliveryStatus::parse(text).ok_or_else(|| unknown_status(text).into())
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CreatedRange;

    #[test]
    fn postgres_texts_differ_only_in_placeholders() {
        assert_eq!(
            UPSERT_IDEMPOTENCY.text(Dialect::Postgres).replace('$', "?"),
            UPSERT_IDEMPOTENCY.text(Dialect::Sqlite)
        );
        assert!(REDELIVER
            .text(Dialect::Postgres)
            .contains("($1, $2, $3, $4, 'pending', 0, $5, $5)"));
        // JSON paths are not placeholders.
        assert!(Dialect::Sqlite.index_keys_of_o().contains("'$[0]'"));
    }

    #[test]
    fn list_binds_every_value() {
        let query = ListQuery {
            kind: "customer".into(),
            filter: Some(("email".into(), "a@b.c".into())),
            created: CreatedRange {
                gt: Some(1),
                gte: None,
                lt: Some(9),
                lte: None,
            },
            cursor: Cursor::After(42),
            limit: 11,
            delivery_success: None,
        };
        let (sql, args) = list(
            Dialect::Postgres,
            "acct_1",
            &query,
            |b, account, field, value| {
                let (field, value) = (b.bind(field), b.bind(value));
                b.push(&format!("object_index i WHERE i.account = {account} AND i.field = {field} AND i.value = {value}"));
                "i.seq"
            },
        );
        assert_eq!(args.len(), 7);
        assert!(sql.contains("o.created > $4"), "{sql}");
        assert!(sql.contains("o.created < $5"), "{sql}");
        assert!(sql.contains("i.seq > $6"), "{sql}");
        assert!(sql.ends_with("ORDER BY i.seq ASC LIMIT $7"), "{sql}");
        assert!(!sql.contains("a@b.c") && !sql.contains("42"), "{sql}");

        let unfiltered = ListQuery {
            kind: "charge".into(),
            limit: 3,
            ..Default::default()
        };
        let (sql, args) = list(Dialect::Postgres, "acct_1", &unfiltered, |_, _, _, _| "");
        assert_eq!(args.len(), 3);
        assert!(sql.contains("NOT o.deleted"), "{sql}");
        assert!(sql.ends_with("ORDER BY o.seq DESC LIMIT $3"), "{sql}");
        let (sql, args) = list(Dialect::Sqlite, "acct_1", &unfiltered, |_, _, _, _| "");
        assert_eq!(args, [Arg::from("acct_1"), Arg::from("charge")]);
        assert!(
            sql.contains("o.account = ?1 AND o.kind = ?2 AND o.deleted = 0"),
            "{sql}"
        );
        assert!(sql.ends_with("ORDER BY o.seq DESC LIMIT 3"), "{sql}");
    }
}
