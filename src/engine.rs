//! The engine: runs resource operations in units of work ([`Ctx`]) and commits
//! them, for API requests and background jobs alike.
//!
//! It holds the one rule about failures: an operation that fails leaves no
//! trace. Its writes are dropped with the error, unless the operation chose to
//! commit them with it ([`Ctx::commit_with_error`]: a card decline, which Stripe
//! keeps with its failed charge and the PaymentIntent's `last_payment_error`).
//! The http layer adds what only an API request has on top (idempotency,
//! expansion, the answer); jobs and hosted pages use [`run_as!`](crate::run_as),
//! and the scheduler runs each job's handler in an [`Engine::internal_context`]
//! whose batch also finishes the job.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::ctx::{Ctx, KeyKind, RequestInfo, Settings};
use crate::error::{ApiError, ErrorType};
use crate::store::{Account, CommitError, Committed, DynStore, StoreResult, WriteBatch};

/// Attempts of one operation that keeps losing optimistic-concurrency races.
pub const MAX_ATTEMPTS: u32 = 50;

/// What an operation that lost [`MAX_ATTEMPTS`] races answers: Stripe's
/// `lock_timeout`, a 429 the SDKs retry, not an `api_error`.
pub fn conflict_exhausted(attempts: u32) -> ApiError {
    tracing::warn!(
        attempts,
        "operation kept conflicting; answering lock_timeout"
    );
    ApiError::new(
        429,
        ErrorType::InvalidRequestError,
        "This object cannot be accessed right now because another API request or Stripe process is currently accessing it. If you see this error intermittently, retry the request. If you see this error frequently and are making multiple concurrent requests to a single object, make your requests serially or at a lower rate.",
    )
    .with_code("lock_timeout")
}

/// Background work that a commit can make due, woken at once instead of at its
/// next poll.
pub struct Wakers {
    /// A commit created webhook deliveries (or a resend made one due).
    pub deliveries: Notify,
    /// A job became runnable before the scheduler meant to wake (see
    /// [`Wakers::job_runnable_at`]), or an account's clock moved.
    pub scheduled: Notify,
    /// When the scheduler wakes by itself (unix milliseconds, real time);
    /// `i64::MAX` while it looks for work, so that whatever is scheduled
    /// meanwhile wakes it again.
    scheduler_wakes_at: AtomicI64,
}

impl Default for Wakers {
    fn default() -> Self {
        Wakers {
            deliveries: Notify::new(),
            scheduled: Notify::new(),
            scheduler_wakes_at: AtomicI64::new(i64::MAX),
        }
    }
}

impl Wakers {
    fn committed(&self, committed: Committed) {
        if committed.deliveries {
            self.deliveries.notify_one();
        }
        if let Some(at) = committed.scheduled {
            self.job_runnable_at(at);
        }
    }

    /// A job is runnable at `at` (unix milliseconds): wakes the scheduler when it
    /// sleeps past that. A job further off costs no wake-up.
    pub fn job_runnable_at(&self, at: i64) {
        if at < self.scheduler_wakes_at.load(Ordering::SeqCst) {
            self.scheduled.notify_one();
        }
    }

    /// The scheduler is about to look for work: every job scheduled from now
    /// until it sleeps wakes it again (it may have looked too early to see it).
    pub fn scheduler_looking(&self) {
        self.scheduler_wakes_at.store(i64::MAX, Ordering::SeqCst);
    }

    /// The scheduler sleeps until `at` unless woken.
    pub fn scheduler_sleeps_until(&self, at: i64) {
        self.scheduler_wakes_at.store(at, Ordering::SeqCst);
    }
}

pub struct Engine {
    pub store: DynStore,
    /// The base of URLs handed out in objects (hosted pages, receipts).
    pub public_url: String,
    pub settings: Arc<Settings>,
    pub wakers: Arc<Wakers>,
}

impl Engine {
    pub fn new(store: DynStore, public_url: String, settings: Arc<Settings>) -> Self {
        Engine {
            store,
            public_url,
            settings,
            wakers: Arc::default(),
        }
    }

    /// A unit of work for one attempt of an operation, at the account's time.
    pub fn context(&self, account: Arc<Account>, request: RequestInfo) -> Ctx {
        let now = account.now();
        Ctx::new(
            self.store.clone(),
            account,
            now,
            request,
            self.public_url.clone(),
            self.settings.clone(),
        )
    }

    /// A unit of work not tied to an API request (hosted pages, background jobs):
    /// no idempotency key, and events carry `request.id = null`.
    pub fn internal_context(&self, account: Arc<Account>) -> Ctx {
        self.context(
            account,
            RequestInfo {
                request_id: String::new(),
                idempotency_key: None,
                key_kind: KeyKind::Secret,
            },
        )
    }

    /// Commits a batch and wakes the background work it made due.
    pub async fn commit(&self, batch: WriteBatch) -> Result<Committed, CommitError> {
        let committed = self.store.commit(batch).await?;
        self.wakers.committed(committed);
        Ok(committed)
    }

    /// Moves an account's clock forward (never back): its jobs on that clock
    /// whose due time it passes become runnable, and the scheduler looks at once.
    pub async fn set_clock_offset(&self, account: &str, offset: i64) -> StoreResult<()> {
        self.store.set_clock_offset(account, offset).await?;
        self.wakers.scheduled.notify_one();
        Ok(())
    }
}

/// Runs an operation outside an API request for one account (hosted pages, jobs):
/// commits what it wrote when it succeeds (or chose to commit with its error),
/// and runs it again on fresh data when it loses a race.
///
/// `run_as!(engine, account, |ctx| payment_intent::settle(&mut ctx, &id).await)`
///
/// A macro rather than a method taking an async closure: the operation borrows
/// the fresh `Ctx` of each attempt, and futures borrowing through a closure
/// cannot yet promise the `Send` a spawned job needs.
#[macro_export]
macro_rules! run_as {
    ($engine:expr, $account:expr, |$ctx:ident| $op:expr) => {{
        let mut attempt = 0u32;
        loop {
            #[allow(unused_mut)]
            let mut $ctx = $engine.internal_context($account.clone());
            let outcome = $op;
            let batch = $ctx.into_batch(outcome.is_err());
            if batch.is_empty() {
                break outcome;
            }
            match $engine.commit(batch).await {
                Ok(_) => break outcome,
                Err($crate::store::CommitError::Conflict(id))
                    if attempt < $crate::engine::MAX_ATTEMPTS =>
                {
                    tracing::debug!(%id, "write conflict; running the operation again");
                    attempt += 1;
                    tokio::task::yield_now().await;
                }
                Err($crate::store::CommitError::Conflict(_)) => {
                    break Err($crate::engine::conflict_exhausted(attempt))
                }
                Err(e) => break Err($crate::error::ApiError::internal("commit failed", e)),
            }
        }
    }};
}
