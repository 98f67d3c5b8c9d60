//! The http layer's shared state and the path every request takes: authenticate,
//! check the idempotency record, run the resource operation in a [`Ctx`], expand,
//! commit, answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ctx::{Answer, Ctx, KeyKind, RequestInfo};
use crate::error::{ApiError, ErrorType};
use crate::http::{expand, form};
use crate::resources::common::params;
use crate::store::{Account, CommitError, IdempotencyRecord};

/// Bodies larger than this are refused with 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a client may take to send its request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Stripe keeps idempotency records for at least 24 hours.
pub const IDEMPOTENCY_WINDOW_SECS: i64 = 24 * 60 * 60;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// How long a cached key → account lookup is trusted; bounds how stale another
/// node's view of an account (its clock) can be.
const ACCOUNT_CACHE_TTL: Duration = Duration::from_secs(1);
pub struct AppState {
    /// Runs operations and commits them; shared with the background jobs.
    pub engine: Arc<crate::engine::Engine>,
    pub admin_token: Option<String>,
    accounts: RwLock<HashMap<String, (Arc<Account>, Instant)>>,
    inflight: Mutex<HashSet<(String, String)>>,
    /// Per (account, object): the queue of this node's operations that lost a race
    /// for that object. See [`App::conflict_turn`].
    conflict_queues: Mutex<HashMap<(String, String), ConflictQueue>>,
    rate_limit: Option<crate::http::rate_limit::RateLimiter>,
    /// Wakes the webhook jobs after commits that wrote events; holds their settings.
    pub webhooks: Arc<crate::jobs::webhooks::Hub>,
}

#[derive(Clone)]
pub struct App(pub Arc<AppState>);

impl std::ops::Deref for App {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.0
    }
}

/// The request id given to every request, set by the middleware in `router`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status_code(), self.body().to_string(), false)
    }
}

/// A JSON answer. An error's says whether the SDKs may retry it, as Stripe's
/// `Stripe-Should-Retry` does, however it was made (a decline committed with its
/// 402, an idempotent replay of an error).
pub fn json_response(status: StatusCode, body: String, replayed: bool) -> Response {
    let retry = match status.as_u16() {
        409 | 429 => Some("true"),
        400..=499 => Some("false"),
        _ => None,
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(retry) = retry {
        headers.insert("stripe-should-retry", HeaderValue::from_static(retry));
    }
    response
}

fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let prefix: String = chars[..8].iter().collect();
    let suffix: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}{}{suffix}", "*".repeat(chars.len() - 12))
}

/// The API key of a request: Bearer, or Basic with the key as user name.
fn presented_key(parts: &Parts) -> Result<String, ApiError> {
    let missing = || {
        ApiError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, \
             using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication \
             for details, or we can help at https://support.stripe.com/.",
        )
    };
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(missing)?;
    let header = header.to_str().map_err(|_| {
        ApiError::unauthorized(
            "Invalid API Key provided: the Authorization header is not valid text.",
        )
    })?;
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let key = match scheme.to_ascii_lowercase().as_str() {
        "bearer" => rest.trim().to_string(),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::unauthorized("Invalid API Key provided: malformed Basic credentials.")
                })?;
            decoded.split(':').next().unwrap_or_default().to_string()
        }
        _ => {
            return Err(ApiError::unauthorized(
                "Invalid API Key provided: use 'Authorization: Bearer YOUR_SECRET_KEY'.",
            ))
        }
    };
    if key.is_empty() {
        return Err(missing());
    }
    Ok(key)
}

impl App {
    pub fn new(engine: Arc<crate::engine::Engine>, admin_token: Option<String>) -> Self {
        let webhooks = Arc::new(crate::jobs::webhooks::Hub::new(engine.wakers.clone()));
        App(Arc::new(AppState {
            engine,
            admin_token,
            accounts: RwLock::new(HashMap::new()),
            inflight: Mutex::new(HashSet::new()),
            conflict_queues: Mutex::new(HashMap::new()),
            rate_limit: None,
            webhooks,
        }))
    }

    /// Limits each account to `per_second` API requests (`--rate-limit`). Call before
    /// the App is shared.
    pub fn with_rate_limit(mut self, per_second: Option<f64>) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.0) {
            state.rate_limit = per_second.map(crate::http::rate_limit::RateLimiter::new);
        }
        self
    }

    /// The account a key belongs to, and which kind of key it is.
    pub async fn authenticate(&self, key: &str) -> Result<(Arc<Account>, KeyKind), ApiError> {
        let cached = self
            .accounts
            .read()
            .get(key)
            .filter(|(_, at)| at.elapsed() < ACCOUNT_CACHE_TTL)
            .map(|(a, _)| a.clone());
        let account = match cached {
            Some(account) => account,
            None => {
                let found = self
                    .engine
                    .store
                    .account_by_key(key)
                    .await
                    .map_err(|e| ApiError::internal("account lookup failed", e))?;
                let account = found.map(Arc::new).ok_or_else(|| {
                    ApiError::unauthorized(format!("Invalid API Key provided: {}", mask_key(key)))
                })?;
                self.accounts
                    .write()
                    .insert(key.to_string(), (account.clone(), Instant::now()));
                account
            }
        };
        let kind = if account.secret_key == key {
            KeyKind::Secret
        } else {
            KeyKind::Publishable
        };
        Ok((account, kind))
    }

    /// Forgets cached copies of an account after it changed (its clock moved).
    pub fn forget_account(&self, account_id: &str) {
        self.accounts.write().retain(|_, (a, _)| a.id != account_id);
    }

    pub fn context<const P: bool>(&self, req: &ApiRequest<P>) -> Ctx {
        self.engine.context(req.account.clone(), req.info.clone())
    }

    /// Replays a stored response, refuses a reused key, or lets the request run.
    ///
    /// The key is claimed on this node before the one lookup of its record: a
    /// request that gets the claim and finds no record runs; one that finds the key
    /// claimed replays the record if the other request has already stored it, and
    /// is refused with a 409 while it runs. (Another node's request with the same
    /// key is caught at commit, by the store: `CommitError::IdempotencyTaken`.)
    pub async fn idempotency_begin<const P: bool>(&self, req: &ApiRequest<P>) -> Begin {
        let Some(key) = req.info.idempotency_key.clone() else {
            return Begin::Proceed(InflightGuard(None));
        };
        let slot = (req.account.id.clone(), key);
        let claimed = self.0.inflight.lock().insert(slot.clone());
        // Holding the claim releases it however this returns.
        let guard = InflightGuard(claimed.then(|| (self.0.clone(), slot.clone())));
        if let Some(done) = self.replay(req, &slot.1).await {
            return Begin::Done(done);
        }
        if !claimed {
            let mut err = ApiError::invalid_request(format!(
                "There is currently another in-progress request using this Idempotent Key (that probably means \
                 you submitted twice, and the other request is still going through): {}. Please try again later.",
                slot.1
            ))
            .with_code("idempotency_key_in_use");
            err.status = 409;
            return Begin::Done(err.into_response());
        }
        Begin::Proceed(guard)
    }

    async fn replay<const P: bool>(&self, req: &ApiRequest<P>, key: &str) -> Option<Response> {
        let record = match self
            .engine
            .store
            .idempotency_get(&req.account.id, key)
            .await
        {
            Ok(record) => record?,
            Err(e) => {
                return Some(ApiError::internal("idempotency lookup failed", e).into_response())
            }
        };
        let now = req.account.now();
        if record.created < now - IDEMPOTENCY_WINDOW_SECS {
            return None;
        }
        if record.fingerprint != req.fingerprint {
            let mut err = ApiError::new(
                400,
                ErrorType::IdempotencyError,
                format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. \
                     Try using a key other than '{key}' if you meant to execute a different request."
                ),
            );
            err.code = None;
            return Some(err.into_response());
        }
        let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK);
        Some(json_response(status, record.body, true))
    }

    /// Expands, commits and answers. `Conflict` means the operation lost a race
    /// and must run again.
    ///
    /// A failed operation commits nothing, unless it chose to commit with its
    /// error (a decline does), and a refused request (a 4xx other than a card
    /// error) leaves its idempotency key free: it leaves no trace. A card error
    /// (402) and a 5xx keep their answer for the key, as Stripe does, so a retry
    /// with the key gets the same answer; their writes are still dropped unless
    /// the operation chose to keep them.
    pub async fn finish<const P: bool>(
        &self,
        mut ctx: Ctx,
        req: &ApiRequest<P>,
        outcome: Result<impl Into<Answer>, ApiError>,
    ) -> Finished {
        let failed = outcome.is_err();
        let (status, body) = match outcome {
            Ok(answer) => match answer_text(&mut ctx, req, answer.into()).await {
                Ok(text) => (200u16, text),
                Err(e) => return Finished::Done(e.into_response()),
            },
            Err(e) => (e.status, e.body().to_string()),
        };
        let now = ctx.now;
        let kept_failure = failed && ctx.commits_with_error();
        let mut batch = ctx.into_batch(failed);
        let store_record = !failed || kept_failure || status == 402 || status >= 500;
        if let (Some(key), true) = (&req.info.idempotency_key, store_record) {
            batch.idempotency = Some(IdempotencyRecord {
                key: key.clone(),
                fingerprint: req.fingerprint.clone(),
                status,
                body: body.clone(),
                created: now,
            });
            batch.idempotency_cutoff = now - IDEMPOTENCY_WINDOW_SECS;
        }
        if batch.is_empty() {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Finished::Done(json_response(status, body, false));
        }
        match self.engine.commit(batch).await {
            Ok(_) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Finished::Done(json_response(status, body, false))
            }
            Err(CommitError::Conflict(id)) => {
                tracing::debug!(%id, "write conflict; running the operation again");
                Finished::Conflict(id)
            }
            Err(CommitError::IdempotencyTaken) => {
                let key = req.info.idempotency_key.clone().unwrap_or_default();
                Finished::Done(match self.replay(req, &key).await {
                    Some(response) => response,
                    None => ApiError::internal("idempotency record vanished", &key).into_response(),
                })
            }
            Err(CommitError::Store(e)) => {
                Finished::Done(ApiError::internal("commit failed", e).into_response())
            }
        }
    }

    /// Waits for this request's turn at `object` after its commit lost a race for it.
    ///
    /// Optimistic concurrency alone makes N writers of one object retry all at once
    /// after each winner: O(N^2) reads and commits, and a writer that keeps losing
    /// runs out of attempts. Instead, the losers on this node queue per object and
    /// run their next attempts one at a time, each on fresh data, so they commit
    /// one after another; only a first attempt or another node's write can still
    /// beat them. A request holds at most one turn (it gives up the one it holds
    /// before queueing for another object), so turns never deadlock.
    pub async fn conflict_turn(
        &self,
        account: &str,
        object: String,
        held: Option<ConflictTurn>,
    ) -> ConflictTurn {
        let slot = (account.to_string(), object);
        if let Some(turn) = held {
            if turn.slot == slot {
                return turn;
            }
        }
        let queue = self
            .0
            .conflict_queues
            .lock()
            .entry(slot.clone())
            .or_default()
            .clone();
        let guard = queue.lock_owned().await;
        ConflictTurn {
            state: self.0.clone(),
            slot,
            guard: Some(guard),
        }
    }

    /// Answers a read-only operation: expansion, no commit.
    pub async fn respond<const P: bool>(
        &self,
        mut ctx: Ctx,
        req: &ApiRequest<P>,
        outcome: Result<impl Into<Answer>, ApiError>,
    ) -> Response {
        match outcome {
            Ok(answer) => match answer_text(&mut ctx, req, answer.into()).await {
                Ok(text) => json_response(StatusCode::OK, text, false),
                Err(e) => e.into_response(),
            },
            Err(e) => e.into_response(),
        }
    }
}

/// The answer's JSON text with the request's expansions applied.
async fn answer_text<const P: bool>(
    ctx: &mut Ctx,
    req: &ApiRequest<P>,
    answer: Answer,
) -> Result<String, ApiError> {
    match answer {
        Answer::Text(text) if req.expand.is_empty() => Ok(text),
        answer => {
            let mut value = answer
                .into_value()
                .map_err(|e| ApiError::internal("an answer does not decode", e))?;
            expand::apply(ctx, &mut value, &req.expand).await?;
            Ok(crate::ctx::json_text(&value))
        }
    }
}

/// This node's queue of retries for one object.
type ConflictQueue = Arc<tokio::sync::Mutex<()>>;

/// What [`App::finish`] did: answered, or lost the race for an object.
pub enum Finished {
    Done(Response),
    Conflict(String),
}

/// A request's turn at an object it lost a race for; see [`App::conflict_turn`].
pub struct ConflictTurn {
    state: Arc<AppState>,
    slot: (String, String),
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for ConflictTurn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut queues = self.state.conflict_queues.lock();
        // Clones are made only under this lock: if the map holds the last one,
        // nobody waits on the queue and it can go.
        if queues
            .get(&self.slot)
            .is_some_and(|q| Arc::strong_count(q) == 1)
        {
            queues.remove(&self.slot);
        }
    }
}

pub enum Begin {
    Proceed(InflightGuard),
    Done(Response),
}

/// Holds an idempotency key as in flight on this node until the request ends.
pub struct InflightGuard(Option<(Arc<AppState>, (String, String))>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Some((state, slot)) = self.0.take() {
            state.inflight.lock().remove(&slot);
        }
    }
}

/// Runs a write operation to completion: idempotency, retries on conflicts, commit.
///
/// `execute!(app, req, |ctx| customer::create(&mut ctx, &params).await)`
#[macro_export]
macro_rules! execute {
    ($app:expr, $req:expr, |$ctx:ident| $op:expr) => {{
        match $app.idempotency_begin(&$req).await {
            $crate::http::app::Begin::Done(response) => response,
            $crate::http::app::Begin::Proceed(_guard) => {
                let mut attempt = 0u32;
                let mut turn: Option<$crate::http::app::ConflictTurn> = None;
                loop {
                    #[allow(unused_mut)]
                    let mut $ctx = $app.context(&$req);
                    let outcome = $op;
                    let object = match $app.finish($ctx, &$req, outcome).await {
                        $crate::http::app::Finished::Done(response) => break response,
                        $crate::http::app::Finished::Conflict(object) => object,
                    };
                    attempt += 1;
                    if attempt >= $crate::engine::MAX_ATTEMPTS {
                        break axum::response::IntoResponse::into_response(
                            $crate::engine::conflict_exhausted(attempt),
                        );
                    }
                    turn = Some(
                        $app.conflict_turn(&$req.account.id, object, turn.take())
                            .await,
                    );
                }
            }
        }
    }};
}

/// The operation's typed params, or Stripe's 400 as the handler's answer.
#[macro_export]
macro_rules! params {
    ($req:expr) => {
        match $req.params() {
            Ok(p) => p,
            Err(e) => return axum::response::IntoResponse::into_response(e),
        }
    };
}

/// Runs a read-only operation and answers it.
#[macro_export]
macro_rules! read {
    ($app:expr, $req:expr, |$ctx:ident| $op:expr) => {{
        #[allow(unused_mut)]
        let mut $ctx = $app.context(&$req);
        let outcome = $op;
        $app.respond($ctx, &$req, outcome).await
    }};
}

/// An authenticated API request with its parameters decoded into Stripe's tree.
/// `PUBLISHABLE = true` admits publishable keys (the calls a browser makes).
pub struct ApiRequest<const PUBLISHABLE: bool = false> {
    pub account: Arc<Account>,
    pub info: RequestInfo,
    pub method: Method,
    pub path: String,
    /// The parameters, `expand` removed.
    pub tree: Value,
    pub expand: Vec<String>,
    /// Hash of method, path and parameters: what idempotent replays must match.
    pub fingerprint: String,
}

/// A request that only a secret key may make.
pub type SecretRequest = ApiRequest<false>;
/// A request a browser may make with the publishable key.
pub type BrowserRequest = ApiRequest<true>;

impl<const P: bool> ApiRequest<P> {
    /// The operation's typed params from the tree.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        params::from_value(&self.tree)
    }

    /// Takes a parameter out of the tree (list and search params shared by many routes).
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.tree.as_object_mut().and_then(|m| m.shift_remove(key))
    }

    /// Takes the fields of `T` (those its schema names) out of the tree and
    /// decodes them on their own: for a params type that shares a body with
    /// another, such as what only a Price's create takes beside what its update
    /// takes too.
    pub fn take_params<T: DeserializeOwned + schemars::JsonSchema>(
        &mut self,
    ) -> Result<T, ApiError> {
        let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
        let mut taken = serde_json::Map::new();
        if let Some(Value::Object(fields)) = schema.get("properties") {
            for key in fields.keys() {
                if let Some(value) = self.take(key) {
                    taken.insert(key.clone(), value);
                }
            }
        }
        params::from_value(&Value::Object(taken))
    }

    pub fn is_publishable(&self) -> bool {
        self.info.key_kind == KeyKind::Publishable
    }
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for k in keys {
                out.push_str(k);
                out.push(':');
                canonical(&map[k], out);
                out.push(',');
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn fingerprint(method: &Method, path: &str, tree: &Value, expand: &[String]) -> String {
    let mut text = format!("{method} {path} ");
    canonical(tree, &mut text);
    text.push_str(&expand.join(","));
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// `expand[]=a&expand[]=b`, `expand[0]=a` or `expand=a` into a list of paths.
fn take_expand(tree: &mut Value) -> Result<Vec<String>, ApiError> {
    let Some(raw) = tree.as_object_mut().and_then(|m| m.shift_remove("expand")) else {
        return Ok(Vec::new());
    };
    match raw {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s]),
        other => params::from_value::<Vec<String>>(&other).map_err(|_| {
            ApiError::invalid_request("Invalid array")
                .with_code("parameter_invalid_array")
                .with_param("expand")
        }),
    }
}

impl<const P: bool> FromRequest<App> for ApiRequest<P> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let key = presented_key(&parts)?;
        let (account, key_kind) = app.authenticate(&key).await?;
        if let Some(limiter) = &app.rate_limit {
            limiter.check(&account.id)?;
        }
        if key_kind == KeyKind::Publishable && !P {
            return Err(ApiError::forbidden(
                "This API call cannot be made with a publishable API key. Please use a secret API key. \
                 You can find a list of your API keys at https://dashboard.stripe.com/account/apikeys.",
            ));
        }
        let idempotency_key = match parts.headers.get("idempotency-key") {
            Some(v) if parts.method == Method::POST => {
                let key = v
                    .to_str()
                    .map_err(|_| {
                        ApiError::invalid_request(
                            "Invalid idempotency key: it must be printable text.",
                        )
                    })?
                    .trim()
                    .to_string();
                if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
                    return Err(ApiError::invalid_request(format!(
                        "Invalid idempotency key: it must be at most {MAX_IDEMPOTENCY_KEY_LEN} characters long."
                    )));
                }
                (!key.is_empty()).then_some(key)
            }
            _ => None,
        };
        let query_tree = form::decode(parts.uri.query().unwrap_or("").as_bytes())?;
        let mut tree = if parts.method == Method::POST {
            // A client that stalls while sending its body holds only its own task, and
            // only until this timeout.
            let read = tokio::time::timeout(
                BODY_READ_TIMEOUT,
                axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES),
            )
            .await
            .map_err(|_| {
                ApiError::new(
                    408,
                    ErrorType::InvalidRequestError,
                    format!(
                        "The request body did not arrive within {} seconds.",
                        BODY_READ_TIMEOUT.as_secs()
                    ),
                )
            })?;
            let bytes = read.map_err(|_| {
                ApiError::new(
                    413,
                    ErrorType::InvalidRequestError,
                    format!("Request body too large: at most {MAX_BODY_BYTES} bytes are accepted."),
                )
            })?;
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let mut tree = if content_type.starts_with("application/json") {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    Value::Object(Default::default())
                } else {
                    match serde_json::from_slice::<Value>(&bytes) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => {
                            return Err(ApiError::invalid_request(
                                "Invalid JSON body: expected a JSON object of parameters.",
                            ))
                        }
                    }
                }
            } else {
                form::decode(&bytes)?
            };
            // Query parameters on a POST count too (stripe.js sends some that way).
            if let (Value::Object(body_map), Value::Object(query_map)) = (&mut tree, query_tree) {
                for (k, v) in query_map {
                    body_map.entry(k).or_insert(v);
                }
            }
            tree
        } else {
            query_tree
        };
        let expand = take_expand(&mut tree)?;
        let path = parts.uri.path().to_string();
        // Only idempotent requests are ever compared; others skip the hashing.
        let fingerprint = if idempotency_key.is_some() {
            fingerprint(&parts.method, &path, &tree, &expand)
        } else {
            String::new()
        };
        parts.extensions.clear();
        Ok(ApiRequest {
            account,
            info: RequestInfo {
                request_id,
                idempotency_key,
                key_kind,
            },
            method: parts.method,
            path,
            tree,
            expand,
            fingerprint,
        })
    }
}

/// The admin token guard for payground's own management routes.
pub struct Admin;

impl FromRequestParts<App> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let Some(expected) = app.admin_token.as_deref() else {
            return Err(ApiError::forbidden(
                "The admin API is disabled: start payground with --admin-token (PAYGROUND_ADMIN_TOKEN) to enable it.",
            ));
        };
        let key = presented_key(parts)?;
        if !crate::crypto::constant_time_eq(key.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::unauthorized("Invalid admin token provided."));
        }
        Ok(Admin)
    }
}
