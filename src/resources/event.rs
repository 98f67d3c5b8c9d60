//! Events: retrieve and list (30 days of them), and payground's resend and
//! delivery-attempt views. Events are written by [`crate::ctx::Ctx::emit`] with the
//! change that caused them and never change after: their `pending_webhooks` is
//! counted from their deliveries whenever they are read ([`with_pending_webhooks`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clock;
use crate::ctx::{Answer, Ctx, StripeObject};
use crate::error::ApiError;
use crate::resources::common::list::ListParams;
use crate::resources::webhook_endpoint::WebhookEndpoint;
use crate::store::{
    AttemptQuery, AttemptRecord, CreatedRange, Cursor, IndexCondition, IndexValue, ListQuery,
    StoredObject,
};

pub const OBJECT: &str = "event";

/// Stripe's event object. Events are written as text by [`Ctx::emit`] and read
/// back as stored; this type says what that text holds (the document's schema of
/// an event, its id prefix, what may be expanded on it).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub id: String,
    pub object: String,
    pub api_version: Option<String>,
    pub created: i64,
    pub data: EventData,
    pub livemode: bool,
    pub pending_webhooks: i64,
    pub request: Option<EventRequest>,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventData {
    /// The object as it was saved with the change.
    pub object: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_attributes: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventRequest {
    pub id: Option<String>,
    pub idempotency_key: Option<String>,
}

impl StripeObject for Event {
    const OBJECT: &'static str = OBJECT;
    const PREFIXES: &'static [&'static str] = &["evt"];
    const EXPANDABLE: &'static [&'static str] = &["data", "request"];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
}
/// Stripe keeps events retrievable for 30 days; older ones are purged.
pub const RETENTION_SECS: i64 = 30 * 24 * 60 * 60;
/// Stripe accepts at most this many `types[]`.
const MAX_TYPES: usize = 20;

/// Every event type Stripe's API version 2024-04-10 knows (the `enabled_events`
/// enum of `POST /v1/webhook_endpoints`, `*` aside).
pub const EVENT_TYPES: &[&str] = &[
    "account.application.authorized",
    "account.application.deauthorized",
    "account.external_account.created",
    "account.external_account.deleted",
    "account.external_account.updated",
    "account.updated",
    "application_fee.created",
    "application_fee.refund.updated",
    "application_fee.refunded",
    "balance.available",
    "billing_portal.configuration.created",
    "billing_portal.configuration.updated",
    "billing_portal.session.created",
    "capability.updated",
    "cash_balance.funds_available",
    "charge.captured",
    "charge.dispute.closed",
    "charge.dispute.created",
    "charge.dispute.funds_reinstated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.updated",
    "charge.expired",
    "charge.failed",
    "charge.pending",
    "charge.refund.updated",
    "charge.refunded",
    "charge.succeeded",
    "charge.updated",
    "checkout.session.async_payment_failed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.completed",
    "checkout.session.expired",
    "climate.order.canceled",
    "climate.order.created",
    "climate.order.delayed",
    "climate.order.delivered",
    "climate.order.product_substituted",
    "climate.product.created",
    "climate.product.pricing_updated",
    "coupon.created",
    "coupon.deleted",
    "coupon.updated",
    "credit_note.created",
    "credit_note.updated",
    "credit_note.voided",
    "customer.created",
    "customer.deleted",
    "customer.discount.created",
    "customer.discount.deleted",
    "customer.discount.updated",
    "customer.source.created",
    "customer.source.deleted",
    "customer.source.expiring",
    "customer.source.updated",
    "customer.subscription.created",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "customer.subscription.updated",
    "customer.tax_id.created",
    "customer.tax_id.deleted",
    "customer.tax_id.updated",
    "customer.updated",
    "customer_cash_balance_transaction.created",
    "entitlements.active_entitlement_summary.updated",
    "file.created",
    "financial_connections.account.created",
    "financial_connections.account.deactivated",
    "financial_connections.account.disconnected",
    "financial_connections.account.reactivated",
    "financial_connections.account.refreshed_balance",
    "financial_connections.account.refreshed_ownership",
    "financial_connections.account.refreshed_transactions",
    "identity.verification_session.canceled",
    "identity.verification_session.created",
    "identity.verification_session.processing",
    "identity.verification_session.redacted",
    "identity.verification_session.requires_input",
    "identity.verification_session.verified",
    "invoice.created",
    "invoice.deleted",
    "invoice.finalization_failed",
    "invoice.finalized",
    "invoice.marked_uncollectible",
    "invoice.paid",
    "invoice.payment_action_required",
    "invoice.payment_failed",
    "invoice.payment_succeeded",
    "invoice.sent",
    "invoice.upcoming",
    "invoice.updated",
    "invoice.voided",
    "invoiceitem.created",
    "invoiceitem.deleted",
    "issuing_authorization.created",
    "issuing_authorization.request",
    "issuing_authorization.updated",
    "issuing_card.created",
    "issuing_card.updated",
    "issuing_cardholder.created",
    "issuing_cardholder.updated",
    "issuing_dispute.closed",
    "issuing_dispute.created",
    "issuing_dispute.funds_reinstated",
    "issuing_dispute.submitted",
    "issuing_dispute.updated",
    "issuing_token.created",
    "issuing_token.updated",
    "issuing_transaction.created",
    "issuing_transaction.updated",
    "mandate.updated",
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
    "payment_intent.created",
    "payment_intent.partially_funded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.succeeded",
    "payment_link.created",
    "payment_link.updated",
    "payment_method.attached",
    "payment_method.automatically_updated",
    "payment_method.detached",
    "payment_method.updated",
    "payout.canceled",
    "payout.created",
    "payout.failed",
    "payout.paid",
    "payout.reconciliation_completed",
    "payout.updated",
    "person.created",
    "person.deleted",
    "person.updated",
    "plan.created",
    "plan.deleted",
    "plan.updated",
    "price.created",
    "price.deleted",
    "price.updated",
    "product.created",
    "product.deleted",
    "product.updated",
    "promotion_code.created",
    "promotion_code.updated",
    "quote.accepted",
    "quote.canceled",
    "quote.created",
    "quote.finalized",
    "radar.early_fraud_warning.created",
    "radar.early_fraud_warning.updated",
    "refund.created",
    "refund.updated",
    "reporting.report_run.failed",
    "reporting.report_run.succeeded",
    "reporting.report_type.updated",
    "review.closed",
    "review.opened",
    "setup_intent.canceled",
    "setup_intent.created",
    "setup_intent.requires_action",
    "setup_intent.setup_failed",
    "setup_intent.succeeded",
    "sigma.scheduled_query_run.created",
    "source.canceled",
    "source.chargeable",
    "source.failed",
    "source.mandate_notification",
    "source.refund_attributes_required",
    "source.transaction.created",
    "source.transaction.updated",
    "subscription_schedule.aborted",
    "subscription_schedule.canceled",
    "subscription_schedule.completed",
    "subscription_schedule.created",
    "subscription_schedule.expiring",
    "subscription_schedule.released",
    "subscription_schedule.updated",
    "tax.settings.updated",
    "tax_rate.created",
    "tax_rate.updated",
    "terminal.reader.action_failed",
    "terminal.reader.action_succeeded",
    "test_helpers.test_clock.advancing",
    "test_helpers.test_clock.created",
    "test_helpers.test_clock.deleted",
    "test_helpers.test_clock.internal_failure",
    "test_helpers.test_clock.ready",
    "topup.canceled",
    "topup.created",
    "topup.failed",
    "topup.reversed",
    "topup.succeeded",
    "transfer.created",
    "transfer.reversed",
    "transfer.updated",
    "treasury.credit_reversal.created",
    "treasury.credit_reversal.posted",
    "treasury.debit_reversal.completed",
    "treasury.debit_reversal.created",
    "treasury.debit_reversal.initial_credit_granted",
    "treasury.financial_account.closed",
    "treasury.financial_account.created",
    "treasury.financial_account.features_status_updated",
    "treasury.inbound_transfer.canceled",
    "treasury.inbound_transfer.created",
    "treasury.inbound_transfer.failed",
    "treasury.inbound_transfer.succeeded",
    "treasury.outbound_payment.canceled",
    "treasury.outbound_payment.created",
    "treasury.outbound_payment.expected_arrival_date_updated",
    "treasury.outbound_payment.failed",
    "treasury.outbound_payment.posted",
    "treasury.outbound_payment.returned",
    "treasury.outbound_payment.tracking_details_updated",
    "treasury.outbound_transfer.canceled",
    "treasury.outbound_transfer.created",
    "treasury.outbound_transfer.expected_arrival_date_updated",
    "treasury.outbound_transfer.failed",
    "treasury.outbound_transfer.posted",
    "treasury.outbound_transfer.returned",
    "treasury.outbound_transfer.tracking_details_updated",
    "treasury.received_credit.created",
    "treasury.received_credit.failed",
    "treasury.received_credit.succeeded",
    "treasury.received_debit.created",
];

pub fn is_known_type(event_type: &str) -> bool {
    EVENT_TYPES.binary_search(&event_type).is_ok()
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EventListFilters {
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub types: Option<Vec<String>>,
    pub delivery_success: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendParams {
    pub webhook_endpoint: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AttemptListParams {
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
    /// On an event's attempts: only those to this endpoint.
    pub webhook_endpoint: Option<String>,
    /// On an endpoint's attempts: only those of this event.
    pub event: Option<String>,
}

/// The oldest `created` still visible: older events are gone even before the purge runs.
fn cutoff(ctx: &Ctx) -> i64 {
    ctx.now - RETENTION_SECS
}

fn decode(data: &str) -> Result<Value, ApiError> {
    serde_json::from_str(data).map_err(|e| ApiError::internal("stored event does not decode", e))
}

/// The event as stored, if this account has it and it is within the 30 days.
async fn find(ctx: &mut Ctx, id: &str) -> Result<Option<StoredObject>, ApiError> {
    let found = ctx
        .store
        .get(ctx.account_id(), id)
        .await
        .map_err(|e| ApiError::internal("event lookup failed", e))?;
    let limit = cutoff(ctx);
    Ok(found.filter(|o| o.kind == OBJECT && !o.deleted && o.created >= limit))
}

/// The event's saved text with its `pending_webhooks` of now, as a list page gives it.
pub async fn retrieve(ctx: &mut Ctx, id: &str) -> Result<Answer, ApiError> {
    let Some(event) = find(ctx, id).await? else {
        return Err(ApiError::no_such(OBJECT, id));
    };
    let mut texts = with_pending_webhooks(ctx, vec![event]).await?;
    texts
        .pop()
        .map(Answer::Text)
        .ok_or_else(|| ApiError::internal("counting pending webhooks failed", id))
}

/// The events' texts with their `pending_webhooks` as of now: the push deliveries
/// that have not succeeded. Counted when read rather than kept in the stored event,
/// which would then be rewritten at every delivery.
pub async fn with_pending_webhooks(
    ctx: &Ctx,
    events: Vec<StoredObject>,
) -> Result<Vec<String>, ApiError> {
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let counts = ctx
        .store
        .pending_webhooks(ctx.account_id(), &ids)
        .await
        .map_err(|e| ApiError::internal("counting pending webhooks failed", e))?;
    events
        .into_iter()
        .zip(counts)
        .map(|(event, pending)| {
            text_with_pending(&event.data, pending)
                .ok_or_else(|| ApiError::internal("stored event does not decode", &event.id))
        })
        .collect()
}

/// `customer.created` exactly, `customer.*` by prefix; `*` alone matches everything (`None`).
fn type_pattern(param: &str, pattern: &str) -> Result<Option<IndexValue>, ApiError> {
    if pattern == "*" {
        return Ok(None);
    }
    match pattern.find('*') {
        None => Ok(Some(IndexValue::Exact(pattern.to_string()))),
        Some(i) if i == pattern.len() - 1 => Ok(Some(IndexValue::Prefix(pattern[..i].to_string()))),
        Some(_) => Err(ApiError::invalid_param(
            param,
            "parameter_invalid_string",
            format!(
                "Invalid {param}: {pattern}. A * wildcard may only end the type, as in customer.*"
            ),
        )),
    }
}

/// The index conditions the list filters come to.
fn conditions(filters: &EventListFilters) -> Result<Vec<IndexCondition>, ApiError> {
    let mut out = Vec::new();
    let patterns: Option<Vec<(String, &str)>> = match (&filters.event_type, &filters.types) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "You may only specify one of these parameters: type, types.",
            )
            .with_param("types"))
        }
        (Some(t), None) => Some(vec![("type".to_string(), t.as_str())]),
        (None, Some(types)) => {
            if types.len() > MAX_TYPES {
                return Err(ApiError::invalid_param(
                    "types",
                    "parameter_invalid_array",
                    format!("You may pass at most {MAX_TYPES} types."),
                ));
            }
            Some(
                types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (format!("types[{i}]"), t.as_str()))
                    .collect(),
            )
        }
        (None, None) => None,
    };
    if let Some(patterns) = patterns {
        let mut any_of = Vec::new();
        let mut everything = false;
        for (param, pattern) in patterns {
            match type_pattern(&param, pattern)? {
                Some(v) => any_of.push(v),
                None => everything = true,
            }
        }
        if !everything {
            out.push(IndexCondition {
                field: "type".into(),
                any_of,
                negated: false,
            });
        }
    }
    Ok(out)
}

/// The cursor's position, or Stripe's 404 naming the cursor parameter.
async fn cursor_seq(ctx: &mut Ctx, param: &str, id: &str) -> Result<i64, ApiError> {
    match find(ctx, id).await? {
        Some(o) => Ok(o.seq),
        None => Err(ApiError::no_such(OBJECT, id).with_param(param)),
    }
}

/// `GET /v1/events`: newest first, Stripe's filters, the 30-day window.
pub async fn list(
    ctx: &mut Ctx,
    filters: &EventListFilters,
    page: &ListParams,
) -> Result<Value, ApiError> {
    let conditions = conditions(filters)?;
    let mut created: CreatedRange = page.created;
    let limit = cutoff(ctx);
    created.gte = Some(created.gte.map_or(limit, |g| g.max(limit)));
    let cursor = if let Some(id) = &page.starting_after {
        Cursor::Before(cursor_seq(ctx, "starting_after", id).await?)
    } else if let Some(id) = &page.ending_before {
        Cursor::After(cursor_seq(ctx, "ending_before", id).await?)
    } else {
        Cursor::Newest
    };
    let query = ListQuery {
        kind: OBJECT.to_string(),
        filter: None,
        created,
        cursor,
        limit: page.limit + 1,
        delivery_success: filters.delivery_success,
    };
    let mut rows = ctx
        .store
        .list_where(ctx.account_id(), &query, &conditions)
        .await
        .map_err(|e| ApiError::internal("event listing failed", e))?;
    let has_more = rows.len() > page.limit;
    rows.truncate(page.limit);
    if matches!(cursor, Cursor::After(_)) {
        rows.reverse();
    }
    let data = with_pending_webhooks(ctx, rows)
        .await?
        .iter()
        .map(|text| decode(text))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "object": "list", "data": data, "has_more": has_more, "url": "/v1/events" }))
}

/// `POST /v1/events/{id}/resend` (payground's own): delivers the event to the
/// endpoint again now, whatever became of earlier attempts.
pub async fn resend(ctx: &mut Ctx, id: &str, params: &ResendParams) -> Result<Value, ApiError> {
    let event = find(ctx, id)
        .await?
        .ok_or_else(|| ApiError::no_such(OBJECT, id))?;
    let endpoint: WebhookEndpoint = ctx
        .fetch(&params.webhook_endpoint)
        .await
        .map_err(|e| e.with_param("webhook_endpoint"))?;
    if endpoint.status != "enabled" {
        return Err(ApiError::invalid_request(format!(
            "The webhook endpoint {} is disabled; enable it before resending events to it.",
            endpoint.id
        ))
        .with_param("webhook_endpoint"));
    }
    ctx.store
        .redeliver(
            ctx.account_id(),
            &event.id,
            &endpoint.id,
            true,
            clock::system_now_millis(),
        )
        .await
        .map_err(|e| ApiError::internal("scheduling a resend failed", e))?;
    decode(&with_pending_webhooks(ctx, vec![event]).await?[0])
}

/// An attempt as payground's attempt lists show it.
pub fn attempt_view(a: &AttemptRecord) -> Value {
    json!({
        "id": a.id,
        "object": "payground.webhook_attempt",
        "created": a.attempted_at / 1000,
        "attempted_at_ms": a.attempted_at,
        "event": a.event_id,
        "webhook_endpoint": a.endpoint_id,
        "attempt": a.attempt,
        "succeeded": a.succeeded,
        "status_code": a.status_code,
        "latency_ms": a.latency_ms,
        "response_body": a.response_body,
        "error": a.error,
    })
}

/// The delivery attempts of an event (`by_event`) or to an endpoint, newest first.
pub async fn attempts(
    ctx: &mut Ctx,
    event_id: Option<&str>,
    endpoint_id: Option<&str>,
    params: &AttemptListParams,
    url: &str,
) -> Result<Value, ApiError> {
    let limit = match params.limit {
        None => 10,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "limit",
                "parameter_invalid_integer",
                "limit must be between 1 and 100.",
            ))
        }
    };
    let query = AttemptQuery {
        event_id: event_id.map(str::to_string).or(params.event.clone()),
        endpoint_id: endpoint_id
            .map(str::to_string)
            .or(params.webhook_endpoint.clone()),
        starting_after: params.starting_after.clone(),
        limit: limit + 1,
    };
    let mut rows = ctx
        .store
        .list_attempts(ctx.account_id(), &query)
        .await
        .map_err(|e| ApiError::internal("attempt listing failed", e))?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let data: Vec<Value> = rows.iter().map(attempt_view).collect();
    Ok(json!({ "object": "list", "data": data, "has_more": has_more, "url": url }))
}

/// The event text with its top-level `pending_webhooks` set to `pending`, or `None`
/// when the text is not an event.
///
/// The count is spliced into the stored text rather than the event parsed into a
/// tree and written out again: every event read and every webhook attempt does
/// this. The event's own `pending_webhooks` is the last one in its text: it comes
/// after `data`, and a key inside `data` cannot follow it. A text that does not
/// hold one (never written by payground) takes the tree path.
pub fn text_with_pending(data: &str, pending: i64) -> Option<String> {
    if let Some(text) = splice_pending(data, pending) {
        return Some(text);
    }
    let mut event: Value = serde_json::from_str(data).ok()?;
    event
        .as_object_mut()?
        .insert("pending_webhooks".into(), json!(pending));
    Some(event.to_string())
}

/// The event text with its top-level `pending_webhooks` set to `pending`.
fn splice_pending(data: &str, pending: i64) -> Option<String> {
    const KEY: &str = ",\"pending_webhooks\":";
    let at = data.rfind(KEY)? + KEY.len();
    let digits = data[at..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let count = pending.to_string();
    let mut out = String::with_capacity(data.len() + count.len());
    out.push_str(&data[..at]);
    out.push_str(&count);
    out.push_str(&data[at + digits..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_sorted_for_binary_search() {
        assert!(EVENT_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert!(is_known_type("customer.created"));
        assert!(is_known_type("payment_intent.succeeded"));
        assert!(!is_known_type("customer.exploded"));
        assert!(!is_known_type("*"));
    }

    #[test]
    fn type_patterns() {
        assert_eq!(type_pattern("type", "*").ok(), Some(None));
        assert_eq!(
            type_pattern("type", "customer.*").ok(),
            Some(Some(IndexValue::Prefix("customer.".into())))
        );
        assert_eq!(
            type_pattern("type", "charge.refunded").ok(),
            Some(Some(IndexValue::Exact("charge.refunded".into())))
        );
        let e = type_pattern("types[1]", "*.created").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("types[1]"));
    }

    #[test]
    fn type_and_types_exclude_each_other() {
        let both = EventListFilters {
            event_type: Some("a".into()),
            types: Some(vec!["b".into()]),
            ..Default::default()
        };
        assert!(conditions(&both).is_err());
        let success_only = EventListFilters {
            delivery_success: Some(true),
            ..Default::default()
        };
        assert_eq!(conditions(&success_only).unwrap(), vec![]);
    }

    #[test]
    fn pending_webhooks_is_spliced_into_the_stored_text() {
        let data =
            r#"{"id":"evt_1","object":"event","pending_webhooks":0,"type":"customer.created"}"#;
        assert_eq!(
            text_with_pending(data, 2).unwrap(),
            r#"{"id":"evt_1","object":"event","pending_webhooks":2,"type":"customer.created"}"#
        );
    }

    #[test]
    fn only_the_events_own_count_changes() {
        // A key of the same name inside `data` (and in a metadata value) stays.
        let nested = r#"{"id":"evt_2","data":{"object":{"pending_webhooks":5,"metadata":{"k":",\"pending_webhooks\":9"}}},"livemode":false,"pending_webhooks":1,"request":{"id":null},"type":"charge.succeeded"}"#;
        let v: Value = serde_json::from_str(&text_with_pending(nested, 12).unwrap()).unwrap();
        assert_eq!(v["pending_webhooks"], 12);
        assert_eq!(v["data"]["object"]["pending_webhooks"], 5);
        assert_eq!(
            v["data"]["object"]["metadata"]["k"],
            ",\"pending_webhooks\":9"
        );
        // Without a top-level count in the text, the tree path adds one.
        let v: Value = serde_json::from_str(
            &text_with_pending(r#"{"id":"evt_2","type":"charge.succeeded"}"#, 3).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (v["pending_webhooks"].as_i64(), v["type"].as_str()),
            (Some(3), Some("charge.succeeded"))
        );
        assert!(text_with_pending("[1]", 3).is_none());
    }
}
