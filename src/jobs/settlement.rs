//! Settles processing bank debits once their delay has passed.
//!
//! Nothing is kept in memory: each pass looks up the processing PaymentIntents of
//! every account (an index row per status), so pending settlements survive restarts.
//! Several nodes may run this at once: settling is a version-checked write, and the
//! state machine refuses to settle twice, so each payment settles exactly once.

use std::time::Duration;

use crate::ctx::StripeObject;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::resources::charge::Charge;
use crate::resources::payment_intent::{self, PaymentIntent};
use crate::store::ListQuery;

const PASS_INTERVAL: Duration = Duration::from_millis(500);
const BATCH: usize = 100;

/// Runs until the process stops.
pub async fn run(engine: std::sync::Arc<Engine>, delay: Duration) {
    loop {
        if let Err(e) = pass(&engine, delay).await {
            tracing::warn!(error = %e, "settlement pass failed; retrying");
        }
        tokio::time::sleep(PASS_INTERVAL).await;
    }
}

/// One pass over every account; returns how many payments settled.
pub async fn pass(engine: &Engine, delay: Duration) -> Result<usize, ApiError> {
    let accounts = engine
        .store
        .list_accounts()
        .await
        .map_err(|e| ApiError::internal("listing accounts", e))?;
    let mut settled = 0;
    for account in accounts {
        let account = std::sync::Arc::new(account);
        let now = account.now();
        let query = ListQuery {
            kind: PaymentIntent::OBJECT.to_string(),
            filter: Some(("status".to_string(), "processing".to_string())),
            limit: BATCH,
            ..Default::default()
        };
        let rows = engine
            .store
            .list(&account.id, &query)
            .await
            .map_err(|e| ApiError::internal("listing processing payments", e))?;
        for row in rows {
            let Ok(pi) = serde_json::from_str::<PaymentIntent>(&row.data) else {
                continue;
            };
            let Some(charge_id) = pi.latest_charge.clone() else {
                continue;
            };
            let mut ctx = engine.internal_context(account.clone());
            let started = match ctx.find::<Charge>(&charge_id).await? {
                Some(c) => c.created,
                None => continue,
            };
            if now < started + delay.as_secs() as i64 {
                continue;
            }
            let result = crate::run_as!(engine, account, |ctx| payment_intent::settle(
                &mut ctx, &pi.id
            )
            .await);
            match result {
                Ok(_) => settled += 1,
                // Another node (or the test helper) settled it first.
                Err(e) if e.code.as_deref() == Some("payment_intent_unexpected_state") => {}
                Err(e) => tracing::warn!(payment_intent = %pi.id, error = %e, "settlement failed"),
            }
        }
    }
    Ok(settled)
}
