//! `payground-bench webhook`: webhook delivery latency, from the API's answer to a
//! confirm (payground answers after the commit) to the arrival of its
//! `payment_intent.succeeded` event at a receiver in this process.
//!
//! ```text
//! payground-bench webhook --url http://127.0.0.1:PORT --key sk_test_... --rate 5000 --duration 10
//!                         [--warmup 1] [--connections 32] [--requests N] [--pid PID]... [--watch NAME=PID]...
//!                         [--system NAME] [--tag k=v]... [--threads 1]
//! ```
//!
//! It starts an HTTP/1.1 receiver on 127.0.0.1 (a free port), creates a webhook
//! endpoint on the account (`url=http://127.0.0.1:PORT/hook`,
//! `enabled_events[]=payment_intent.succeeded`), then sends the `confirm` workload's
//! request open loop at `--rate` (request i due at start + i/rate) for `--warmup` +
//! `--duration` seconds, recording when each 200 arrived and the PaymentIntent id it
//! names. The receiver answers every POST with 200 at once; before that it takes the
//! arrival time, finds `data.object.id` in the body by a scan (no JSON parse) and
//! checks the `Stripe-Signature` header's `v1` (HMAC-SHA256 keyed with the endpoint's
//! `secret`, over `"<t>.<body>"`, timestamp within 300 s). After the load it waits
//! (at most 10 s) for the events still on their way, deletes the endpoint and prints
//! one JSON line: payments, events received, missing, duplicates, signature
//! failures and percentiles of (arrival − response). An event may arrive before
//! the driver has read the response that committed it; such negative latencies
//! count as 0 and are counted (`negative_clamped`).
//!
//! Payments answered during the warm-up are sent but not counted, nor are their
//! events. Bounded: at most `MAX_PAYMENTS` payments are tracked, `MAX_RECEIPTS`
//! arrivals recorded, `MAX_RECEIVER_CONNECTIONS` receiver connections open, request
//! bodies up to `MAX_BODY` bytes; only loopback targets (checked by `parse_args`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{
    call, error_excerpt, find_id, max_ms, ncpu, new_hist, proc_status_kb, quantile_ms, sample,
    tag_value, Opts, CONFIRM_BODY, DRAIN_GRACE,
};

/// Payments tracked per run (their ids and response times stay in memory).
const MAX_PAYMENTS: u64 = 5_000_000;
/// Arrivals recorded per run (duplicates and retries included).
const MAX_RECEIPTS: usize = 10_000_000;
const MAX_RECEIVER_CONNECTIONS: usize = 1024;
const MAX_BODY: usize = 1 << 20;
/// How long to wait after the load for events still on their way.
const STRAGGLER_WAIT: Duration = Duration::from_secs(10);
/// Stripe's libraries refuse signatures older than this.
const SIGNATURE_TOLERANCE_S: i64 = 300;

/// What the receiver saw.
#[derive(Default)]
struct Inbox {
    /// (PaymentIntent id, arrival) in arrival order; None when no id was found.
    arrivals: Vec<(Option<String>, Instant)>,
    overflow: u64,
}

struct Receiver {
    inbox: Mutex<Inbox>,
    /// The endpoint's `whsec_...`, set once it is created.
    secret: Mutex<Option<Vec<u8>>>,
    signature_failures: AtomicU64,
    other_events: AtomicU64,
    requests: AtomicU64,
    too_large: AtomicU64,
}

/// `t=...,v1=...` checked against `secret`: true when one `v1` matches.
fn signature_ok(secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    let Some(header) = header else { return false };
    let mut t = None;
    let mut v1s = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1s.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if (now - t).abs() > SIGNATURE_TOLERANCE_S {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    v1s.iter().any(|v| hex_eq(v, &expected))
}

/// Whether a lowercase (or uppercase) hex text spells `bytes`.
fn hex_eq(text: &str, bytes: &[u8]) -> bool {
    let t = text.as_bytes();
    if t.len() != bytes.len() * 2 {
        return false;
    }
    let nib = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut diff = 0u8;
    for (i, b) in bytes.iter().enumerate() {
        match (nib(t[2 * i]), nib(t[2 * i + 1])) {
            (Some(h), Some(l)) => diff |= ((h << 4) | l) ^ b,
            _ => return false,
        }
    }
    diff == 0
}

/// `data.object.id` of an event body, by a scan: the first `"id": "pi_..."` after
/// `"data"`.
fn object_id(body: &[u8]) -> Option<String> {
    let pos = body.windows(7).position(|w| w == b"\"data\":")?;
    find_id(&body[pos..], "pi_")
}

fn is_succeeded(body: &[u8]) -> bool {
    let needle: &[u8] = b"payment_intent.succeeded";
    body.windows(needle.len()).any(|w| w == needle)
}

async fn handle(
    rx: Arc<Receiver>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, String> {
    rx.requests.fetch_add(1, Ordering::Relaxed);
    let sig = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            rx.too_large.fetch_add(1, Ordering::Relaxed);
            return Ok(Response::builder()
                .status(413)
                .body(Full::new(Bytes::new()))
                .expect("response"));
        }
    };
    let at = Instant::now();
    let secret = rx.secret.lock().expect("secret").clone();
    let signed = secret.is_some_and(|s| signature_ok(&s, sig.as_deref(), &body));
    if !signed {
        rx.signature_failures.fetch_add(1, Ordering::Relaxed);
    }
    if is_succeeded(&body) {
        let id = object_id(&body);
        let mut inbox = rx.inbox.lock().expect("inbox");
        if inbox.arrivals.len() < MAX_RECEIPTS {
            inbox.arrivals.push((id, at));
        } else {
            inbox.overflow += 1;
        }
    } else {
        rx.other_events.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Response::new(Full::new(Bytes::new())))
}

async fn serve(listener: TcpListener, rx: Arc<Receiver>) {
    let permits = Arc::new(Semaphore::new(MAX_RECEIVER_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let rx = rx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(rx.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(permit);
        });
    }
}

fn request(o: &Opts, auth: &str, method: Method, path: &str, body: String) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(hyper::header::HOST, &o.host_header)
        .header(hyper::header::AUTHORIZATION, auth)
        .header(hyper::header::USER_AGENT, "payground-bench/0.1");
    if method == Method::POST {
        b = b.header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    }
    b.body(Full::new(Bytes::from(body))).expect("request")
}

struct Load {
    auth: String,
    next: AtomicU64,
    measured: AtomicU64,
    limit: u64,
    start: Instant,
    measure_start: Instant,
    end: Instant,
}

#[derive(Default)]
struct WorkerOut {
    /// (PaymentIntent id, response time, measured).
    answered: Vec<(String, Instant, bool)>,
    api_hist: Option<hdrhistogram::Histogram<u64>>,
    errors: u64,
    dropped: u64,
    first_error: Option<String>,
    sample_body: Option<String>,
}

async fn worker(o: Arc<Opts>, load: Arc<Load>, addr: SocketAddr) -> WorkerOut {
    let mut out = WorkerOut::default();
    let mut conn = None;
    let period = 1.0 / o.rate;
    loop {
        let i = load.next.fetch_add(1, Ordering::Relaxed);
        let due = load.start + Duration::from_secs_f64(i as f64 * period);
        if due >= load.end {
            break;
        }
        let measured = due >= load.measure_start;
        if measured && load.measured.fetch_add(1, Ordering::Relaxed) >= load.limit {
            break;
        }
        if Instant::now() > load.end + DRAIN_GRACE {
            out.dropped += 1;
            continue;
        }
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let req = request(
            &o,
            &load.auth,
            Method::POST,
            "/v1/payment_intents",
            CONFIRM_BODY.to_string(),
        );
        match call(&mut conn, addr, o.timeout, req).await {
            Ok((200, body)) => {
                let at = Instant::now();
                if measured {
                    let us = (at.saturating_duration_since(due).as_micros() as u64)
                        .clamp(1, 120_000_000);
                    let _ = out.api_hist.get_or_insert_with(new_hist).record(us);
                }
                match find_id(&body, "pi_") {
                    Some(id) => out.answered.push((id, at, measured)),
                    None => out.errors += 1,
                }
                if out.sample_body.is_none() {
                    out.sample_body = Some(String::from_utf8_lossy(&body).into_owned());
                }
            }
            Ok((status, body)) => {
                out.errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(error_excerpt(status, &body));
                }
            }
            Err(e) => {
                out.errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(e);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    out
}

fn pct_from(a: Option<u64>, b: Option<u64>, seconds: f64) -> Value {
    match (a, b) {
        (Some(a), Some(b)) => {
            json!((b.saturating_sub(a) as f64 / 100.0 / seconds * 1000.0).round() / 10.0)
        }
        _ => Value::Null,
    }
}

pub async fn run(o: Opts) -> Result<Value, String> {
    if o.rate <= 0.0 {
        return Err("webhook needs --rate R (payments per second, open loop)".into());
    }
    let auth = format!("Bearer {}", o.key);
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| {
        l.split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
    });

    // The receiver.
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("receiver bind: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let rx = Arc::new(Receiver {
        inbox: Mutex::new(Inbox::default()),
        secret: Mutex::new(None),
        signature_failures: AtomicU64::new(0),
        other_events: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        too_large: AtomicU64::new(0),
    });
    let server = tokio::spawn(serve(listener, rx.clone()));

    // The endpoint.
    let mut admin = None;
    let form = format!(
        "url=http%3A%2F%2F127.0.0.1%3A{port}%2Fhook&enabled_events%5B%5D=payment_intent.succeeded"
    );
    let created = call(
        &mut admin,
        o.addr,
        Duration::from_secs(10),
        request(&o, &auth, Method::POST, "/v1/webhook_endpoints", form),
    )
    .await?;
    if created.0 != 200 {
        server.abort();
        return Err(format!(
            "creating the webhook endpoint: {} {}",
            created.0,
            String::from_utf8_lossy(&created.1)
        ));
    }
    let endpoint: Value = serde_json::from_slice(&created.1).map_err(|e| e.to_string())?;
    let endpoint_id = endpoint["id"].as_str().unwrap_or_default().to_string();
    let secret = endpoint["secret"]
        .as_str()
        .ok_or("the webhook endpoint has no secret")?
        .to_string();
    *rx.secret.lock().expect("secret") = Some(secret.into_bytes());

    // The load.
    let o = Arc::new(o);
    let start = Instant::now() + Duration::from_millis(20);
    let measure_start = start + o.warmup;
    let end = measure_start + o.duration;
    let load = Arc::new(Load {
        auth: auth.clone(),
        next: AtomicU64::new(0),
        measured: AtomicU64::new(0),
        limit: o.requests.min(MAX_PAYMENTS),
        start,
        measure_start,
        end,
    });
    let (pids, watch) = (o.pids.clone(), o.watch.clone());
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        sample(&pids, &watch, None)
    });
    let mut handles = Vec::new();
    for i in 0..o.connections {
        let addr = o.addrs[i % o.addrs.len()];
        handles.push(tokio::spawn(worker(o.clone(), load.clone(), addr)));
    }
    let mut total = WorkerOut::default();
    let mut api_hist = new_hist();
    for h in handles {
        let w = h.await.map_err(|e| e.to_string())?;
        if let Some(hh) = &w.api_hist {
            api_hist.add(hh).map_err(|e| e.to_string())?;
        }
        total.answered.extend(w.answered);
        total.errors += w.errors;
        total.dropped += w.dropped;
        if total.first_error.is_none() {
            total.first_error = w.first_error;
        }
        if total.sample_body.is_none() {
            total.sample_body = w.sample_body;
        }
    }
    let loaded = sample(&o.pids, &o.watch, None);
    let begun = sampler.await.map_err(|e| e.to_string())?;

    // Wait for the stragglers, matching arrivals to payments as they come.
    let mut sent: HashMap<String, (Instant, bool)> = HashMap::with_capacity(total.answered.len());
    for (id, at, measured) in total.answered.drain(..) {
        sent.insert(id, (at, measured));
    }
    let payments = sent.values().filter(|v| v.1).count() as u64;
    let mut first: HashMap<String, Instant> = HashMap::with_capacity(sent.len());
    let (mut received, mut duplicates, mut unexpected, mut no_id) = (0u64, 0u64, 0u64, 0u64);
    let mut cursor = 0usize;
    let mut last_arrival = None;
    let deadline = Instant::now() + STRAGGLER_WAIT;
    loop {
        let batch: Vec<(Option<String>, Instant)> = {
            let inbox = rx.inbox.lock().expect("inbox");
            let b = inbox.arrivals[cursor..].to_vec();
            cursor = inbox.arrivals.len();
            b
        };
        for (id, at) in batch {
            let Some(id) = id else {
                no_id += 1;
                continue;
            };
            match sent.get(&id) {
                None => unexpected += 1,
                Some(&(_, measured)) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = first.entry(id) {
                        if measured {
                            received += 1;
                            last_arrival = Some(at);
                        }
                        e.insert(at);
                    } else {
                        duplicates += 1;
                    }
                }
            }
        }
        if received >= payments || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = sample(&o.pids, &o.watch, None);
    let waited = Instant::now().saturating_duration_since(end);
    let delivered_by = last_arrival.map(|a| a.saturating_duration_since(end));
    server.abort();

    // The endpoint goes, so later runs on the same server do not deliver to it.
    if !endpoint_id.is_empty() {
        let _ = call(
            &mut admin,
            o.addr,
            Duration::from_secs(10),
            request(
                &o,
                &auth,
                Method::DELETE,
                &format!("/v1/webhook_endpoints/{endpoint_id}"),
                String::new(),
            ),
        )
        .await;
    }

    let mut hist = new_hist();
    let mut negative = 0u64;
    for (id, at) in &first {
        let Some(&(answered, true)) = sent.get(id) else {
            continue;
        };
        let us = if *at < answered {
            negative += 1;
            0
        } else {
            at.duration_since(answered).as_micros() as u64
        };
        let _ = hist.record(us.min(120_000_000));
    }

    let seconds = loaded
        .at
        .saturating_duration_since(begun.at)
        .as_secs_f64()
        .max(1e-9);
    let with_tail = settled
        .at
        .saturating_duration_since(begun.at)
        .as_secs_f64()
        .max(1e-9);
    let machine_busy = match (begun.machine, loaded.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            json!((((b1 - b0) as f64 / (t1 - t0) as f64) * ncpu() * 1000.0).round() / 10.0)
        }
        _ => Value::Null,
    };
    let inbox = rx.inbox.lock().expect("inbox");
    let mut out = Map::new();
    out.insert("system".into(), json!(o.system));
    out.insert("workload".into(), json!("webhook"));
    out.insert("mode".into(), json!("open"));
    out.insert("connections".into(), json!(o.connections));
    out.insert("target_rate".into(), json!(o.rate));
    out.insert("seconds".into(), json!((seconds * 1000.0).round() / 1000.0));
    out.insert("payments".into(), json!(payments));
    out.insert("ok".into(), json!(payments));
    out.insert("rps".into(), json!((payments as f64 / seconds).round()));
    out.insert("errors".into(), json!(total.errors));
    if total.dropped > 0 {
        out.insert("dropped".into(), json!(total.dropped));
    }
    out.insert("events_received".into(), json!(received));
    out.insert("missing".into(), json!(payments.saturating_sub(received)));
    out.insert("duplicates".into(), json!(duplicates));
    out.insert(
        "signature_failures".into(),
        json!(rx.signature_failures.load(Ordering::Relaxed)),
    );
    out.insert("unexpected_events".into(), json!(unexpected + no_id));
    out.insert(
        "other_event_types".into(),
        json!(rx.other_events.load(Ordering::Relaxed)),
    );
    out.insert(
        "receiver_requests".into(),
        json!(rx.requests.load(Ordering::Relaxed)),
    );
    if inbox.overflow > 0 || rx.too_large.load(Ordering::Relaxed) > 0 {
        out.insert("receiver_overflow".into(), json!(inbox.overflow));
        out.insert(
            "receiver_too_large".into(),
            json!(rx.too_large.load(Ordering::Relaxed)),
        );
    }
    out.insert("negative_clamped".into(), json!(negative));
    out.insert("p50_ms".into(), quantile_ms(&hist, 0.5));
    out.insert("p90_ms".into(), quantile_ms(&hist, 0.9));
    out.insert("p99_ms".into(), quantile_ms(&hist, 0.99));
    out.insert("p999_ms".into(), quantile_ms(&hist, 0.999));
    out.insert("max_ms".into(), max_ms(&hist));
    // The confirm itself, from its due time to its answer.
    out.insert("api_p50_ms".into(), quantile_ms(&api_hist, 0.5));
    out.insert("api_p99_ms".into(), quantile_ms(&api_hist, 0.99));
    out.insert("api_max_ms".into(), max_ms(&api_hist));
    out.insert(
        "last_event_after_load_ms".into(),
        json!(delivered_by.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0)),
    );
    out.insert(
        "waited_ms".into(),
        json!((waited.as_secs_f64() * 1e4).round() / 10.0),
    );
    out.insert(
        "server_cpu_pct".into(),
        pct_from(begun.server, loaded.server, seconds),
    );
    // Server CPU per payment until its events were delivered (or the wait ran out):
    // the confirm plus the fan-out and delivery of its event.
    out.insert(
        "server_cpu_us_per_req".into(),
        match (begun.server, settled.server) {
            (Some(a), Some(b)) if payments > 0 => {
                json!((b.saturating_sub(a) as f64 / 100.0 * 1e6 / payments as f64).round())
            }
            _ => Value::Null,
        },
    );
    out.insert(
        "seconds_with_tail".into(),
        json!((with_tail * 1000.0).round() / 1000.0),
    );
    if let Some(p) = o.pid {
        out.insert("server_rss_kb".into(), json!(proc_status_kb(p, "VmRSS:")));
        out.insert("server_hwm_kb".into(), json!(proc_status_kb(p, "VmHWM:")));
    }
    if !o.watch.is_empty() {
        let each: Map<String, Value> = o
            .watch
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                (
                    name.clone(),
                    pct_from(begun.watched[i], loaded.watched[i], seconds),
                )
            })
            .collect();
        out.insert("cpu_pct".into(), Value::Object(each));
    }
    out.insert(
        "driver_cpu_pct".into(),
        pct_from(begun.driver, loaded.driver, seconds),
    );
    out.insert("machine_busy_pct".into(), machine_busy);
    out.insert("loadavg_1m_before".into(), json!(loadavg));
    out.insert(
        "verified".into(),
        json!(total
            .sample_body
            .as_deref()
            .map(|b| b.contains("\"succeeded\""))),
    );
    if let Some(e) = &total.first_error {
        out.insert("first_error".into(), json!(e));
    }
    for (k, v) in &o.tags {
        out.insert(k.clone(), tag_value(v));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_and_id() {
        let secret = b"whsec_test";
        let body = br#"{"id":"evt_1","data":{"object":{"id":"pi_abc","object":"payment_intent"}},"type":"payment_intent.succeeded"}"#;
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let header = format!("t={t},v1={hex},v0=00");
        assert!(signature_ok(secret, Some(&header), body));
        assert!(!signature_ok(b"whsec_other", Some(&header), body));
        assert!(!signature_ok(
            secret,
            Some(&format!("t={},v1={hex}", t - 1)),
            body
        ));
        assert!(!signature_ok(secret, None, body));
        assert_eq!(object_id(body).as_deref(), Some("pi_abc"));
        assert!(is_succeeded(body));
    }
}
