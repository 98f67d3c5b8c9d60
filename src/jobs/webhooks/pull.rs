//! Deliveries that `payground listen` pulls: the long poll that leases a
//! listener's due deliveries, and the report of each attempt it made.

use super::*;

/// How long a listener has to forward what it pulled and report back.
pub const PULL_LEASE_MS: i64 = 120_000;
/// How often a waiting poll looks for new deliveries.
pub(super) const PULL_POLL_EVERY: Duration = Duration::from_millis(100);

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
