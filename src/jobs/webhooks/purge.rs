//! The purge of events past Stripe's 30 days, with their deliveries and
//! attempts.

use super::*;

/// How often the purge of old events runs, and how long the first one waits.
pub(super) const PURGE_EVERY: Duration = Duration::from_secs(10 * 60);
pub(super) const PURGE_FIRST_AFTER: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Retention.

/// Deletes events older than 30 days (each account's own time) with their
/// deliveries and attempts. Reads already hide them; this reclaims the space.
pub(super) async fn purge_loop(store: DynStore, mut stopped: watch::Receiver<bool>) {
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
            let cutoff = account.now() - event::RETENTION_SECS;
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
