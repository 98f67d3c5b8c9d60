//! The one runner of scheduled work: jobs due at a time on an account's clock.
//!
//! A job is a row of the store, written in the transaction of the state change
//! that calls for it ([`Ctx::schedule`](crate::ctx::Ctx::schedule)), so nothing is
//! kept in memory and a restart loses nothing. Every node runs this loop: it
//! claims runnable jobs with a lease (PostgreSQL's `FOR UPDATE SKIP LOCKED`,
//! SQLite's single writer), runs each through its kind's handler as an operation
//! in a fresh [`Ctx`] of the job's account, and commits the handler's batch with
//! "finish this job, held by this lease" in it: the commit removes the job only
//! while the lease is still this claim's and otherwise fails whole, so a job runs
//! once across nodes even when a slow node's lease ran out and another took it.
//!
//! A handler that fails (a 5xx) is retried with backoff, its attempts and last
//! error kept on the row. One that refuses (a 4xx: the PaymentIntent was settled
//! by the test helper meanwhile, or is gone) finds its object no longer needs the
//! job: the job is finished without effect. Between claims the loop sleeps until
//! the next runnable job, a commit that scheduled an earlier one (or moved a
//! clock) wakes it, and it looks again within [`IDLE_MS`] at most, for jobs
//! other nodes scheduled and left.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock;
use crate::ctx::Ctx;
use crate::engine::{Engine, MAX_ATTEMPTS};
use crate::error::ApiError;
use crate::ids;
use crate::jobs::settlement;
use crate::resources::{payment_intent, setup_intent};
use crate::store::{CommitError, JobClaim, JobLease, ScheduledJob, WriteBatch};

/// What runs a job: an operation over a fresh `Ctx` of the job's account. What it
/// writes commits with the job's removal; an error of 500 or more is retried, a
/// smaller one means there is nothing left to do.
pub type Handler = for<'a> fn(&'a mut Ctx, &'a ScheduledJob) -> BoxFuture<'a, Result<(), ApiError>>;

/// Kinds of jobs and their handlers.
type Handlers = &'static [(&'static str, Handler)];

/// Every kind of job and its handler.
const HANDLERS: Handlers = &[
    (payment_intent::SETTLE_JOB, settlement::settle),
    (setup_intent::SETTLE_JOB, settlement::settle_setup),
];

/// How long a claim holds its jobs: far longer than a handler takes, and how long
/// another node waits to take over the jobs of a node that stopped mid-run.
const LEASE_MS: i64 = 30_000;
/// Jobs claimed (and run side by side) at once.
const CLAIM: usize = 32;
/// The longest the loop sleeps: jobs another node scheduled and never ran (it
/// stopped), and clocks moved through another node, are seen within it.
pub const IDLE_MS: i64 = 1_000;
/// The first retry of a failed job, doubled at each failure up to the last.
const FIRST_RETRY_MS: i64 = 1_000;
const LAST_RETRY_MS: i64 = 600_000;
/// How long to wait before looking again at a runnable job that a claim passed
/// over because another transaction held its row.
const BUSY_ROW_MS: i64 = 50;
/// How long shutdown waits for the jobs in hand.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The running loop; [`Scheduler::shutdown`] stops it.
pub struct Scheduler {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts the loop on the current runtime.
pub fn start(engine: Arc<Engine>) -> Scheduler {
    start_with(engine, HANDLERS, IDLE_MS)
}

fn start_with(engine: Arc<Engine>, handlers: Handlers, idle_ms: i64) -> Scheduler {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(engine, handlers, idle_ms, stopped));
    Scheduler { stop, task }
}

impl Scheduler {
    /// Stops claiming and lets the jobs in hand finish; after the grace period
    /// the loop is dropped and their leases run out for another node to take.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the scheduler ended abnormally"),
            Err(_) => {
                tracing::warn!("scheduled jobs still running at shutdown; leaving them");
                task.abort();
            }
        }
    }
}

async fn run(
    engine: Arc<Engine>,
    handlers: Handlers,
    idle_ms: i64,
    mut stop: watch::Receiver<bool>,
) {
    let node = format!("node_{}", ids::random_string(16));
    let mut claims = 0u64;
    while !*stop.borrow() {
        engine.wakers.scheduler_looking();
        // An owner per claim: a finish can only ever remove what this claim took.
        claims += 1;
        let claim = JobClaim {
            owner: format!("{node}/{claims}"),
            now_ms: clock::system_now_millis(),
            lease_ms: LEASE_MS,
            limit: CLAIM,
        };
        let jobs = match engine.store.claim_jobs(&claim).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "claiming scheduled jobs failed; retrying");
                if sleep_or_stop(idle_ms, &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let (claimed, full) = (!jobs.is_empty(), jobs.len() == CLAIM);
        // Each job on a task of its own: one whose handler panics loses only its
        // run (its lease runs out and it is claimed again).
        let runs = jobs
            .into_iter()
            .map(|job| tokio::spawn(run_job(engine.clone(), handlers, job)));
        for run in futures::future::join_all(runs).await {
            if let Err(e) = run {
                tracing::error!(error = %e, "a scheduled job's run ended abnormally");
            }
        }
        if full {
            continue;
        }
        let next = engine.store.next_job_at().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the next job's time failed");
            None
        });
        let now = clock::system_now_millis();
        let mut wake_at = next.map_or(now + idle_ms, |at| at.min(now + idle_ms));
        if wake_at <= now {
            if claimed {
                continue;
            }
            // Runnable yet not claimed: another node's claim or finish holds the
            // row for a moment (PostgreSQL's SKIP LOCKED passed it over).
            wake_at = now + BUSY_ROW_MS;
        }
        engine.wakers.scheduler_sleeps_until(wake_at);
        let nap = Duration::from_millis(u64::try_from(wake_at - now).unwrap_or(0));
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = engine.wakers.scheduled.notified() => {}
            changed = stop.changed() => if changed.is_err() { break },
        }
    }
}

/// Sleeps `ms` or until stop is signalled; `true` when it is time to stop.
async fn sleep_or_stop(ms: i64, stop: &mut watch::Receiver<bool>) -> bool {
    let nap = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    tokio::select! {
        _ = tokio::time::sleep(nap) => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}

/// Runs one claimed job to its end: done (or moot) and removed with its effect,
/// released for a retry, or left to whoever took its lease over.
async fn run_job(engine: Arc<Engine>, handlers: Handlers, job: ScheduledJob) {
    let (engine, job) = (engine.as_ref(), &job);
    let Some(lease) = job.lease() else {
        return;
    };
    let Some(&(_, handler)) = handlers.iter().find(|(kind, _)| *kind == job.job.kind) else {
        // Written by another build: kept for one that knows it.
        return retry(engine, job, &lease, "no handler for this kind of job").await;
    };
    let account = match engine.store.account(&job.account).await {
        Ok(Some(account)) => Arc::new(account),
        Ok(None) => {
            tracing::warn!(account = %job.account, kind = %job.job.kind, object = %job.job.object,
                "a scheduled job's account is gone; dropping the job");
            let mut batch = WriteBatch {
                account: job.account.clone(),
                ..WriteBatch::default()
            };
            batch.finish_job(lease);
            if let Err(e) = engine.commit(batch).await {
                tracing::debug!(error = %e, "dropping the job failed; its lease will run out");
            }
            return;
        }
        Err(e) => return retry(engine, job, &lease, &e.to_string()).await,
    };
    let mut attempt = 0u32;
    loop {
        let mut ctx = engine.internal_context(account.clone());
        let outcome = handler(&mut ctx, job).await;
        if let Err(e) = &outcome {
            if e.status >= 500 && !ctx.commits_with_error() {
                return retry(engine, job, &lease, &e.to_string()).await;
            }
        }
        // Done, or refused because the object no longer needs the job: what the
        // handler wrote (nothing, when it refused without committing its error)
        // commits with the job's removal.
        let mut batch = ctx.into_batch(outcome.is_err());
        batch.finish_job(lease.clone());
        match engine.commit(batch).await {
            Ok(_) => {
                if let Err(e) = outcome {
                    tracing::debug!(kind = %job.job.kind, object = %job.job.object, error = %e,
                        "the job's object no longer needs it; finished without effect");
                }
                return;
            }
            Err(CommitError::Conflict(on)) if on == lease.label() => {
                tracing::debug!(kind = %job.job.kind, object = %job.job.object,
                    "the job's lease was taken over; its new holder runs it");
                return;
            }
            Err(CommitError::Conflict(on)) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(%on, "write conflict; running the job again");
                attempt += 1;
                tokio::task::yield_now().await;
            }
            Err(e) => return retry(engine, job, &lease, &e.to_string()).await,
        }
    }
}

/// Releases a failed job for a retry after a backoff that doubles with its
/// attempts.
async fn retry(engine: &Engine, job: &ScheduledJob, lease: &JobLease, error: &str) {
    let doublings = u32::try_from(job.attempts.clamp(1, 30) - 1).unwrap_or(0);
    let backoff = FIRST_RETRY_MS
        .saturating_mul(1i64 << doublings)
        .min(LAST_RETRY_MS);
    let retry_at = clock::system_now_millis() + backoff;
    tracing::warn!(kind = %job.job.kind, object = %job.job.object, attempts = job.attempts,
        retry_in_ms = backoff, error, "a scheduled job failed; it will be retried");
    match engine.store.retry_job(lease, retry_at, error).await {
        Ok(true) => {}
        Ok(false) => tracing::debug!("the failed job's lease was taken over"),
        Err(e) => {
            tracing::warn!(error = %e, "recording the failure failed; its lease will run out")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Settings;
    use crate::store::{JobId, JobSchedule, ListQuery};

    fn ran<'a>(ctx: &'a mut Ctx, job: &'a ScheduledJob) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let object = serde_json::json!({ "id": job.job.object });
            ctx.emit_value("test.ran", &object, None);
            Ok(())
        })
    }

    fn refused<'a>(ctx: &'a mut Ctx, _: &'a ScheduledJob) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            ctx.emit_value("test.refused", &serde_json::json!({}), None);
            Err(ApiError::invalid_request("There is nothing left to do."))
        })
    }

    fn failed<'a>(ctx: &'a mut Ctx, _: &'a ScheduledJob) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            ctx.emit_value("test.failed", &serde_json::json!({}), None);
            Err(ApiError::internal("the test handler", "fails"))
        })
    }

    const TEST_HANDLERS: Handlers = &[
        ("test.ran", ran),
        ("test.refused", refused),
        ("test.failed", failed),
    ];

    /// An engine on a fresh SQLite file with one account; the file's folder.
    async fn engine() -> (Arc<Engine>, Arc<crate::store::Account>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("payground-sched-{}", ids::random_string(12)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("jobs.db");
        let store: crate::store::DynStore = Arc::new(
            crate::store::sqlite::SqliteStore::open(path.to_str().expect("utf-8 path"))
                .expect("open"),
        );
        let account = crate::accounts::create(&store, None, None)
            .await
            .expect("account");
        let engine = Engine::new(store, "http://x".into(), Arc::new(Settings::default()));
        (Arc::new(engine), Arc::new(account), dir)
    }

    async fn schedule(
        engine: &Engine,
        account: &crate::store::Account,
        jobs: &[(&str, &str, i64)],
    ) {
        let batch = WriteBatch {
            account: account.id.clone(),
            jobs: jobs
                .iter()
                .map(|(kind, object, due_at)| JobSchedule {
                    job: JobId {
                        kind: kind.to_string(),
                        object: object.to_string(),
                    },
                    due_at: *due_at,
                    clock: None,
                })
                .collect(),
            ..WriteBatch::default()
        };
        engine.commit(batch).await.expect("schedule");
    }

    async fn job(engine: &Engine, account: &str, kind: &str, object: &str) -> Option<ScheduledJob> {
        let id = JobId {
            kind: kind.into(),
            object: object.into(),
        };
        engine.store.job(account, &id).await.expect("job")
    }

    async fn events(engine: &Engine, account: &str, event_type: &str) -> usize {
        let query = ListQuery {
            kind: "event".into(),
            filter: Some(("type".into(), event_type.into())),
            limit: 100,
            ..Default::default()
        };
        engine
            .store
            .list(account, &query)
            .await
            .expect("list")
            .len()
    }

    /// Waits up to ten seconds for `done`.
    async fn until<F: std::future::Future<Output = bool>>(mut done: impl FnMut() -> F) -> bool {
        for _ in 0..200 {
            if done().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// A job that runs is removed with its effect; one refused is removed without
    /// its effect; one that fails stays, released for a retry with its error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handlers_finish_refuse_or_retry() {
        let (engine, account, dir) = engine().await;
        let due = account.now() - 1;
        schedule(
            &engine,
            &account,
            &[
                ("test.ran", "obj_1", due),
                ("test.refused", "obj_2", due),
                ("test.failed", "obj_3", due),
                ("test.unknown", "obj_4", due),
            ],
        )
        .await;
        let scheduler = start_with(engine.clone(), TEST_HANDLERS, 60_000);
        let id = account.id.clone();
        let settled = until(|| {
            let (engine, id) = (engine.clone(), id.clone());
            async move {
                job(&engine, &id, "test.ran", "obj_1").await.is_none()
                    && job(&engine, &id, "test.refused", "obj_2").await.is_none()
                    && job(&engine, &id, "test.failed", "obj_3")
                        .await
                        .is_some_and(|j| j.last_error.is_some())
            }
        })
        .await;
        scheduler.shutdown().await;
        assert!(settled, "the jobs did not run");
        assert_eq!(events(&engine, &id, "test.ran").await, 1);
        assert_eq!(
            events(&engine, &id, "test.refused").await,
            0,
            "a refusal leaves no effect"
        );
        assert_eq!(events(&engine, &id, "test.failed").await, 0);
        let failed = job(&engine, &id, "test.failed", "obj_3")
            .await
            .expect("kept");
        assert!(
            failed.attempts >= 1 && failed.lease_owner.is_none(),
            "{failed:?}"
        );
        assert!(
            failed
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("500")),
            "{failed:?}"
        );
        assert!(
            failed.runnable_at > Some(crate::clock::system_now_millis()),
            "retried later"
        );
        let unknown = job(&engine, &id, "test.unknown", "obj_4")
            .await
            .expect("kept");
        assert!(unknown.last_error.is_some_and(|e| e.contains("no handler")));
        drop(engine);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A sleeping scheduler wakes for a job committed due before its next wake,
    /// and for a clock moved past a job's due time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_and_clock_moves_wake_the_scheduler() {
        let (engine, account, dir) = engine().await;
        let scheduler = start_with(engine.clone(), TEST_HANDLERS, 600_000);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let id = account.id.clone();
        let gone = |object: &'static str| {
            let (engine, id) = (engine.clone(), id.clone());
            move || {
                let (engine, id) = (engine.clone(), id.clone());
                async move { job(&engine, &id, "test.ran", object).await.is_none() }
            }
        };
        schedule(&engine, &account, &[("test.ran", "obj_now", account.now())]).await;
        assert!(until(gone("obj_now")).await, "a job due now did not run");

        schedule(
            &engine,
            &account,
            &[("test.ran", "obj_later", account.now() + 3_600)],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            job(&engine, &id, "test.ran", "obj_later").await.is_some(),
            "not due yet"
        );
        engine.set_clock_offset(&id, 7_200).await.expect("clock");
        assert!(
            until(gone("obj_later")).await,
            "the moved clock did not run the job"
        );
        scheduler.shutdown().await;
        assert_eq!(events(&engine, &id, "test.ran").await, 2);
        drop(engine);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
