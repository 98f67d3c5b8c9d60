//! The unit of work of one request.
//!
//! A resource operation reads objects through [`Ctx`], changes them, and records
//! the new versions and the events they cause. Nothing reaches the store until the
//! http layer commits the whole [`WriteBatch`] (with the idempotency record) in one
//! transaction. Objects written earlier in the same request are read back from the
//! pending writes, so an operation sees its own changes. Work the change calls
//! for later (a debit's settlement) is scheduled through the Ctx too
//! ([`Ctx::schedule`]) and commits with it.

use std::collections::HashMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::ids;
use crate::store::{
    Account, DynStore, EmittedEvent, IndexCondition, JobId, JobSchedule, ListQuery, ObjectWrite,
    StoredObject, WriteBatch,
};

/// The API version payground speaks and stamps on events.
pub const API_VERSION: &str = "2024-04-10";

/// Stripe's test clock object, whose `frozen_time` is "now" for what is attached
/// to it.
const TEST_CLOCK: &str = "test_helpers.test_clock";

/// A Stripe object stored by payground: its serde form is exactly Stripe's JSON,
/// and its JSON schema (derived from the same type) is what the OpenAPI document
/// promises for it.
pub trait StripeObject: Serialize + DeserializeOwned + JsonSchema {
    /// The `object` value, also the storage kind (`customer`, `payment_intent`).
    const OBJECT: &'static str;
    /// The prefixes of its ids, without the `_` (`&["ch", "py"]`): the first is what
    /// new ids get; an id with another prefix is never looked up as this type.
    const PREFIXES: &'static [&'static str];
    /// The fields `expand[]` may name on it: Stripe's `x-expandableFields` of the
    /// object, limited to the fields this type has. A dotted entry
    /// (`invoice_settings.default_payment_method`) is a field of a nested hash that
    /// Stripe's spec lets be expanded there.
    const EXPANDABLE: &'static [&'static str];
    fn id(&self) -> &str;
    fn created(&self) -> i64;
    /// (field, value) pairs filtered lists look up, e.g. ("customer", "cus_1").
    fn index(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn is_deleted(&self) -> bool {
        false
    }
}

/// Who is asking: decides what a response may reveal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Secret,
    Publishable,
}

#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub request_id: String,
    pub idempotency_key: Option<String>,
    pub key_kind: KeyKind,
}

/// An object as this request saved it: the exact text stored, which its events
/// embed, and its JSON tree for the response and `previous_attributes`, parsed from
/// that text only when asked for. Most saves of a payment (its PaymentMethod,
/// charge, balance transaction, the PaymentIntent's first version) are never looked
/// at as a tree, and building one cost more than writing the text.
#[derive(Debug, Clone)]
pub struct Saved {
    data: String,
    value: std::cell::OnceCell<Value>,
}

impl Saved {
    fn tree(&self) -> &Value {
        // The text was written by serde_json from a serialisable object a moment
        // ago, so it parses; Null is unreachable.
        self.value
            .get_or_init(|| serde_json::from_str(&self.data).unwrap_or(Value::Null))
    }

    pub fn into_value(self) -> Value {
        self.tree();
        self.value.into_inner().unwrap_or(Value::Null)
    }
}

impl std::ops::Deref for Saved {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.tree()
    }
}

impl From<Saved> for Value {
    fn from(saved: Saved) -> Value {
        saved.into_value()
    }
}

/// What an operation answers with: a JSON tree, or an object's text as it was
/// written. Handlers that answer with the object they just saved hand its text
/// over as it is: parsing it back into a tree only to write that out again was
/// a tenth of a confirmed payment's instructions. A text is parsed only when the
/// request asks for expansions.
#[derive(Debug)]
pub enum Answer {
    Tree(Value),
    Text(String),
}

impl Answer {
    pub fn into_value(self) -> Result<Value, serde_json::Error> {
        match self {
            Answer::Tree(value) => Ok(value),
            Answer::Text(text) => serde_json::from_str(&text),
        }
    }
}

impl From<Value> for Answer {
    fn from(value: Value) -> Answer {
        Answer::Tree(value)
    }
}

impl From<Saved> for Answer {
    fn from(saved: Saved) -> Answer {
        Answer::Text(saved.data)
    }
}

/// A JSON tree as text. `serde_json::to_string` rather than `Value`'s `Display`,
/// which goes through `fmt::Write` one token at a time and is much slower; writing
/// a `Value` cannot fail (its map keys are strings), so the fallback is never taken.
pub fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

/// Appends `value` as JSON (a string escaped, `None` as `null`).
pub fn push_json(out: &mut String, value: &(impl Serialize + ?Sized)) {
    match serde_json::to_string(value) {
        Ok(text) => out.push_str(&text),
        Err(_) => out.push_str("null"),
    }
}

/// How the server was started, as operations need to know it.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// How long a bank debit stays `processing` before it settles
    /// (`--settlement-delay`).
    pub settlement_delay: std::time::Duration,
}

pub struct Ctx {
    pub store: DynStore,
    pub account: Arc<Account>,
    /// The account's time when the request started: "now" for every object on
    /// the account's clock (see [`Ctx::now_on`]).
    pub now: i64,
    pub request: RequestInfo,
    pub public_url: String,
    pub settings: Arc<Settings>,
    /// Versions of objects this request read, for optimistic concurrency.
    versions: HashMap<String, i64>,
    /// Latest pending write per id, in first-write order.
    writes: Vec<ObjectWrite>,
    write_index: HashMap<String, usize>,
    events: Vec<EmittedEvent>,
    /// Jobs scheduled, and jobs removed, by this unit of work.
    jobs: Vec<JobSchedule>,
    cancelled_jobs: Vec<JobId>,
    /// The operation fails, and yet its writes stand: see [`Ctx::commit_with_error`].
    commit_with_error: bool,
}

/// Whether `id` is `<prefix>_...` for one of `T`'s prefixes.
fn has_prefix<T: StripeObject>(id: &str) -> bool {
    has_any_prefix(id, T::PREFIXES)
}

/// Whether `id` is `<prefix>_...` for one of `prefixes`.
pub fn has_any_prefix(id: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|prefix| {
        id.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('_'))
    })
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    ApiError::internal("store read failed", err)
}

impl Ctx {
    pub fn new(
        store: DynStore,
        account: Arc<Account>,
        now: i64,
        request: RequestInfo,
        public_url: String,
        settings: Arc<Settings>,
    ) -> Self {
        Ctx {
            store,
            account,
            now,
            request,
            public_url,
            settings,
            versions: HashMap::new(),
            writes: Vec::new(),
            write_index: HashMap::new(),
            events: Vec::new(),
            jobs: Vec::new(),
            cancelled_jobs: Vec::new(),
            commit_with_error: false,
        }
    }

    pub fn account_id(&self) -> &str {
        &self.account.id
    }

    /// The object with this id as JSON text, pending writes first.
    async fn raw(&mut self, id: &str) -> Result<Option<(String, bool)>, ApiError> {
        if let Some(&i) = self.write_index.get(id) {
            let w = &self.writes[i];
            return Ok(Some((w.data.clone(), w.deleted)));
        }
        let found: Option<StoredObject> = self
            .store
            .get(&self.account.id, id)
            .await
            .map_err(internal)?;
        Ok(found.map(|o| {
            self.versions.entry(o.id.clone()).or_insert(o.version);
            (o.data, o.deleted)
        }))
    }

    /// Loads an object of type `T` (deleted ones included), or `None`.
    pub async fn find<T: StripeObject>(&mut self, id: &str) -> Result<Option<T>, ApiError> {
        if !has_prefix::<T>(id) {
            return Ok(None);
        }
        match self.raw(id).await? {
            Some((data, _)) => serde_json::from_str(&data)
                .map(Some)
                .map_err(|e| ApiError::internal("stored object does not decode", e)),
            None => Ok(None),
        }
    }

    /// Loads a live object or fails with Stripe's 404 (`No such customer: 'cus_1'`).
    pub async fn fetch<T: StripeObject>(&mut self, id: &str) -> Result<T, ApiError> {
        match self.find::<T>(id).await? {
            Some(obj) if !obj.is_deleted() => Ok(obj),
            _ => Err(ApiError::no_such(T::OBJECT, id)),
        }
    }

    /// A live object of type `T` as the text it was saved as, or Stripe's 404. A
    /// retrieve answers with it as a list page does, without decoding the text
    /// into `T` and encoding it again (a third of a GET's work).
    pub async fn fetch_text<T: StripeObject>(&mut self, id: &str) -> Result<String, ApiError> {
        if has_prefix::<T>(id) {
            if let Some((data, false)) = self.raw(id).await? {
                return Ok(data);
            }
        }
        Err(ApiError::no_such(T::OBJECT, id))
    }

    /// Any object by id as JSON, for expansion.
    pub async fn find_value(&mut self, id: &str) -> Result<Option<Value>, ApiError> {
        match self.raw(id).await? {
            Some((data, _)) => serde_json::from_str(&data)
                .map(Some)
                .map_err(|e| ApiError::internal("stored object does not decode", e)),
            None => Ok(None),
        }
    }

    /// Whether this request has written the object.
    pub fn is_pending(&self, id: &str) -> bool {
        self.write_index.contains_key(id)
    }

    /// Whether this request created the object (written here, never read from the store).
    pub fn is_new(&self, id: &str) -> bool {
        self.write_index.contains_key(id) && !self.versions.contains_key(id)
    }

    /// Records a new object or a new version of one this request loaded.
    pub fn save<T: StripeObject>(&mut self, object: &T) -> Result<Saved, ApiError> {
        debug_assert!(
            has_prefix::<T>(object.id()),
            "{} {} has none of the prefixes {:?}",
            T::OBJECT,
            object.id(),
            T::PREFIXES
        );
        let data = serde_json::to_string(object)
            .map_err(|e| ApiError::internal("object does not encode", e))?;
        let id = object.id().to_string();
        let write = ObjectWrite {
            expected_version: self.versions.get(&id).copied(),
            id,
            kind: T::OBJECT.to_string(),
            created: object.created(),
            data: data.clone(),
            index: object.index(),
            deleted: object.is_deleted(),
        };
        self.push_write(write);
        Ok(Saved {
            data,
            value: std::cell::OnceCell::new(),
        })
    }

    fn push_write(&mut self, write: ObjectWrite) {
        match self.write_index.get(&write.id) {
            Some(&i) => {
                // A second write of the same object in one request replaces the first
                // but keeps the version check of the read that preceded both.
                let expected = self.writes[i].expected_version;
                self.writes[i] = ObjectWrite {
                    expected_version: expected,
                    ..write
                };
            }
            None => {
                self.write_index.insert(write.id.clone(), self.writes.len());
                self.writes.push(write);
            }
        }
    }

    /// Records an event for a state change; it commits with the change. The event
    /// embeds the object's text exactly as it was saved, rather than serialising the
    /// object again (three events per payment made this a sixth of a confirm's work).
    pub fn emit(&mut self, event_type: &str, object: &Saved, previous_attributes: Option<Value>) {
        self.emit_text(event_type, &object.data, previous_attributes);
    }

    /// [`Ctx::emit`] for an object that was not saved by this request (a deleted
    /// object's last state, for instance).
    pub fn emit_value(
        &mut self,
        event_type: &str,
        object: &Value,
        previous_attributes: Option<Value>,
    ) {
        self.emit_text(event_type, &json_text(object), previous_attributes);
    }

    fn emit_text(&mut self, event_type: &str, object: &str, previous_attributes: Option<Value>) {
        let id = ids::new_id("evt");
        let previous = previous_attributes.as_ref().map(json_text);
        let request_id = (!self.request.request_id.is_empty()).then_some(&self.request.request_id);
        // Stripe's field order, as the `json!` tree this replaces produced it.
        let mut data = String::with_capacity(object.len() + 320);
        data.push_str("{\"id\":");
        push_json(&mut data, &id);
        data.push_str(",\"object\":\"event\",\"api_version\":");
        push_json(&mut data, API_VERSION);
        data.push_str(",\"created\":");
        data.push_str(&self.now.to_string());
        data.push_str(",\"data\":{\"object\":");
        data.push_str(object);
        if let Some(previous) = &previous {
            data.push_str(",\"previous_attributes\":");
            data.push_str(previous);
        }
        data.push_str("},\"livemode\":false,\"pending_webhooks\":0,\"request\":{\"id\":");
        push_json(&mut data, &request_id);
        data.push_str(",\"idempotency_key\":");
        push_json(&mut data, &self.request.idempotency_key);
        data.push_str("},\"type\":");
        push_json(&mut data, event_type);
        data.push('}');
        self.push_write(ObjectWrite {
            id: id.clone(),
            kind: "event".into(),
            created: self.now,
            data,
            expected_version: None,
            index: vec![("type".into(), event_type.to_string())],
            deleted: false,
        });
        self.events.push(EmittedEvent {
            id,
            event_type: event_type.to_string(),
        });
    }

    /// One page of a list, resolving Stripe's cursors to storage positions.
    pub async fn list_page(
        &mut self,
        query: ListQuery,
        starting_after: Option<&str>,
        ending_before: Option<&str>,
    ) -> Result<Vec<StoredObject>, ApiError> {
        self.list_page_where(query, &[], starting_after, ending_before)
            .await
    }

    /// [`Ctx::list_page`] of the objects that also satisfy every condition, for
    /// lists that take several filters at once (a product's active recurring
    /// prices), in place of `query.filter`; without conditions it is the indexed
    /// list of `query.filter`.
    pub async fn list_page_where(
        &mut self,
        mut query: ListQuery,
        conditions: &[IndexCondition],
        starting_after: Option<&str>,
        ending_before: Option<&str>,
    ) -> Result<Vec<StoredObject>, ApiError> {
        use crate::store::Cursor;
        let cursor_seq =
            |param: &'static str, found: Option<StoredObject>, id: &str, kind: &str| match found {
                Some(o) if o.kind == kind => Ok(o.seq),
                _ => Err(ApiError::no_such(kind, id).with_param(param)),
            };
        if let Some(id) = starting_after {
            let found = self
                .store
                .get(&self.account.id, id)
                .await
                .map_err(internal)?;
            query.cursor = Cursor::Before(cursor_seq("starting_after", found, id, &query.kind)?);
        } else if let Some(id) = ending_before {
            let found = self
                .store
                .get(&self.account.id, id)
                .await
                .map_err(internal)?;
            query.cursor = Cursor::After(cursor_seq("ending_before", found, id, &query.kind)?);
        }
        let rows = if conditions.is_empty() {
            self.store.list(&self.account.id, &query).await
        } else {
            self.store
                .list_where(&self.account.id, &query, conditions)
                .await
        };
        rows.map_err(internal)
    }

    /// The time on `clock` as this unit of work sees it: the account's (`None`:
    /// [`Ctx::now`]), or a test clock's frozen time, read from the clock object
    /// (pending writes first). Objects attached to a test clock read their time
    /// through it, as their jobs are due on it.
    pub async fn now_on(&mut self, clock: Option<&str>) -> Result<i64, ApiError> {
        let Some(id) = clock else {
            return Ok(self.now);
        };
        let frozen = self
            .find_value(id)
            .await?
            .and_then(|clock| clock.get("frozen_time").and_then(Value::as_i64));
        frozen.ok_or_else(|| ApiError::no_such(TEST_CLOCK, id))
    }

    /// Schedules job `kind` for `object`, due at `due_at` (unix seconds on the
    /// account's clock): it commits with this unit of work or not at all, and the
    /// scheduler runs its handler once it is due. Scheduling the same job again
    /// replaces its due time.
    pub fn schedule(&mut self, kind: &str, object: &str, due_at: i64) {
        let job = JobId {
            kind: kind.to_string(),
            object: object.to_string(),
        };
        self.cancelled_jobs.retain(|j| *j != job);
        self.jobs.retain(|j| j.job != job);
        self.jobs.push(JobSchedule {
            job,
            due_at,
            clock: None,
        });
    }

    /// Removes job `kind` of `object`, if there is one, with this unit of work:
    /// the change it waited for came about another way.
    pub fn unschedule(&mut self, kind: &str, object: &str) {
        let job = JobId {
            kind: kind.to_string(),
            object: object.to_string(),
        };
        self.jobs.retain(|j| j.job != job);
        if !self.cancelled_jobs.contains(&job) {
            self.cancelled_jobs.push(job);
        }
    }

    /// Marks the failure this operation is about to answer with as one that
    /// Stripe records: what it wrote commits with the error. A card decline is
    /// the case: its failed charge, the PaymentIntent's `last_payment_error` and
    /// their events stay, and the 402 says so. Any other failure leaves no trace.
    pub fn commit_with_error(&mut self) {
        self.commit_with_error = true;
    }

    /// Whether [`Ctx::commit_with_error`] was chosen.
    pub fn commits_with_error(&self) -> bool {
        self.commit_with_error
    }

    /// Hands the recorded writes over for commit. When the operation `failed`,
    /// they are dropped unless it chose [`Ctx::commit_with_error`].
    pub fn into_batch(self, failed: bool) -> WriteBatch {
        if failed && !self.commit_with_error {
            return WriteBatch {
                account: self.account.id.clone(),
                ..WriteBatch::default()
            };
        }
        WriteBatch {
            account: self.account.id.clone(),
            objects: self.writes,
            events: self.events,
            idempotency: None,
            idempotency_cutoff: 0,
            jobs: self.jobs,
            cancelled_jobs: self.cancelled_jobs,
            finishes: None,
        }
    }
}

/// The fields of `new` that differ from `old`, with their old values: Stripe's
/// `previous_attributes`. Nested hashes are compared key by key.
pub fn previous_attributes(old: &Value, new: &Value) -> Option<Value> {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return None;
    };
    let mut changed = Map::new();
    for (key, new_value) in new {
        let old_value = old.get(key).unwrap_or(&Value::Null);
        if old_value == new_value {
            continue;
        }
        let nested = matches!((old_value, new_value), (Value::Object(_), Value::Object(_)))
            && key == "metadata";
        if nested {
            if let Some(inner) = previous_attributes(old_value, new_value) {
                changed.insert(key.clone(), inner);
            }
        } else {
            changed.insert(key.clone(), old_value.clone());
        }
    }
    for (key, old_value) in old {
        if !new.contains_key(key) {
            changed.insert(key.clone(), old_value.clone());
        }
    }
    (!changed.is_empty()).then_some(Value::Object(changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_text_is_valid_json_in_stripes_field_order() {
        let mut data = String::new();
        push_json(&mut data, "quote \" and \\ and \u{1}");
        assert_eq!(
            serde_json::from_str::<Value>(&data).ok(),
            Some(json!("quote \" and \\ and \u{1}"))
        );
        let mut none = String::new();
        push_json(&mut none, &Option::<String>::None);
        assert_eq!(none, "null");
    }

    /// A unit of work on a fresh SQLite file; the file's folder.
    fn context(now: i64) -> (Ctx, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("payground-ctx-{}", ids::random_string(12)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ctx.db");
        let store: DynStore = Arc::new(
            crate::store::sqlite::SqliteStore::open(path.to_str().expect("utf-8 path"))
                .expect("open"),
        );
        let account = Account {
            id: "acct_a".into(),
            secret_key: "sk_test_a".into(),
            publishable_key: "pk_test_a".into(),
            clock_offset: 0,
            created: 1,
        };
        let request = RequestInfo {
            request_id: String::new(),
            idempotency_key: None,
            key_kind: KeyKind::Secret,
        };
        let settings = Arc::new(Settings::default());
        let ctx = Ctx::new(
            store,
            Arc::new(account),
            now,
            request,
            "http://x".into(),
            settings,
        );
        (ctx, dir)
    }

    /// Scheduling a job again replaces it, removing one after scheduling it
    /// leaves only the removal, and the jobs go with the writes of a failure.
    #[test]
    fn jobs_go_with_the_unit_of_work() {
        let (mut ctx, dir) = context(100);
        ctx.schedule("k", "o1", 10);
        ctx.schedule("k", "o1", 20);
        ctx.unschedule("k", "o2");
        ctx.schedule("k", "o2", 30);
        ctx.schedule("k", "o3", 40);
        ctx.unschedule("k", "o3");
        let batch = ctx.into_batch(false);
        let scheduled: Vec<(&str, i64)> = batch
            .jobs
            .iter()
            .map(|j| (j.job.object.as_str(), j.due_at))
            .collect();
        assert_eq!(scheduled, [("o1", 20), ("o2", 30)]);
        let removed: Vec<&str> = batch
            .cancelled_jobs
            .iter()
            .map(|j| j.object.as_str())
            .collect();
        assert_eq!(removed, ["o3"]);

        let (mut failed, failed_dir) = context(100);
        failed.schedule("k", "o1", 10);
        assert!(
            failed.into_batch(true).is_empty(),
            "a failure leaves no job"
        );
        let (mut declined, declined_dir) = context(100);
        declined.schedule("k", "o1", 10);
        declined.commit_with_error();
        assert_eq!(declined.into_batch(true).jobs.len(), 1);
        for dir in [dir, failed_dir, declined_dir] {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// "Now" on the account's clock is the unit of work's; on a test clock, the
    /// clock's frozen time; a clock that is not there is Stripe's 404.
    #[tokio::test]
    async fn now_on_reads_the_objects_clock() {
        let (mut ctx, dir) = context(1_000);
        assert_eq!(ctx.now_on(None).await.ok(), Some(1_000));
        let clock = ObjectWrite {
            id: "clock_1".into(),
            kind: TEST_CLOCK.into(),
            created: 1,
            data: r#"{"id":"clock_1","object":"test_helpers.test_clock","frozen_time":500}"#.into(),
            expected_version: None,
            index: Vec::new(),
            deleted: false,
        };
        ctx.store
            .commit(WriteBatch {
                account: "acct_a".into(),
                objects: vec![clock],
                ..WriteBatch::default()
            })
            .await
            .expect("commit");
        assert_eq!(ctx.now_on(Some("clock_1")).await.ok(), Some(500));
        let missing = ctx.now_on(Some("clock_2")).await.err().map(|e| e.status);
        assert_eq!(missing, Some(404));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn previous_attributes_hold_old_values_of_changed_fields() {
        let old = json!({"email": "a@x", "name": "A", "metadata": {"k": "1", "gone": "x"}});
        let new = json!({"email": "b@x", "name": "A", "metadata": {"k": "2", "new": "y"}});
        assert_eq!(
            previous_attributes(&old, &new),
            Some(json!({"email": "a@x", "metadata": {"k": "1", "new": null, "gone": "x"}}))
        );
        assert_eq!(previous_attributes(&old, &old), None);
    }
}
