//! Webhook endpoints: where the delivery worker POSTs events, signed with the
//! endpoint's secret. And listeners, payground's own: the endpoints
//! `payground listen` pulls its events through (see `crate::jobs::webhooks`).
//!
//! Secrets are never stored. Each is an HMAC of the account's secret key and the
//! endpoint id (or, for a listener, its forward URL): the worker recomputes it for
//! every attempt, nothing in the database or in an expanded object can leak it,
//! and a listener's secret stays the same for the same account and URL, so CI can
//! configure it once.

use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::ctx::{Answer, Ctx, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::common::list::{self, ListParams};
use crate::resources::common::params::{Field, MetadataParam};
use crate::resources::event;
use crate::resources::{apply_metadata, new_metadata, Metadata};
use crate::store::TARGET_EVENTS_FIELD;

pub const LISTENER_OBJECT: &str = "payground.listener";
const SECRET_ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const MAX_URL_LEN: usize = 2048;

/// Stripe's webhook_endpoint object (API version 2024-04-10).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    pub object: String,
    pub api_version: Option<String>,
    pub application: Option<String>,
    pub created: i64,
    pub description: Option<String>,
    pub enabled_events: Vec<String>,
    pub livemode: bool,
    pub metadata: Metadata,
    /// Only in the create response; never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub status: String,
    pub url: String,
    /// Only on deleted endpoints, which are rendered as `{id, object, deleted: true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

impl StripeObject for WebhookEndpoint {
    const OBJECT: &'static str = "webhook_endpoint";
    const PREFIXES: &'static [&'static str] = &["we"];
    const EXPANDABLE: &'static [&'static str] = &[];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    /// While enabled, the event types it takes: the store creates its deliveries
    /// from these rows when events commit. A disabled endpoint has none, so it
    /// gets no deliveries of the events that happen while it is disabled.
    fn index(&self) -> Vec<(String, String)> {
        if self.is_enabled() {
            target_events(&self.enabled_events)
        } else {
            Vec::new()
        }
    }
    fn is_deleted(&self) -> bool {
        self.deleted == Some(true)
    }
}

impl WebhookEndpoint {
    pub fn is_enabled(&self) -> bool {
        self.status == "enabled" && !self.is_deleted()
    }
}

/// A `payground listen` client's subscription: which events it wants and where it
/// forwards them. Its deliveries are pulled, not pushed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Listener {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub enabled_events: Vec<String>,
    pub forward_to: String,
    pub livemode: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

impl StripeObject for Listener {
    const OBJECT: &'static str = LISTENER_OBJECT;
    const PREFIXES: &'static [&'static str] = &["wl"];
    const EXPANDABLE: &'static [&'static str] = &[];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        let mut index = vec![("forward_to".to_string(), self.forward_to.clone())];
        index.extend(target_events(&self.enabled_events));
        index
    }
    fn is_deleted(&self) -> bool {
        self.deleted == Some(true)
    }
}

/// The index rows through which a target takes events: one per entry of its
/// `enabled_events`, matched by the store against each event's type or `*`.
fn target_events(enabled_events: &[String]) -> Vec<(String, String)> {
    let mut types: Vec<&String> = enabled_events.iter().collect();
    types.sort();
    types.dedup();
    types
        .into_iter()
        .map(|t| (TARGET_EVENTS_FIELD.to_string(), t.clone()))
        .collect()
}

fn derive_secret(account_secret_key: &str, label: &str) -> String {
    // `new_from_slice` accepts keys of any length for HMAC; the fallback is unreachable.
    let mut mac = match Hmac::<Sha256>::new_from_slice(account_secret_key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return format!("whsec_{}", ids::random_string(32)),
    };
    mac.update(b"payground webhook secret\n");
    mac.update(label.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut secret = String::from("whsec_");
    for byte in digest.iter().take(32) {
        secret.push(SECRET_ALPHABET[usize::from(*byte) % SECRET_ALPHABET.len()] as char);
    }
    secret
}

/// The signing secret of a webhook endpoint.
pub fn endpoint_secret(account_secret_key: &str, endpoint_id: &str) -> String {
    derive_secret(
        account_secret_key,
        &format!("webhook_endpoint {endpoint_id}"),
    )
}

/// The signing secret of `payground listen` for this account and forward URL.
pub fn listener_secret(account_secret_key: &str, forward_to: &str) -> String {
    derive_secret(account_secret_key, &format!("listen {forward_to}"))
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    pub url: String,
    pub enabled_events: Vec<String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub connect: Option<bool>,
    #[serde(default)]
    pub description: Field<String>,
    #[serde(default)]
    pub metadata: MetadataParam,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub enabled_events: Option<Vec<String>>,
    #[serde(default)]
    pub description: Field<String>,
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub metadata: MetadataParam,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerParams {
    pub forward_to: String,
    /// Event types to forward; all of them when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

/// An absolute http(s) URL with a host.
pub fn check_url(param: &str, url: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| {
        ApiError::invalid_param(param, "url_invalid", format!("Invalid URL: {url} ({why})"))
    };
    if url.len() > MAX_URL_LEN {
        return Err(invalid("too long"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("a host is required"));
    }
    Ok(())
}

/// `["*"]` or known event types; the first unknown one is named as Stripe names it.
pub fn check_enabled_events(param: &str, events: &[String]) -> Result<(), ApiError> {
    if events.is_empty() {
        return Err(ApiError::missing_param(param));
    }
    for (i, e) in events.iter().enumerate() {
        if e != "*" && !event::is_known_type(e) {
            return Err(ApiError::invalid_param(
                &format!("{param}[{i}]"),
                "parameter_invalid_string",
                format!(
                    "Invalid {param}[{i}]: {e:?} is not an event type. Use \"*\" for every event, or types such as customer.created."
                ),
            ));
        }
    }
    Ok(())
}

/// Stripe's version format: `2024-04-10`, optionally with a `.name` suffix.
fn check_api_version(version: &str) -> Result<(), ApiError> {
    let (date, suffix) = version.split_once('.').unwrap_or((version, "x"));
    let b = date.as_bytes();
    let date_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    let suffix_ok = !suffix.is_empty()
        && suffix
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if date_ok && suffix_ok {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "api_version",
            "parameter_invalid_string",
            format!("Invalid api_version: {version}"),
        ))
    }
}

fn deleted_view(id: &str) -> Value {
    json!({ "id": id, "object": "webhook_endpoint", "deleted": true })
}

pub async fn create(ctx: &mut Ctx, params: &CreateParams) -> Result<Value, ApiError> {
    let p = params.clone();
    check_url("url", &p.url)?;
    check_enabled_events("enabled_events", &p.enabled_events)?;
    if let Some(version) = &p.api_version {
        check_api_version(version)?;
    }
    if p.connect == Some(true) {
        return Err(ApiError::invalid_request(
            "payground does not model Connect: an endpoint with connect=true would never receive an event.",
        )
        .with_param("connect"));
    }
    let mut endpoint = WebhookEndpoint {
        id: ids::new_id("we"),
        object: WebhookEndpoint::OBJECT.into(),
        api_version: p.api_version,
        application: None,
        created: ctx.now,
        description: None,
        enabled_events: p.enabled_events,
        livemode: false,
        metadata: new_metadata(p.metadata)?,
        secret: None,
        status: "enabled".into(),
        url: p.url,
        deleted: None,
    };
    p.description.apply(&mut endpoint.description);
    ctx.save(&endpoint)?;
    endpoint.secret = Some(endpoint_secret(&ctx.account.secret_key, &endpoint.id));
    serde_json::to_value(&endpoint).map_err(|e| ApiError::internal("endpoint does not encode", e))
}

/// A live endpoint of this account; deleted ones are gone, as in Stripe.
async fn live(ctx: &mut Ctx, id: &str) -> Result<WebhookEndpoint, ApiError> {
    ctx.fetch::<WebhookEndpoint>(id).await
}

pub async fn retrieve(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    let endpoint = live(ctx, id).await?;
    serde_json::to_value(endpoint).map_err(|e| ApiError::internal("endpoint does not encode", e))
}

pub async fn update(ctx: &mut Ctx, id: &str, params: &UpdateParams) -> Result<Value, ApiError> {
    let p = params.clone();
    let mut endpoint = live(ctx, id).await?;
    if let Some(url) = p.url {
        check_url("url", &url)?;
        endpoint.url = url;
    }
    if let Some(events) = p.enabled_events {
        check_enabled_events("enabled_events", &events)?;
        endpoint.enabled_events = events;
    }
    p.description.apply(&mut endpoint.description);
    if let Some(disabled) = p.disabled {
        endpoint.status = if disabled { "disabled" } else { "enabled" }.into();
    }
    apply_metadata(&mut endpoint.metadata, p.metadata)?;
    ctx.save(&endpoint).map(Value::from)
}

pub async fn delete(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    let mut endpoint = live(ctx, id).await?;
    endpoint.deleted = Some(true);
    ctx.save(&endpoint)?;
    Ok(deleted_view(id))
}

pub async fn list(ctx: &mut Ctx, params: &ListParams) -> Result<Answer, ApiError> {
    list::page(
        ctx,
        WebhookEndpoint::OBJECT,
        None,
        params,
        "/v1/webhook_endpoints",
    )
    .await
}

fn listener_view(ctx: &Ctx, listener: &Listener) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(listener)
        .map_err(|e| ApiError::internal("listener does not encode", e))?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "secret".into(),
            json!(listener_secret(
                &ctx.account.secret_key,
                &listener.forward_to
            )),
        );
    }
    Ok(value)
}

/// `POST /v1/payground/listeners`: the listener of this account for this forward URL,
/// created or given the new event list. Re-registering (a restarted `listen`) keeps
/// its id, so deliveries still owed to it are pulled on.
pub async fn register_listener(ctx: &mut Ctx, params: &ListenerParams) -> Result<Value, ApiError> {
    let p = params.clone();
    check_url("forward_to", &p.forward_to)?;
    let events = p.events.unwrap_or_else(|| vec!["*".to_string()]);
    check_enabled_events("events", &events)?;
    let query = crate::store::ListQuery {
        kind: LISTENER_OBJECT.to_string(),
        filter: Some(("forward_to".to_string(), p.forward_to.clone())),
        limit: 1,
        ..Default::default()
    };
    let existing = ctx.list_page(query, None, None).await?;
    let listener = match existing.first() {
        Some(row) => {
            let mut listener = find_listener(ctx, &row.id).await?;
            if listener.enabled_events != events {
                listener.enabled_events = events;
                ctx.save(&listener)?;
            }
            listener
        }
        None => {
            let listener = Listener {
                id: ids::new_id("wl"),
                object: LISTENER_OBJECT.into(),
                created: ctx.now,
                enabled_events: events,
                forward_to: p.forward_to,
                livemode: false,
                deleted: None,
            };
            ctx.save(&listener)?;
            listener
        }
    };
    listener_view(ctx, &listener)
}

/// A live listener of this account, or a 404.
pub async fn find_listener(ctx: &mut Ctx, id: &str) -> Result<Listener, ApiError> {
    let missing = || ApiError::no_such("listener", id);
    let value = ctx.find_value(id).await?.ok_or_else(missing)?;
    if value.get("object").and_then(Value::as_str) != Some(LISTENER_OBJECT) {
        return Err(missing());
    }
    let listener: Listener = serde_json::from_value(value)
        .map_err(|e| ApiError::internal("stored listener does not decode", e))?;
    if listener.is_deleted() {
        return Err(missing());
    }
    Ok(listener)
}

pub async fn delete_listener(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    let mut listener = find_listener(ctx, id).await?;
    listener.deleted = Some(true);
    ctx.save(&listener)?;
    Ok(json!({ "id": id, "object": LISTENER_OBJECT, "deleted": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_knows_which_kinds_receive_events() {
        assert_eq!(
            crate::store::EVENT_TARGET_KINDS,
            [WebhookEndpoint::OBJECT, LISTENER_OBJECT]
        );
    }

    #[test]
    fn targets_index_the_event_types_they_take_while_enabled() {
        let mut endpoint = WebhookEndpoint {
            id: "we_1".into(),
            object: "webhook_endpoint".into(),
            api_version: None,
            application: None,
            created: 1,
            description: None,
            enabled_events: vec![
                "customer.created".into(),
                "charge.succeeded".into(),
                "customer.created".into(),
            ],
            livemode: false,
            metadata: Metadata::new(),
            secret: None,
            status: "enabled".into(),
            url: "http://127.0.0.1/hook".into(),
            deleted: None,
        };
        let rows = |types: &[&str]| -> Vec<(String, String)> {
            types
                .iter()
                .map(|t| (TARGET_EVENTS_FIELD.to_string(), t.to_string()))
                .collect()
        };
        assert_eq!(
            endpoint.index(),
            rows(&["charge.succeeded", "customer.created"])
        );
        endpoint.status = "disabled".into();
        assert_eq!(endpoint.index(), vec![]);
        endpoint.status = "enabled".into();
        endpoint.deleted = Some(true);
        assert_eq!(endpoint.index(), vec![]);
        let listener = Listener {
            id: "pgl_1".into(),
            object: LISTENER_OBJECT.into(),
            created: 1,
            enabled_events: vec!["*".into()],
            forward_to: "http://127.0.0.1/f".into(),
            livemode: false,
            deleted: None,
        };
        let mut expected = vec![("forward_to".to_string(), "http://127.0.0.1/f".to_string())];
        expected.extend(rows(&["*"]));
        assert_eq!(listener.index(), expected);
    }

    #[test]
    fn enabled_events_validation_names_the_index() {
        assert!(check_enabled_events("enabled_events", &["*".into()]).is_ok());
        assert!(check_enabled_events(
            "enabled_events",
            &["customer.created".into(), "payment_intent.succeeded".into()]
        )
        .is_ok());
        let e = check_enabled_events(
            "enabled_events",
            &["customer.created".into(), "customer.exploded".into()],
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("enabled_events[1]"));
        let e = check_enabled_events("enabled_events", &[]).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("parameter_missing"));
    }

    #[test]
    fn secrets_are_whsec_and_32_base62_characters_and_stable() {
        let a = endpoint_secret("sk_test_abc", "we_1");
        assert!(a.starts_with("whsec_"));
        assert_eq!(a.len(), 6 + 32);
        assert!(a[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(a, endpoint_secret("sk_test_abc", "we_1"));
        assert_ne!(a, endpoint_secret("sk_test_abc", "we_2"));
        assert_ne!(a, endpoint_secret("sk_test_other", "we_1"));
        let l = listener_secret("sk_test_abc", "http://127.0.0.1:4242/webhook");
        assert_eq!(
            l,
            listener_secret("sk_test_abc", "http://127.0.0.1:4242/webhook")
        );
        assert_ne!(
            l,
            listener_secret("sk_test_abc", "http://127.0.0.1:4243/webhook")
        );
    }

    #[test]
    fn urls_and_versions() {
        assert!(check_url("url", "https://example.com/hook").is_ok());
        assert!(check_url("url", "http://127.0.0.1:4242/webhook?x=1").is_ok());
        for bad in [
            "",
            "example.com/hook",
            "ftp://example.com/",
            "http://",
            "not a url",
        ] {
            let e = check_url("url", bad).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("url"), "{bad}");
            assert_eq!(e.code.as_deref(), Some("url_invalid"), "{bad}");
        }
        assert!(check_api_version("2024-04-10").is_ok());
        assert!(check_api_version("2024-09-30.acacia").is_ok());
        assert!(check_api_version("2024-4-10").is_err());
        assert!(check_api_version("latest").is_err());
    }
}
