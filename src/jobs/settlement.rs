//! Bank-debit settlement, as scheduled work: a debit that starts `processing`
//! schedules `payment_intent.settle` at the end of `--settlement-delay`, in the
//! same transaction, and the scheduler runs [`settle`] once it is due; a
//! bank-debit SetupIntent does the same with `setup_intent.settle`
//! ([`settle_setup`]). The test helpers that settle at once remove the job in
//! their own transaction.

use futures::future::BoxFuture;

use crate::ctx::{Ctx, StripeObject};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::resources::charge::Charge;
use crate::resources::payment_intent::{self, PaymentIntent};
use crate::resources::setup_intent;
use crate::store::{Cursor, ListQuery, ScheduledJob};

/// The handler of [`payment_intent::SETTLE_JOB`]: settles the debit by its test
/// account numbers. A PaymentIntent no longer processing (or gone) is refused,
/// which finishes the job without effect.
pub fn settle<'a>(ctx: &'a mut Ctx, job: &'a ScheduledJob) -> BoxFuture<'a, Result<(), ApiError>> {
    Box::pin(async move { payment_intent::settle(ctx, &job.job.object).await.map(drop) })
}

/// The handler of [`setup_intent::SETTLE_JOB`]: settles a bank-debit setup as
/// [`settle`] does a debit.
pub fn settle_setup<'a>(
    ctx: &'a mut Ctx,
    job: &'a ScheduledJob,
) -> BoxFuture<'a, Result<(), ApiError>> {
    Box::pin(async move { setup_intent::settle(ctx, &job.job.object).await.map(drop) })
}

/// Set in `meta` once every processing PaymentIntent has its settlement job.
const EARLIER_DEBITS_SCHEDULED: &str = "settlement_jobs_scheduled";
/// Processing PaymentIntents scheduled per batch.
const PAGE: usize = 100;

/// Gives the processing PaymentIntents of a database written before settlement
/// was scheduled work their jobs, due when they were due then (their charge's
/// creation plus the delay), once per database: a `meta` key says it was done.
/// Nodes starting together may both do it; scheduling a job again only writes
/// the same due time. Returns how many were scheduled.
pub async fn schedule_earlier_debits(engine: &Engine) -> Result<usize, ApiError> {
    let store = &engine.store;
    let store_err =
        |what: &'static str| move |e: crate::store::StoreError| ApiError::internal(what, e);
    if store
        .meta_get(EARLIER_DEBITS_SCHEDULED)
        .await
        .map_err(store_err("reading meta"))?
        .is_some()
    {
        return Ok(0);
    }
    let delay = i64::try_from(engine.settings.settlement_delay.as_secs()).unwrap_or(i64::MAX);
    let mut scheduled = 0;
    for account in store
        .list_accounts()
        .await
        .map_err(store_err("listing accounts"))?
    {
        let account = std::sync::Arc::new(account);
        let mut cursor = Cursor::Newest;
        loop {
            let query = ListQuery {
                kind: PaymentIntent::OBJECT.to_string(),
                filter: Some(("status".to_string(), "processing".to_string())),
                cursor,
                limit: PAGE,
                ..Default::default()
            };
            let rows = store
                .list(&account.id, &query)
                .await
                .map_err(store_err("listing processing payments"))?;
            let mut ctx = engine.internal_context(account.clone());
            for row in &rows {
                let Ok(pi) = serde_json::from_str::<PaymentIntent>(&row.data) else {
                    continue;
                };
                let started = match &pi.latest_charge {
                    Some(id) => ctx.find::<Charge>(id).await?.map(|c| c.created),
                    None => None,
                };
                let due_at = started.unwrap_or(ctx.now).saturating_add(delay);
                ctx.schedule(payment_intent::SETTLE_JOB, &pi.id, due_at);
                scheduled += 1;
            }
            engine
                .commit(ctx.into_batch(false))
                .await
                .map_err(|e| ApiError::internal("scheduling settlements", e))?;
            match rows.last() {
                Some(last) if rows.len() == PAGE => cursor = Cursor::Before(last.seq),
                _ => break,
            }
        }
    }
    store
        .meta_set(EARLIER_DEBITS_SCHEDULED, "1")
        .await
        .map_err(store_err("writing meta"))?;
    if scheduled > 0 {
        tracing::info!(
            scheduled,
            "processing debits of an earlier version scheduled to settle"
        );
    }
    Ok(scheduled)
}
