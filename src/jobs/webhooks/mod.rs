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
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::clock;
use crate::engine::Wakers;
use crate::ids;
use crate::resources::event;
use crate::resources::webhook_endpoint::{endpoint_secret, WebhookEndpoint};
use crate::store::{
    AttemptRecord, Delivery, DeliveryClaim, DeliveryNext, DeliveryResult, DynStore, EndpointShares,
    StoreError,
};

mod pull;
mod purge;
mod push;
mod signature;

pub use pull::{poll_listener, settle_pulled, Pulled, PulledAttempt, PULL_LEASE_MS};
use purge::purge_loop;
use push::{delivery_loop, settle, Worker};
pub use push::{post_signed, MAX_SHARE, MIN_SHARE};
pub use signature::{signature_header, v1_signature};

/// The User-Agent Stripe's webhooks carry.
pub const USER_AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// Stripe test mode retries three times over a few hours.
pub const DEFAULT_RETRY_SCHEDULE: &str = "60,1800,7200";
pub const DEFAULT_TIMEOUT_SECS: f64 = 10.0;
/// How much of a response body an attempt keeps.
pub const BODY_EXCERPT_BYTES: usize = 1024;
/// A delivery lease outlives the attempt's timeout by this much.
const LEASE_MARGIN_MS: i64 = 5_000;

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
    /// `deliveries` is notified when deliveries may have become due (a commit
    /// created some, a resend).
    pub wakers: Arc<Wakers>,
    settings: OnceLock<WebhookSettings>,
    /// Set when the server begins shutting down: long polls return at once.
    closing: watch::Sender<bool>,
}

impl Hub {
    pub fn new(wakers: Arc<Wakers>) -> Self {
        Hub {
            wakers,
            settings: OnceLock::new(),
            closing: watch::channel(false).0,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn excerpts_stop_at_a_kilobyte_on_a_character_boundary() {
        assert_eq!(excerpt(b"ok"), "ok");
        let long = "é".repeat(1000);
        let cut = excerpt(long.as_bytes());
        assert!(cut.len() <= BODY_EXCERPT_BYTES);
        assert!(cut.chars().all(|c| c == 'é' || c == '\u{FFFD}'));
    }
}
