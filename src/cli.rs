//! `payground listen` and `payground trigger`: clients of a running server, like
//! `stripe listen` and `stripe trigger`, that talk to it over HTTP with a secret key.
//!
//! `listen` registers a listener (`POST /v1/payground/listeners`): the server fans
//! events out to it like to a webhook endpoint, but keeps its deliveries for the
//! client to pull (`.../poll`, a long poll) instead of POSTing them itself. The
//! client forwards each one to `--forward-to`, signed with the listener's secret,
//! and reports the outcome (`.../ack`), which the server records as an attempt and
//! retries on its schedule when it failed. So the forward target only has to be
//! reachable from the machine running `listen`, and deliveries the client had not
//! finished when it died are pulled again when it comes back. The secret is an HMAC
//! of the account's secret key and the forward URL: the same every time, so CI can
//! set it once.

use crate::server::shutdown_signal;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::FutureExt;
use serde_json::Value;

use crate::clock;
use crate::jobs::webhooks;
use crate::resources::registry;

/// How long one forward to the local URL may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds a poll waits on the server for deliveries.
const POLL_WAIT_SECS: &str = "20";
const POLL_LIMIT: &str = "10";

/// A small client of payground's API with a secret key.
struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    fn new(base: &str, key: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http,
        })
    }

    /// The status and JSON body of one call.
    async fn send(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url).query(params),
            "DELETE" => self.http.delete(&url).query(params),
            _ => self.http.post(&url).form(params),
        };
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .with_context(|| format!("reading the response of {method} {path}"))?;
        let value = serde_json::from_str(&body)
            .with_context(|| format!("{method} {path} answered {status} without JSON: {body}"))?;
        Ok((status, value))
    }

    /// The JSON body of a call that must succeed.
    async fn call(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
    ) -> anyhow::Result<Value> {
        let (status, body) = self.send(method, path, params).await?;
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path} answered {status}: {}",
                error_message(&body)
            );
        }
        Ok(body)
    }
}

fn error_message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string())
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `2026-12-01 12:00:00` (UTC) for unix seconds.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now() -> String {
    format_utc(clock::system_now())
}

pub struct ListenOptions {
    pub forward_to: String,
    /// Event types to forward; empty for all.
    pub events: Vec<String>,
    pub api_key: String,
    pub api_base: String,
}

/// Runs until Ctrl-C or SIGTERM, then deregisters.
pub async fn listen(options: ListenOptions) -> anyhow::Result<()> {
    let api = Api::new(&options.api_base, &options.api_key)?;
    let mut params = form(&[("forward_to", &options.forward_to)]);
    for (i, event) in options.events.iter().enumerate() {
        params.push((format!("events[{i}]"), event.clone()));
    }
    let listener = api
        .call("POST", "/v1/payground/listeners", &params)
        .await
        .context("registering with payground")?;
    let id = listener["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the listener has no id: {listener}"))?
        .to_string();
    let secret = listener["secret"]
        .as_str()
        .ok_or_else(|| anyhow!("the listener has no secret: {listener}"))?
        .to_string();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "Ready! Your webhook signing secret is {secret} (^C to quit)"
    )?;
    out.flush()?;

    let forwarder = webhooks::http_client(FORWARD_TIMEOUT)?;
    let poll_path = format!("/v1/payground/listeners/{id}/poll");
    let ack_path = format!("/v1/payground/listeners/{id}/ack");
    let poll_params = form(&[("wait", POLL_WAIT_SECS), ("limit", POLL_LIMIT)]);
    let stop = shutdown_signal().shared();
    let mut last_error: Option<String> = None;
    'outer: loop {
        let polled = tokio::select! {
            _ = stop.clone() => break,
            r = api.call("POST", &poll_path, &poll_params) => r,
        };
        let batch = match polled {
            Ok(batch) => {
                if last_error.take().is_some() {
                    eprintln!("payground listen: connected again");
                }
                batch
            }
            Err(e) => {
                // Once per kind of failure, not once a second while the server is away.
                let message = format!("{e:#}");
                if last_error.as_deref() != Some(message.as_str()) {
                    eprintln!("payground listen: {message}; retrying every second");
                    last_error = Some(message);
                }
                tokio::select! {
                    _ = stop.clone() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let items = batch["data"].as_array().cloned().unwrap_or_default();
        for item in items {
            if stop.clone().now_or_never().is_some() {
                break 'outer;
            }
            forward(
                &api,
                &forwarder,
                &options.forward_to,
                &secret,
                &ack_path,
                &item,
            )
            .await;
        }
    }
    if let Err(e) = api
        .call("DELETE", &format!("/v1/payground/listeners/{id}"), &[])
        .await
    {
        eprintln!("payground listen: could not deregister: {e:#}");
    }
    Ok(())
}

/// Forwards one pulled delivery, prints it as `stripe listen` does, reports back.
async fn forward(
    api: &Api,
    forwarder: &reqwest::Client,
    url: &str,
    secret: &str,
    ack_path: &str,
    item: &Value,
) {
    let (Some(payload), Some(event_id), Some(lease)) = (
        item["payload"].as_str(),
        item["event"].as_str(),
        item["lease"].as_str(),
    ) else {
        eprintln!("payground listen: the server sent a malformed delivery: {item}");
        return;
    };
    let event_type = serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("{}   --> {event_type} [{event_id}]", now());
    let started = Instant::now();
    let (status, body, error, latency_ms) =
        webhooks::post_signed(forwarder, url, secret, payload, FORWARD_TIMEOUT).await;
    match (status, &error) {
        (Some(status), _) => println!("{}  <--  [{status}] POST {url} [{event_id}]", now()),
        (None, Some(error)) => {
            println!("{}  <--  [ERROR] POST {url} [{event_id}] {error}", now())
        }
        (None, None) => println!("{}  <--  [ERROR] POST {url} [{event_id}]", now()),
    }
    let _ = std::io::stdout().flush();
    let mut report = form(&[("event", event_id), ("lease", lease)]);
    report.push(("latency_ms".into(), latency_ms.max(0).to_string()));
    if let Some(status) = status {
        report.push(("status_code".into(), status.to_string()));
    }
    if let Some(error) = error {
        report.push(("error".into(), error));
    }
    if let Some(body) = body {
        report.push(("response_body".into(), body));
    }
    if let Err(e) = api.call("POST", ack_path, &report).await {
        eprintln!(
            "payground listen: reporting {event_id} failed after {} ms: {e:#}; it will be delivered again",
            started.elapsed().as_millis()
        );
    }
}

// ---------------------------------------------------------------------------
// trigger

/// The events `trigger` knows.
pub fn trigger_events() -> Vec<&'static str> {
    registry::fixtures().map(|f| f.event).collect()
}

fn fill(template: &str, saved: &HashMap<&str, String>) -> String {
    let mut out = template.to_string();
    for (name, id) in saved {
        out = out.replace(&format!("{{{name}}}"), id);
    }
    out
}

/// Runs the fixture of `event`, printing each call and what it created.
pub async fn trigger(event: &str, api_key: &str, api_base: &str) -> anyhow::Result<()> {
    let Some(fixture) = registry::fixtures().find(|f| f.event == event) else {
        bail!(
            "payground trigger does not know {event:?} yet; it knows: {}",
            trigger_events().join(", ")
        );
    };
    let api = Api::new(api_base, api_key)?;
    println!("Setting up fixture for: {event}");
    println!("Running fixture for: {event}");
    let mut saved: HashMap<&str, String> = HashMap::new();
    for step in fixture.steps {
        let path = fill(step.path, &saved);
        let params: Vec<(String, String)> = step
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), fill(v, &saved)))
            .collect();
        let context = || format!("Trigger failed: {} {path}", step.method);
        let (status, body) = api
            .send(step.method, &path, &params)
            .await
            .with_context(context)?;
        let (object, outcome) = match status {
            200..=299 if step.declines => {
                bail!(
                    "{}: the card was expected to decline but did not",
                    context()
                )
            }
            200..=299 => (&body, String::new()),
            402 if step.declines => (
                &body["error"]["payment_intent"],
                format!(
                    " (declined as intended: {})",
                    body["error"]["decline_code"]
                        .as_str()
                        .or(body["error"]["code"].as_str())
                        .unwrap_or("card_error")
                ),
            ),
            _ => bail!("{}: answered {status}: {}", context(), error_message(&body)),
        };
        let id = object["id"].as_str().unwrap_or("?").to_string();
        let kind = object["object"].as_str().unwrap_or("object");
        let deleted = if object["deleted"] == Value::Bool(true) {
            " (deleted)"
        } else {
            ""
        };
        println!("  {} {path} -> {kind} {id}{deleted}{outcome}", step.method);
        if let Some(name) = step.save_as {
            saved.insert(name, id);
        }
    }
    println!("Trigger succeeded! Check your listener or webhook endpoints for {event}.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_796_126_400), "2026-12-01 12:00:00");
    }

    #[test]
    fn fixtures_cover_customers_and_fill_placeholders() {
        for event in ["customer.created", "customer.updated", "customer.deleted"] {
            assert!(trigger_events().contains(&event), "{event}");
        }
        let saved = HashMap::from([("customer", "cus_1".to_string())]);
        assert_eq!(
            fill("/v1/customers/{customer}", &saved),
            "/v1/customers/cus_1"
        );
    }
}
