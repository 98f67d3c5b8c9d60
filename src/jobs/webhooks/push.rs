//! Pushing events to webhook endpoints: the delivery loop that leases due
//! deliveries within each endpoint's share, the signed POST, and the finisher that
//! records attempts and moves deliveries on in batches.

use super::*;

/// Attempts in flight per node.
pub(super) const MAX_IN_FLIGHT: usize = 512;
/// Attempts in flight per endpoint per node: where every endpoint starts and what a
/// failing one comes back to. An attempt at an endpoint that hangs holds its slot
/// for the whole timeout; with this share such an endpoint holds 4 of the node's
/// slots and only its own deliveries queue up.
pub const MIN_SHARE: usize = 4;
/// The most attempts in flight at one healthy endpoint per node.
pub const MAX_SHARE: usize = 256;
/// Attempts finished together, at most, in one transaction.
pub(super) const FINISH_BATCH: usize = 512;
/// How often other nodes' work and due retries are looked for without a wake-up.
pub(super) const POLL_EVERY: Duration = Duration::from_millis(500);
/// Retry times the delivery loop remembers to wake for; later ones wait for a poll.
pub(super) const MAX_TRACKED_RETRIES: usize = 4_096;
/// How long shutdown waits for attempts in flight before giving their leases back.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(super) struct Worker {
    pub(super) store: DynStore,
    pub(super) hub: Arc<Hub>,
    pub(super) settings: WebhookSettings,
    /// This node's name on the leases it takes.
    pub(super) owner: String,
    pub(super) client: reqwest::Client,
    /// Accounts' secret keys, which endpoint secrets derive from: they never change.
    pub(super) secrets: Mutex<HashMap<String, String>>,
}

// ---------------------------------------------------------------------------
// Delivery.

/// An endpoint's share of this node's attempts (see the module's documentation).
pub(super) struct Share {
    size: usize,
    in_flight: usize,
}

/// The shares of the endpoints this node is attempting or has seen grow.
#[derive(Default)]
pub(super) struct Shares(HashMap<String, Share>);

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
pub(super) struct Ended {
    endpoint_id: String,
    succeeded: bool,
    retry_at: Option<i64>,
}

pub(super) async fn delivery_loop(worker: Arc<Worker>, mut stopped: watch::Receiver<bool>) {
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
            _ = worker.hub.wakers.deliveries.notified() => left_behind = true,
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
pub(super) async fn finish_loop(
    store: DynStore,
    mut finishing: mpsc::UnboundedReceiver<DeliveryResult>,
) {
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
pub(super) struct Outcome {
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
pub(super) fn describe_error(e: &reqwest::Error, timeout: Duration) -> String {
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
pub(super) fn result_of(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
