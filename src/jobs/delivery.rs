//! Webhook delivery: signed, at least once, with retries that survive restarts.
//!
//! The state is rows, never memory:
//! - an event commits with one delivery row per webhook endpoint (and `payground
//!   listen` client) that takes its type, in the same transaction (the store
//!   matches the event against the targets' index rows; see
//!   `crate::store::TARGET_EVENTS_FIELD`);
//! - the delivery loop leases due delivery rows, POSTs the stored event with its
//!   `pending_webhooks` as of now, and hands the outcome to the finisher, which
//!   records the attempts that ended meanwhile and moves their rows on (succeeded,
//!   or the next retry from the schedule) in one transaction;
//! - an event's `pending_webhooks` and `delivery_success` are read from its
//!   deliveries, so a delivery never rewrites its event.
//!
//! Each endpoint has a share of the node's attempts: it starts at
//! [`MIN_SHARE`], grows by one with every success up to [`MAX_SHARE`] and halves
//! (not below [`MIN_SHARE`]) with every failure. A healthy endpoint thus takes
//! thousands of events a second, while one that hangs holds only a few of the
//! node's slots, so the others and their retries do not wait behind it. The claim
//! asks for no more than what is left of each share, so a delivery is leased only
//! when it can start at once: a leased delivery left waiting could outlive its
//! lease and be attempted twice.
//!
//! Leases carry an expiry, so rows a dead node held are taken over once it passes;
//! the store's claims skip rows another node holds (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, the single writer on SQLite). Nothing relies on a "highest seq
//! delivered" watermark: every row is tracked on its own.
//!
//! Listeners (`payground listen`) get delivery rows too, marked as pulled: the
//! client claims them through `/v1/payground/listeners/{id}/poll`, forwards them
//! itself and reports each attempt back, which settles the row the same way.
//!
//! Also here: the purge of events past Stripe's 30 days, which takes their
//! deliveries and attempts with them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::clock;
use crate::ids;
use crate::resources::event;
use crate::resources::webhook_endpoint::{endpoint_secret, WebhookEndpoint};
use crate::store::{
    AttemptRecord, Committed, Delivery, DeliveryClaim, DeliveryNext, DeliveryResult, DynStore,
    EndpointShares, StoreError,
};

/// The User-Agent Stripe's webhooks carry.
pub const USER_AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// Stripe test mode retries three times over a few hours.
pub const DEFAULT_RETRY_SCHEDULE: &str = "60,1800,7200";
pub const DEFAULT_TIMEOUT_SECS: f64 = 10.0;
/// How much of a response body an attempt keeps.
pub const BODY_EXCERPT_BYTES: usize = 1024;

/// Attempts in flight per node.
const MAX_IN_FLIGHT: usize = 512;
/// Attempts in flight per endpoint per node: where every endpoint starts and what a
/// failing one comes back to. An attempt at an endpoint that hangs holds its slot
/// for the whole timeout; with this share such an endpoint holds 4 of the node's
/// slots and only its own deliveries queue up.
pub const MIN_SHARE: usize = 4;
/// The most attempts in flight at one healthy endpoint per node.
pub const MAX_SHARE: usize = 256;
/// Attempts finished together, at most, in one transaction.
const FINISH_BATCH: usize = 512;
/// A delivery lease outlives the attempt's timeout by this much.
const LEASE_MARGIN_MS: i64 = 5_000;
/// How often other nodes' work and due retries are looked for without a wake-up.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Retry times the delivery loop remembers to wake for; later ones wait for a poll.
const MAX_TRACKED_RETRIES: usize = 4_096;
/// How long a listener has to forward what it pulled and report back.
pub const PULL_LEASE_MS: i64 = 120_000;
/// How often a waiting poll looks for new deliveries.
const PULL_POLL_EVERY: Duration = Duration::from_millis(100);
/// How often the purge of old events runs, and how long the first one waits.
const PURGE_EVERY: Duration = Duration::from_secs(10 * 60);
const PURGE_FIRST_AFTER: Duration = Duration::from_secs(5);
/// How long shutdown waits for attempts in flight before giving their leases back.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Seconds to wait after the 1st, 2nd, ... failed attempt; after the last, the
/// delivery fails for good.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl FromStr for RetrySchedule {
    type Err = String;

    /// Comma-separated seconds, fractions allowed: `60,300,1800` or `0.2,0.5,1`.
    /// An empty string means no retries.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut delays = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let secs: f64 = part
                .parse()
                .map_err(|_| format!("{part:?} is not a number of seconds"))?;
            if !(0.0..=30.0 * 24.0 * 3600.0).contains(&secs) {
                return Err(format!(
                    "{part:?} must be between 0 and 30 days, in seconds"
                ));
            }
            delays.push(Duration::from_secs_f64(secs));
        }
        Ok(RetrySchedule(delays))
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|d| format!("{}", d.as_secs_f64()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl RetrySchedule {
    /// What follows a failed attempt, `attempts` counting it.
    pub fn after_failure(&self, attempts: i64, now_ms: i64) -> DeliveryNext {
        let index = usize::try_from(attempts.max(1) - 1).unwrap_or(usize::MAX);
        match self.0.get(index) {
            Some(delay) => {
                let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                DeliveryNext::RetryAt(now_ms.saturating_add(ms))
            }
            None => DeliveryNext::Failed,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub retry_schedule: RetrySchedule,
    /// How long one attempt may take, connection and response included.
    pub timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            retry_schedule: DEFAULT_RETRY_SCHEDULE
                .parse()
                .unwrap_or(RetrySchedule(Vec::new())),
            timeout: Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS),
        }
    }
}

impl WebhookSettings {
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX / 2) + LEASE_MARGIN_MS
    }
}

/// What the http layer and the delivery jobs share: wake-ups and the settings.
pub struct Hub {
    /// Notified when deliveries may have become due (a commit created some, a resend).
    pub deliveries: Notify,
    settings: OnceLock<WebhookSettings>,
    /// Set when the server begins shutting down: long polls return at once.
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            deliveries: Notify::new(),
            settings: OnceLock::new(),
            closing: watch::channel(false).0,
        }
    }
}

impl Hub {
    /// The server stops taking requests: waiting listener polls answer now.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The settings [`start`] was given, or the defaults before it ran.
    pub fn settings(&self) -> &WebhookSettings {
        static DEFAULT: OnceLock<WebhookSettings> = OnceLock::new();
        self.settings
            .get()
            .unwrap_or_else(|| DEFAULT.get_or_init(WebhookSettings::default))
    }

    /// The commit hook: deliveries it created start at once, not at the next poll.
    pub fn committed(&self, committed: Committed) {
        if committed.deliveries {
            self.deliveries.notify_one();
        }
    }
}

// ---------------------------------------------------------------------------
// Signatures.

type HmacSha256 = Hmac<Sha256>;

fn hmac_hex(key: &[u8], timestamp: i64, payload: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// The `v1` scheme: HMAC-SHA256 keyed with the whole `whsec_...` string, over
/// `"<timestamp>.<payload>"`, in lowercase hex.
pub fn v1_signature(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    hmac_hex(secret.as_bytes(), timestamp, payload)
}

/// The `Stripe-Signature` header. Like Stripe test mode it adds a `v0` signature
/// made with another key, so verifiers learn to ignore schemes they do not know.
pub fn signature_header(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let v0_key = format!("payground-v0 {secret}");
    format!(
        "t={timestamp},v1={},v0={}",
        v1_signature(secret, timestamp, payload),
        hmac_hex(v0_key.as_bytes(), timestamp, payload)
    )
}

// ---------------------------------------------------------------------------
// Starting and stopping.

/// The running delivery jobs; [`Jobs::shutdown`] stops them.
pub struct Jobs {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the delivery loop and the event purge on the current runtime.
pub fn start(store: DynStore, hub: Arc<Hub>, settings: WebhookSettings) -> anyhow::Result<Jobs> {
    if hub.settings.set(settings.clone()).is_err() {
        tracing::warn!("webhook settings were already set; keeping the first ones");
    }
    let client = http_client(settings.timeout)?;
    let (stop, stopped) = watch::channel(false);
    let worker = Arc::new(Worker {
        store: store.clone(),
        hub,
        settings,
        owner: format!("node_{}", ids::random_string(16)),
        client,
        secrets: Mutex::new(HashMap::new()),
    });
    let tasks = vec![
        tokio::spawn(delivery_loop(worker, stopped.clone())),
        tokio::spawn(purge_loop(store, stopped)),
    ];
    Ok(Jobs { stop, tasks })
}

impl Jobs {
    /// Stops claiming, lets attempts in flight finish (or gives their leases back
    /// after a grace period), and waits for every task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a webhook job ended abnormally");
            }
        }
    }
}

/// The client attempts go through: no redirects followed (Stripe counts a 3xx as a
/// failure) and no proxy from the environment (deliveries go where the URL says).
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| anyhow::anyhow!("building the webhook HTTP client: {e}"))
}

/// Waits `d` or until stop is signalled; `true` when it is time to stop.
async fn sleep_or_stop(d: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    if *stopped.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}

struct Worker {
    store: DynStore,
    hub: Arc<Hub>,
    settings: WebhookSettings,
    /// This node's name on the leases it takes.
    owner: String,
    client: reqwest::Client,
    /// Accounts' secret keys, which endpoint secrets derive from: they never change.
    secrets: Mutex<HashMap<String, String>>,
}

// ---------------------------------------------------------------------------
// Delivery.

/// An endpoint's share of this node's attempts (see the module's documentation).
struct Share {
    size: usize,
    in_flight: usize,
}

/// The shares of the endpoints this node is attempting or has seen grow.
#[derive(Default)]
struct Shares(HashMap<String, Share>);

impl Shares {
    /// What the next claim may take of each endpoint.
    fn allowances(&self) -> EndpointShares {
        EndpointShares {
            default: MIN_SHARE,
            endpoints: self
                .0
                .iter()
                .map(|(id, s)| (id.clone(), s.size.saturating_sub(s.in_flight)))
                .collect(),
        }
    }

    fn started(&mut self, endpoint: &str) {
        self.0
            .entry(endpoint.to_string())
            .or_insert(Share {
                size: MIN_SHARE,
                in_flight: 0,
            })
            .in_flight += 1;
    }

    fn ended(&mut self, endpoint: &str, succeeded: bool) {
        let Some(share) = self.0.get_mut(endpoint) else {
            return;
        };
        share.in_flight = share.in_flight.saturating_sub(1);
        share.size = if succeeded {
            (share.size + 1).min(MAX_SHARE)
        } else {
            (share.size / 2).max(MIN_SHARE)
        };
        // An idle endpoint at the starting share needs no entry.
        if share.in_flight == 0 && share.size == MIN_SHARE {
            self.0.remove(endpoint);
        }
    }
}

/// How one attempt ended, for the loop's bookkeeping.
struct Ended {
    endpoint_id: String,
    succeeded: bool,
    retry_at: Option<i64>,
}

async fn delivery_loop(worker: Arc<Worker>, mut stopped: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut shares = Shares::default();
    let mut in_flight: JoinSet<Ended> = JoinSet::new();
    let (finished, finishing) = mpsc::unbounded_channel();
    let finisher = tokio::spawn(finish_loop(worker.store.clone(), finishing));
    // When the retries this node scheduled itself are due: it wakes for each
    // precisely (others' retries, and any past the most tracked, at the next poll).
    let mut retries: BTreeSet<i64> = BTreeSet::new();
    // Whether a claim may find something: after a wake-up, a timer, or a claim that
    // stopped at a share or at the free slots. An attempt that ends frees a slot,
    // but claiming again is only worth a transaction when something was left.
    let mut left_behind = true;
    // Endpoints whose whole share was in flight at the last claim, or taken by it:
    // they may have due deliveries the claim could not take, so an attempt of
    // theirs that ends is worth a claim (the claim's own `left_behind` only says
    // so until the next claim, which finds their allowance at 0 and takes none).
    let mut capped: HashSet<String> = HashSet::new();
    loop {
        if *stopped.borrow() {
            break;
        }
        let free = slots.available_permits();
        let claimed_at = clock::system_now_millis();
        let claiming = free > 0 && left_behind;
        if claiming {
            let allowances = shares.allowances();
            match worker
                .store
                .claim_deliveries(&DeliveryClaim {
                    owner: worker.owner.clone(),
                    now_ms: claimed_at,
                    lease_ms: worker.settings.lease_ms(),
                    limit: free,
                    listener: None,
                    shares: Some(allowances.clone()),
                })
                .await
            {
                Ok(claimed) => {
                    let mut taken: HashMap<&str, usize> = HashMap::new();
                    for d in &claimed {
                        *taken.entry(d.endpoint_id.as_str()).or_default() += 1;
                    }
                    let filled: Vec<&str> = taken
                        .iter()
                        .filter(|(id, &n)| n >= allowances.of(id))
                        .map(|(id, _)| *id)
                        .collect();
                    left_behind = claimed.len() >= free || !filled.is_empty();
                    capped = allowances
                        .endpoints
                        .iter()
                        .filter(|(_, n)| *n == 0)
                        .map(|(id, _)| id.clone())
                        .chain(filled.into_iter().map(str::to_string))
                        .collect();
                    for delivery in claimed {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        shares.started(&delivery.endpoint_id);
                        let worker = worker.clone();
                        let finished = finished.clone();
                        in_flight.spawn(async move {
                            let ended = worker.deliver(delivery, &finished).await;
                            drop(permit);
                            ended
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
            }
        }
        let now = clock::system_now_millis();
        // Retries due by the claim were looked for by it. One it left (every slot
        // busy, or its endpoint's whole share in flight) is taken when one of those
        // attempts ends, which wakes this loop. Without a claim now, a due retry
        // makes the wait below zero, and the next round claims.
        let looked_for = if claiming {
            claimed_at
        } else if free == 0 {
            now
        } else {
            i64::MIN
        };
        while retries.first().is_some_and(|&at| at <= looked_for) {
            retries.pop_first();
        }
        let wait = retries
            .first()
            .map(|&at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
            .map_or(POLL_EVERY, |d| d.min(POLL_EVERY));
        tokio::select! {
            _ = worker.hub.deliveries.notified() => left_behind = true,
            _ = tokio::time::sleep(wait) => left_behind = true,
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                // Every attempt that ended meanwhile is accounted for before the
                // next claim, so it sees the shares as they are.
                let mut done = Some(done);
                while let Some(result) = done {
                    if let Ok(ended) = result {
                        left_behind |= capped.remove(&ended.endpoint_id);
                        shares.ended(&ended.endpoint_id, ended.succeeded);
                        if let Some(at) = ended.retry_at {
                            retries.insert(at);
                            if retries.len() > MAX_TRACKED_RETRIES {
                                retries.pop_last();
                            }
                        }
                    }
                    done = in_flight.try_join_next();
                }
            }
            _ = stopped.changed() => break,
        }
    }
    // Shutting down: no more claims. Attempts in flight may finish within the
    // grace period; the rest are dropped. What finished is recorded, then every
    // lease still held is given back so another node (or the next start) takes
    // those deliveries at once.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        in_flight.abort_all();
        while in_flight.join_next().await.is_some() {}
    }
    drop(finished);
    if let Err(e) = finisher.await {
        tracing::error!(error = %e, "the webhook finisher ended abnormally");
    }
    match worker.store.release_deliveries(&worker.owner).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deliveries = n, "gave webhook delivery leases back"),
        Err(e) => {
            tracing::warn!(error = %e, "giving delivery leases back failed; they will expire")
        }
    }
}

/// Records finished attempts: everything that ended while the last transaction
/// committed goes in the next one, so a busy endpoint costs one transaction per
/// batch of attempts rather than one per attempt.
async fn finish_loop(store: DynStore, mut finishing: mpsc::UnboundedReceiver<DeliveryResult>) {
    while let Some(first) = finishing.recv().await {
        let mut batch = vec![first];
        while batch.len() < FINISH_BATCH {
            match finishing.try_recv() {
                Ok(result) => batch.push(result),
                Err(_) => break,
            }
        }
        let keys: Vec<(String, String)> = batch
            .iter()
            .map(|r| (r.event_id.clone(), r.endpoint_id.clone()))
            .collect();
        match store.finish_deliveries(batch).await {
            Ok(settled) => {
                for ((event, endpoint), kept) in keys.iter().zip(settled) {
                    if !kept {
                        tracing::warn!(
                            %event,
                            %endpoint,
                            "a delivery lease ran out during its attempt; another node may repeat it"
                        );
                    }
                }
            }
            // The leases run out and the deliveries are attempted again.
            Err(e) => tracing::warn!(
                error = %e,
                attempts = keys.len(),
                "recording webhook attempts failed"
            ),
        }
    }
}

/// What one HTTP attempt came to.
struct Outcome {
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
}

impl Outcome {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The error and its causes in one line ("error sending request: ... Connection refused").
fn describe_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {:.1} s", timeout.as_secs_f64());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The first [`BODY_EXCERPT_BYTES`] of a body as text, cut at a character boundary.
pub fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(BODY_EXCERPT_BYTES)];
    let text = String::from_utf8_lossy(cut);
    let mut end = text.len().min(BODY_EXCERPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// POSTs `payload` signed with `secret`: the request every webhook attempt and
/// every `payground listen` forward makes.
pub async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    payload: &str,
    timeout: Duration,
) -> (Option<u16>, Option<String>, Option<String>, i64) {
    let started = Instant::now();
    // Real time, fresh for every attempt: SDKs compare it with their own clock.
    let header = signature_header(secret, clock::system_now(), payload.as_bytes());
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
        .header(reqwest::header::USER_AGENT, USER_AGENT)
        .header("Stripe-Signature", header)
        .body(payload.to_string())
        .send()
        .await;
    let (status, body, error) = match sent {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let mut body = Vec::new();
            let mut error = None;
            // Only an excerpt is kept, so only that much is read.
            while body.len() < BODY_EXCERPT_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(describe_error(&e, timeout));
                        break;
                    }
                }
            }
            (Some(status), Some(excerpt(&body)), error)
        }
        Err(e) => (None, None, Some(describe_error(&e, timeout))),
    };
    let latency = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    (status, body, error, latency)
}

impl Worker {
    /// One attempt of a claimed delivery; its outcome goes to the finisher.
    async fn deliver(
        &self,
        delivery: Delivery,
        finished: &mpsc::UnboundedSender<DeliveryResult>,
    ) -> Ended {
        let mut ended = Ended {
            endpoint_id: delivery.endpoint_id.clone(),
            succeeded: false,
            retry_at: None,
        };
        let prepared = self.prepare(&delivery).await;
        let (url, secret, payload) = match prepared {
            Ok(Some(p)) => p,
            Ok(None) => {
                // The event or the endpoint is gone, or the endpoint was disabled.
                let _ = finished.send(result_of(
                    &delivery,
                    &self.owner,
                    None,
                    DeliveryNext::Failed,
                ));
                return ended;
            }
            Err(e) => {
                // A store hiccup: the lease runs out and the delivery is taken again.
                tracing::warn!(event = %delivery.event_id, error = %e, "could not prepare a webhook attempt");
                return ended;
            }
        };
        let attempted_at = clock::system_now_millis();
        let (status, body, error, latency_ms) =
            post_signed(&self.client, &url, &secret, &payload, self.settings.timeout).await;
        let outcome = Outcome {
            status,
            body,
            error,
        };
        let succeeded = outcome.succeeded();
        let attempts = delivery.attempts + 1;
        let next = if succeeded {
            DeliveryNext::Succeeded
        } else {
            self.settings
                .retry_schedule
                .after_failure(attempts, clock::system_now_millis())
        };
        tracing::debug!(
            event = %delivery.event_id,
            endpoint = %delivery.endpoint_id,
            status = ?outcome.status,
            error = ?outcome.error,
            latency_ms,
            "webhook attempt"
        );
        let record = AttemptRecord {
            seq: 0,
            id: ids::new_id("wha"),
            account: delivery.account.clone(),
            event_id: delivery.event_id.clone(),
            endpoint_id: delivery.endpoint_id.clone(),
            attempt: attempts,
            attempted_at,
            status_code: outcome.status.map(i32::from),
            latency_ms,
            response_body: outcome.body,
            error: outcome.error,
            succeeded,
        };
        let _ = finished.send(result_of(&delivery, &self.owner, Some(record), next));
        ended.succeeded = succeeded;
        if let DeliveryNext::RetryAt(at) = next {
            ended.retry_at = Some(at);
        }
        ended
    }

    /// The URL, secret and event text (with its `pending_webhooks` as of now) of an
    /// attempt, or `None` when there is nothing left to deliver.
    async fn prepare(&self, d: &Delivery) -> Result<Option<(String, String, String)>, StoreError> {
        let Some(event) = self.store.get(&d.account, &d.event_id).await? else {
            return Ok(None);
        };
        let Some(row) = self.store.get(&d.account, &d.endpoint_id).await? else {
            return Ok(None);
        };
        let endpoint = match serde_json::from_str::<WebhookEndpoint>(&row.data) {
            Ok(e) if e.is_enabled() => e,
            Ok(_) => return Ok(None),
            Err(e) => {
                tracing::warn!(endpoint = %d.endpoint_id, error = %e, "stored endpoint does not decode");
                return Ok(None);
            }
        };
        let Some(secret_key) = self.secret_key(&d.account).await? else {
            return Ok(None);
        };
        let secret = endpoint_secret(&secret_key, &endpoint.id);
        let pending = self
            .store
            .pending_webhooks(&d.account, std::slice::from_ref(&d.event_id))
            .await?;
        let payload = pending
            .first()
            .and_then(|&n| event::text_with_pending(&event.data, n))
            .unwrap_or(event.data);
        Ok(Some((endpoint.url, secret, payload)))
    }

    async fn secret_key(&self, account: &str) -> Result<Option<String>, StoreError> {
        if let Some(key) = self.secrets.lock().get(account) {
            return Ok(Some(key.clone()));
        }
        let Some(found) = self.store.account(account).await? else {
            return Ok(None);
        };
        self.secrets
            .lock()
            .insert(account.to_string(), found.secret_key.clone());
        Ok(Some(found.secret_key))
    }
}

/// What finishing a claimed delivery writes.
fn result_of(
    delivery: &Delivery,
    owner: &str,
    attempt: Option<AttemptRecord>,
    next: DeliveryNext,
) -> DeliveryResult {
    DeliveryResult {
        account: delivery.account.clone(),
        event_id: delivery.event_id.clone(),
        endpoint_id: delivery.endpoint_id.clone(),
        lease_owner: owner.to_string(),
        attempt,
        next,
        now_ms: clock::system_now_millis(),
    }
}

/// Finishes one claimed delivery at once: records the attempt and moves the row on.
/// `Ok(false)`: the lease was lost (the attempt is recorded all the same).
pub async fn settle(
    store: &DynStore,
    delivery: &Delivery,
    owner: &str,
    attempt: Option<AttemptRecord>,
    next: DeliveryNext,
) -> Result<bool, StoreError> {
    let settled = store
        .finish_deliveries(vec![result_of(delivery, owner, attempt, next)])
        .await?;
    Ok(settled.first().copied().unwrap_or(false))
}

// ---------------------------------------------------------------------------
// Listeners: deliveries pulled by `payground listen`.

/// A delivery handed to a listener: the exact stored event text and the lease to
/// report back with.
pub struct Pulled {
    pub delivery: Delivery,
    pub payload: String,
}

/// Waits up to `wait` for due deliveries of the listener and leases them to `owner`.
pub async fn poll_listener(
    store: &DynStore,
    hub: &Hub,
    account: &str,
    listener: &str,
    owner: &str,
    wait: Duration,
    limit: usize,
) -> Result<Vec<Pulled>, StoreError> {
    let deadline = Instant::now() + wait;
    loop {
        let claimed = store
            .claim_deliveries(&DeliveryClaim {
                owner: owner.to_string(),
                now_ms: clock::system_now_millis(),
                lease_ms: PULL_LEASE_MS,
                limit,
                listener: Some(listener.to_string()),
                // The listener's client pulls only what it asks for.
                shares: None,
            })
            .await?;
        let mut out = Vec::new();
        // Listener ids are unique across accounts; the account guards against a mix-up.
        for delivery in claimed.into_iter().filter(|d| d.account == account) {
            match store.get(&delivery.account, &delivery.event_id).await? {
                Some(event) => {
                    let pending = store
                        .pending_webhooks(&delivery.account, std::slice::from_ref(&event.id))
                        .await?;
                    let payload = pending
                        .first()
                        .and_then(|&n| event::text_with_pending(&event.data, n))
                        .unwrap_or(event.data);
                    out.push(Pulled { delivery, payload });
                }
                None => {
                    // Purged before it was pulled: nothing left to deliver.
                    let _ = settle(store, &delivery, owner, None, DeliveryNext::Failed).await;
                }
            }
        }
        if !out.is_empty() || Instant::now() >= deadline {
            return Ok(out);
        }
        // A waiting poll ends early when the server shuts down, so it does not hold
        // the graceful shutdown up.
        let mut closing = hub.closing.subscribe();
        if *closing.borrow() {
            return Ok(out);
        }
        tokio::select! {
            _ = tokio::time::sleep(PULL_POLL_EVERY.min(deadline - Instant::now())) => {}
            _ = closing.changed() => return Ok(out),
        }
    }
}

/// What a listener reports about one forward.
pub struct PulledAttempt {
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// Settles a pulled delivery from the listener's report, with the server's retry
/// schedule. `Ok(false)`: the lease had run out (it will be pulled again).
pub async fn settle_pulled(
    store: &DynStore,
    settings: &WebhookSettings,
    delivery: &Delivery,
    lease: &str,
    report: PulledAttempt,
) -> Result<bool, StoreError> {
    let succeeded = report.status_code.is_some_and(|s| (200..300).contains(&s));
    let attempts = delivery.attempts + 1;
    let now = clock::system_now_millis();
    let next = if succeeded {
        DeliveryNext::Succeeded
    } else {
        settings.retry_schedule.after_failure(attempts, now)
    };
    let record = AttemptRecord {
        seq: 0,
        id: ids::new_id("wha"),
        account: delivery.account.clone(),
        event_id: delivery.event_id.clone(),
        endpoint_id: delivery.endpoint_id.clone(),
        attempt: attempts,
        attempted_at: now - report.latency_ms.max(0),
        status_code: report.status_code.map(i32::from),
        latency_ms: report.latency_ms.max(0),
        response_body: report
            .response_body
            .as_deref()
            .map(|b| excerpt(b.as_bytes())),
        error: report.error,
        succeeded,
    };
    settle(store, delivery, lease, Some(record), next).await
}

// ---------------------------------------------------------------------------
// Retention.

/// Deletes events older than 30 days (each account's own time) with their
/// deliveries and attempts. Reads already hide them; this reclaims the space.
async fn purge_loop(store: DynStore, mut stopped: watch::Receiver<bool>) {
    let mut wait = PURGE_FIRST_AFTER;
    loop {
        if sleep_or_stop(wait, &mut stopped).await {
            return;
        }
        wait = PURGE_EVERY;
        let accounts = match store.list_accounts().await {
            Ok(accounts) => accounts,
            Err(e) => {
                tracing::warn!(error = %e, "event purge: listing accounts failed");
                continue;
            }
        };
        for account in accounts {
            let cutoff = clock::account_now(&account) - event::RETENTION_SECS;
            // Batch after batch, so a large backlog goes without one long stall.
            loop {
                match store.purge_events(&account.id, cutoff).await {
                    Ok(0) => break,
                    Ok(n) => {
                        tracing::info!(account = %account.id, events = n, "purged old events");
                        if (n as usize) < crate::store::sqlite::PURGE_BATCH || *stopped.borrow() {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    Err(e) => {
                        tracing::warn!(account = %account.id, error = %e, "event purge failed");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with Python's hmac module:
    /// `hmac.new(b"whsec_test_secret", b"1700000000." + body, hashlib.sha256).hexdigest()`.
    const KNOWN_V1: &str = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";

    #[test]
    fn v1_signature_matches_an_independent_vector() {
        let body = br#"{"id":"evt_1","object":"event"}"#;
        assert_eq!(
            v1_signature("whsec_test_secret", 1_700_000_000, body),
            KNOWN_V1
        );
    }

    /// HMAC-SHA256 written out from its definition (RFC 2104) on plain SHA-256, to
    /// check `v1_signature` against something that shares no HMAC code with it.
    fn hmac_by_hand(key: &[u8], message: &[u8]) -> String {
        use sha2::Digest;
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let inner: Vec<u8> = block
            .iter()
            .map(|b| b ^ 0x36)
            .chain(message.iter().copied())
            .collect();
        let inner_hash = Sha256::digest(&inner);
        let outer: Vec<u8> = block
            .iter()
            .map(|b| b ^ 0x5c)
            .chain(inner_hash.iter().copied())
            .collect();
        hex::encode(Sha256::digest(&outer))
    }

    #[test]
    fn v1_signature_matches_hmac_computed_by_hand() {
        // RFC 4231, test case 2: the construction itself.
        assert_eq!(
            hmac_by_hand(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let secret = "whsec_0123456789ABCDEFGHIJKLMNOPQRSTUV";
        let body = r#"{"id":"evt_2","object":"event","data":{"object":{"name":"Zoë"}}}"#;
        let message = format!("1796126400.{body}");
        assert_eq!(
            v1_signature(secret, 1_796_126_400, body.as_bytes()),
            hmac_by_hand(secret.as_bytes(), message.as_bytes())
        );
    }

    #[test]
    fn header_has_t_v1_and_a_different_v0() {
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let header = signature_header("whsec_test_secret", 1_700_000_000, body);
        let parts: Vec<(&str, &str)> = header
            .split(',')
            .filter_map(|p| p.split_once('='))
            .collect();
        assert_eq!(parts[0], ("t", "1700000000"));
        assert_eq!(parts[1], ("v1", KNOWN_V1));
        assert_eq!(parts[2].0, "v0");
        assert_eq!(parts[2].1.len(), 64);
        assert_ne!(parts[2].1, KNOWN_V1);
        // Any change of body, time or secret changes v1.
        assert_ne!(
            v1_signature("whsec_test_secret", 1_700_000_001, body),
            KNOWN_V1
        );
        assert_ne!(
            v1_signature("whsec_test_secreT", 1_700_000_000, body),
            KNOWN_V1
        );
        assert_ne!(
            v1_signature("whsec_test_secret", 1_700_000_000, b"{}"),
            KNOWN_V1
        );
    }

    #[test]
    fn retry_schedules() {
        let s: RetrySchedule = "0.2, 0.5,1".parse().unwrap();
        assert_eq!(
            s.0,
            vec![
                Duration::from_millis(200),
                Duration::from_millis(500),
                Duration::from_secs(1)
            ]
        );
        assert_eq!(s.to_string(), "0.2,0.5,1");
        assert_eq!(s.after_failure(1, 1_000), DeliveryNext::RetryAt(1_200));
        assert_eq!(s.after_failure(3, 1_000), DeliveryNext::RetryAt(2_000));
        assert_eq!(s.after_failure(4, 1_000), DeliveryNext::Failed);
        let none: RetrySchedule = "".parse().unwrap();
        assert_eq!(none.after_failure(1, 0), DeliveryNext::Failed);
        assert!("1,x".parse::<RetrySchedule>().is_err());
        assert!("-1".parse::<RetrySchedule>().is_err());
        let default = WebhookSettings::default();
        assert_eq!(default.retry_schedule.0.len(), 3);
        assert_eq!(default.timeout, Duration::from_secs(10));
    }

    #[test]
    fn shares_grow_with_successes_and_fall_back_with_failures() {
        let mut shares = Shares::default();
        // An endpoint never seen may take the starting share.
        assert_eq!(shares.allowances().of("we_new"), MIN_SHARE);
        for _ in 0..MIN_SHARE {
            shares.started("we_1");
        }
        assert_eq!(shares.allowances().of("we_1"), 0, "its share is in flight");
        for _ in 0..MIN_SHARE {
            shares.ended("we_1", true);
        }
        assert_eq!(shares.allowances().of("we_1"), 2 * MIN_SHARE);
        // Growth stops at the largest share.
        for _ in 0..10 * MAX_SHARE {
            shares.started("we_1");
            shares.ended("we_1", true);
        }
        assert_eq!(shares.allowances().of("we_1"), MAX_SHARE);
        // Each failure halves it, never below the starting share, and an idle
        // endpoint back at the start is forgotten.
        shares.started("we_1");
        shares.ended("we_1", false);
        assert_eq!(shares.allowances().of("we_1"), MAX_SHARE / 2);
        for _ in 0..20 {
            shares.started("we_1");
            shares.ended("we_1", false);
        }
        assert_eq!(shares.allowances().of("we_1"), MIN_SHARE);
        assert!(shares.0.is_empty());
        // A hanging endpoint never gets past its starting share, whatever the others do.
        for _ in 0..MIN_SHARE {
            shares.started("we_hang");
        }
        for _ in 0..100 {
            shares.started("we_ok");
            shares.ended("we_ok", true);
        }
        let allowances = shares.allowances();
        assert_eq!(allowances.of("we_hang"), 0);
        assert!(allowances.of("we_ok") > MIN_SHARE);
    }

    #[test]
    fn excerpts_stop_at_a_kilobyte_on_a_character_boundary() {
        assert_eq!(excerpt(b"ok"), "ok");
        let long = "é".repeat(1000);
        let cut = excerpt(long.as_bytes());
        assert!(cut.len() <= BODY_EXCERPT_BYTES);
        assert!(cut.chars().all(|c| c == 'é' || c == '\u{FFFD}'));
    }
}
