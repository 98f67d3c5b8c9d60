//! Refusals that come once an operation has started: it has loaded what it
//! needs and often saved new versions already, which a commit of the failed
//! operation would keep.

use reqwest::Method;

use super::fixture::{card_fields, Fixture, LOOKUP_KEY};
use super::{missing_id, Expect};
use crate::harness::Call;

/// A metadata key over Stripe's 40 characters.
const LONG_KEY: &str = "a_metadata_key_of_more_than_forty_characters";

pub struct Refusal {
    pub what: &'static str,
    pub call: Call,
    pub expect: Expect,
}

fn post(path: impl Into<String>, params: &[(&str, &str)]) -> Call {
    Call::new(Method::POST, path).params(params.iter().copied())
}

fn refusal(
    what: &'static str,
    call: Call,
    status: u16,
    code: Option<&str>,
    param: Option<&str>,
) -> Refusal {
    Refusal {
        what,
        call,
        expect: Expect::new(status, code, param),
    }
}

/// Refusals that come once an operation has loaded what it needs, and often after
/// it has saved new versions (a PaymentIntent and its event, a PaymentMethod made
/// from `pm_card_*` or `payment_method_data`, a balance transaction, a charge).
pub fn refusals(f: &Fixture) -> Vec<Refusal> {
    let mut all = intents_and_more(f);
    all.extend(catalogue(f));
    all
}

/// Products and prices: these load the product or price first, and most have
/// saved a new version of one (the product of `product_data`, the product a
/// price is for, the price a default names) when they refuse.
fn catalogue(f: &Fixture) -> Vec<Refusal> {
    let bad = |what, call, param| refusal(what, call, 400, None, Some(param));
    let price = |id: &str| format!("/v1/prices/{id}");
    let product = |id: &str| format!("/v1/products/{id}");
    let new_price = |extra: &[(&str, &str)]| {
        post("/v1/prices", &[("currency", "usd")]).params(extra.iter().copied())
    };
    let of_product = [("product", f.product.as_str()), ("unit_amount", "1200")];
    let taken = [("lookup_key", LOOKUP_KEY)];
    vec![
        bad(
            "price create: a lookup key another active price has",
            new_price(&of_product).params(taken),
            "lookup_key",
        ),
        bad(
            "price create: product_data, and a lookup key another active price has",
            new_price(&[("product_data[name]", "Hoodie"), ("unit_amount", "1")]).params(taken),
            "lookup_key",
        ),
        refusal(
            "price create: a deleted product",
            new_price(&[("product", &f.deleted_product), ("unit_amount", "1")]),
            400,
            Some("resource_missing"),
            Some("product"),
        ),
        bad(
            "price create: a tiered price",
            new_price(&[
                ("product", &f.product),
                ("billing_scheme", "tiered"),
                ("tiers_mode", "volume"),
                ("tiers[0][up_to]", "inf"),
                ("tiers[0][unit_amount]", "500"),
            ]),
            "billing_scheme",
        ),
        bad(
            "price create: a year and a month",
            new_price(&of_product).params([
                ("recurring[interval]", "month"),
                ("recurring[interval_count]", "13"),
            ]),
            "recurring[interval_count]",
        ),
        bad(
            "price update: archiving the default price",
            post(price(&f.price), &[("active", "false")]),
            "active",
        ),
        bad(
            "price update: an inclusive tax behavior made exclusive",
            post(price(&f.inclusive_price), &[("tax_behavior", "exclusive")]),
            "tax_behavior",
        ),
        bad(
            "price update: a lookup key another active price has",
            post(price(&f.inclusive_price), &[("metadata[k]", "v")]).params(taken),
            "lookup_key",
        ),
        refusal(
            "price update: a parameter only create takes",
            post(price(&f.price), &[("unit_amount", "1")]),
            400,
            Some("parameter_unknown"),
            Some("unit_amount"),
        ),
        bad(
            "product create: default_price_data over a year",
            post(
                "/v1/products",
                &[
                    ("name", "Box"),
                    ("default_price_data[currency]", "usd"),
                    ("default_price_data[unit_amount]", "100"),
                    ("default_price_data[recurring][interval]", "week"),
                    ("default_price_data[recurring][interval_count]", "53"),
                ],
            ),
            "default_price_data[recurring][interval_count]",
        ),
        bad(
            "product update: a default price of another product",
            post(
                product(&f.product),
                &[("default_price", &f.other_price), ("name", "Renamed")],
            ),
            "default_price",
        ),
        bad(
            "product update: an archived default price",
            post(product(&f.product), &[("default_price", &f.archived_price)]),
            "default_price",
        ),
        refusal(
            "product update: an empty name",
            post(product(&f.product), &[("name", ""), ("description", "new")]),
            400,
            Some("parameter_invalid_empty"),
            Some("name"),
        ),
        refusal(
            "product update: a deleted product",
            post(product(&f.deleted_product), &[("name", "Back")]),
            404,
            Some("resource_missing"),
            Some("id"),
        ),
        refusal(
            "product delete: a product with prices",
            Call::new(Method::DELETE, product(&f.product)),
            400,
            None,
            None,
        ),
        bad(
            "product list: ids with a cursor",
            Call::new(Method::GET, "/v1/products").params([
                ("ids[]", f.product.as_str()),
                ("starting_after", f.other_product.as_str()),
            ]),
            "ids",
        ),
    ]
}

/// The refusals of everything but the catalogue.
fn intents_and_more(f: &Fixture) -> Vec<Refusal> {
    let unexpected = Some("payment_intent_unexpected_state");
    let pis = "/v1/payment_intents";
    let pi_path = |id: &str, action: &str| format!("/v1/payment_intents/{id}{action}");
    let long_metadata = format!("metadata[{LONG_KEY}]");
    let long_param = long_metadata.as_str();
    let mut card_data = card_fields("payment_method_data", "4242424242424242");
    card_data.extend([
        ("amount".into(), "1000".into()),
        ("currency".into(), "usd".into()),
    ]);
    vec![
        // Create saves the PaymentIntent and its event before it looks at these.
        refusal(
            "create: off_session without confirm",
            post(
                pis,
                &[
                    ("amount", "1000"),
                    ("currency", "usd"),
                    ("off_session", "true"),
                ],
            ),
            400,
            None,
            Some("off_session"),
        ),
        refusal(
            "create: return_url without confirm",
            post(
                pis,
                &[
                    ("amount", "1000"),
                    ("currency", "usd"),
                    ("return_url", "https://example.com/r"),
                ],
            ),
            400,
            None,
            Some("return_url"),
        ),
        refusal(
            "create: error_on_requires_action without confirm",
            post(
                pis,
                &[
                    ("amount", "1000"),
                    ("currency", "usd"),
                    ("error_on_requires_action", "true"),
                ],
            ),
            400,
            None,
            Some("error_on_requires_action"),
        ),
        refusal(
            "create: off_session without confirm, with a pm_card_* PaymentMethod",
            post(
                pis,
                &[
                    ("amount", "1000"),
                    ("currency", "usd"),
                    ("payment_method", "pm_card_visa"),
                    ("off_session", "true"),
                ],
            ),
            400,
            None,
            Some("off_session"),
        ),
        refusal(
            "create: off_session without confirm, with payment_method_data",
            Call::new(Method::POST, pis)
                .params(card_data.clone())
                .params([("off_session", "true")]),
            400,
            None,
            Some("off_session"),
        ),
        refusal(
            "create and confirm: a PaymentMethod of another customer",
            post(
                pis,
                &[
                    ("amount", "1000"),
                    ("currency", "usd"),
                    ("customer", &f.customer),
                    ("payment_method", &f.other_card),
                    ("confirm", "true"),
                ],
            ),
            400,
            None,
            Some("payment_method"),
        ),
        refusal(
            "create and confirm: a card where only bank debits are allowed",
            post(
                pis,
                &[
                    ("amount", "1000"),
                    ("currency", "usd"),
                    ("payment_method_types[]", "us_bank_account"),
                    ("payment_method", "pm_card_visa"),
                    ("confirm", "true"),
                ],
            ),
            400,
            Some("payment_intent_incompatible_payment_method"),
            Some("payment_method"),
        ),
        refusal(
            "create: a deleted customer",
            post(
                pis,
                &[
                    ("amount", "1000"),
                    ("currency", "usd"),
                    ("customer", &f.deleted_customer),
                ],
            ),
            400,
            Some("resource_missing"),
            Some("customer"),
        ),
        // Confirm.
        refusal(
            "confirm: a succeeded intent",
            post(pi_path(&f.succeeded, "/confirm"), &[]),
            400,
            unexpected,
            None,
        ),
        refusal(
            "confirm: a canceled intent",
            post(pi_path(&f.canceled, "/confirm"), &[]),
            400,
            unexpected,
            None,
        ),
        refusal(
            "confirm: an intent awaiting capture",
            post(pi_path(&f.capturable, "/confirm"), &[]),
            400,
            unexpected,
            None,
        ),
        refusal(
            "confirm: a PaymentMethod of another customer",
            post(
                pi_path(&f.unconfirmed, "/confirm"),
                &[("payment_method", &f.other_card)],
            ),
            400,
            None,
            Some("payment_method"),
        ),
        refusal(
            "confirm: payment_method_data of a type the intent does not take",
            Call::new(Method::POST, pi_path(&f.bank_only, "/confirm"))
                .params(card_fields("payment_method_data", "4242424242424242")),
            400,
            Some("payment_intent_incompatible_payment_method"),
            Some("payment_method"),
        ),
        refusal(
            "confirm: a pm_card_* PaymentMethod the intent does not take",
            post(
                pi_path(&f.bank_only, "/confirm"),
                &[("payment_method", "pm_card_visa")],
            ),
            400,
            Some("payment_intent_incompatible_payment_method"),
            Some("payment_method"),
        ),
        refusal(
            "confirm: a card to save for a customer deleted since, after the charge",
            post(pi_path(&f.orphaned, "/confirm"), &[]),
            400,
            Some("resource_missing"),
            Some("customer"),
        ),
        refusal(
            "confirm: no payment method",
            post(pi_path(&f.fresh, "/confirm"), &[]),
            400,
            unexpected,
            None,
        ),
        // Update.
        refusal(
            "update: the amount of a succeeded intent",
            post(pi_path(&f.succeeded, ""), &[("amount", "5000")]),
            400,
            unexpected,
            None,
        ),
        refusal(
            "update: a canceled intent",
            post(pi_path(&f.canceled, ""), &[("metadata[order]", "1")]),
            400,
            unexpected,
            None,
        ),
        refusal(
            "update: payment_method_data, then a receipt_email that is not one",
            Call::new(Method::POST, pi_path(&f.fresh, ""))
                .params(card_fields("payment_method_data", "4242424242424242"))
                .params([("receipt_email", "not-an-email")]),
            400,
            None,
            Some("receipt_email"),
        ),
        refusal(
            "update: a pm_card_* PaymentMethod, then a receipt_email that is not one",
            post(
                pi_path(&f.fresh, ""),
                &[
                    ("payment_method", "pm_card_visa"),
                    ("receipt_email", "not-an-email"),
                ],
            ),
            400,
            None,
            Some("receipt_email"),
        ),
        refusal(
            "update: another customer for an intent that has one",
            post(
                pi_path(&f.unconfirmed, ""),
                &[("customer", &f.other_customer)],
            ),
            400,
            None,
            Some("customer"),
        ),
        // Capture.
        refusal(
            "capture: an intent not awaiting capture",
            post(pi_path(&f.succeeded, "/capture"), &[]),
            400,
            unexpected,
            None,
        ),
        refusal(
            "capture: an intent requiring action",
            post(pi_path(&f.requires_action, "/capture"), &[]),
            400,
            unexpected,
            None,
        ),
        refusal(
            "capture: more than is capturable",
            post(
                pi_path(&f.capturable, "/capture"),
                &[("amount_to_capture", "999999")],
            ),
            400,
            Some("amount_too_large"),
            Some("amount_to_capture"),
        ),
        refusal(
            "capture: metadata with a key too long, after the charge is captured",
            post(pi_path(&f.capturable, "/capture"), &[(long_param, "x")]),
            400,
            None,
            Some(long_param),
        ),
        refusal(
            "charge capture: a charge already captured",
            post(format!("/v1/charges/{}/capture", f.charge), &[]),
            400,
            Some("charge_already_captured"),
            None,
        ),
        refusal(
            "charge capture: more than is capturable",
            post(
                format!("/v1/charges/{}/capture", f.capturable_charge),
                &[("amount", "999999")],
            ),
            400,
            Some("amount_too_large"),
            Some("amount"),
        ),
        // Cancel.
        refusal(
            "cancel: twice",
            post(pi_path(&f.canceled, "/cancel"), &[]),
            400,
            unexpected,
            None,
        ),
        refusal(
            "cancel: a succeeded intent",
            post(pi_path(&f.succeeded, "/cancel"), &[]),
            400,
            unexpected,
            None,
        ),
        refusal(
            "cancel: a processing intent",
            post(pi_path(&f.processing, "/cancel"), &[]),
            400,
            unexpected,
            None,
        ),
        // Incremental authorization.
        refusal(
            "increment_authorization: not asked for at confirm",
            post(
                pi_path(&f.capturable, "/increment_authorization"),
                &[("amount", "2000")],
            ),
            400,
            unexpected,
            None,
        ),
        refusal(
            "increment_authorization: an intent not awaiting capture",
            post(
                pi_path(&f.succeeded, "/increment_authorization"),
                &[("amount", "5000")],
            ),
            400,
            unexpected,
            None,
        ),
        refusal(
            "increment_authorization: not more than the amount",
            post(
                pi_path(&f.incrementable, "/increment_authorization"),
                &[("amount", "1000")],
            ),
            400,
            Some("amount_too_small"),
            Some("amount"),
        ),
        refusal(
            "increment_authorization: metadata with a key too long, after the charge is saved",
            post(
                pi_path(&f.incrementable, "/increment_authorization"),
                &[("amount", "3000"), (long_param, "x")],
            ),
            400,
            None,
            Some(long_param),
        ),
        // Settlement of bank debits.
        refusal(
            "settle: an intent that is not processing",
            post(
                format!("/v1/test_helpers/payment_intents/{}/settle", f.succeeded),
                &[],
            ),
            400,
            unexpected,
            None,
        ),
        // Refunds.
        refusal(
            "refund: more than the charge",
            post(
                "/v1/refunds",
                &[("charge", &f.charge), ("amount", "999999")],
            ),
            400,
            Some("amount_too_large"),
            Some("amount"),
        ),
        refusal(
            "refund: an uncaptured charge",
            post("/v1/refunds", &[("charge", &f.capturable_charge)]),
            400,
            Some("charge_not_refundable"),
            Some("charge"),
        ),
        refusal(
            "refund: an intent without a successful charge",
            post("/v1/refunds", &[("payment_intent", &f.capturable)]),
            400,
            Some("charge_not_refundable"),
            Some("payment_intent"),
        ),
        refusal(
            "refund: metadata with a key too long, after the balance transaction is made",
            post(
                "/v1/refunds",
                &[("charge", &f.charge), ("amount", "100"), (long_param, "x")],
            ),
            400,
            None,
            Some(long_param),
        ),
        refusal(
            "refund cancel: a refund that succeeded",
            post(format!("/v1/refunds/{}/cancel", f.refund), &[]),
            400,
            Some("refund_unexpected_state"),
            None,
        ),
        // PaymentMethods.
        refusal(
            "attach: a declining test card",
            post(
                format!("/v1/payment_methods/{}/attach", f.declining_card),
                &[("customer", &f.customer)],
            ),
            402,
            Some("card_declined"),
            None,
        ),
        refusal(
            "attach: a declining pm_card_* card",
            post(
                "/v1/payment_methods/pm_card_chargeDeclined/attach",
                &[("customer", &f.customer)],
            ),
            402,
            Some("card_declined"),
            None,
        ),
        refusal(
            "attach: a card attached to another customer",
            post(
                format!("/v1/payment_methods/{}/attach", f.other_card),
                &[("customer", &f.customer)],
            ),
            400,
            Some("payment_method_unexpected_state"),
            Some("payment_method"),
        ),
        refusal(
            "attach: a pm_card_* card to a deleted customer",
            post(
                "/v1/payment_methods/pm_card_visa/attach",
                &[("customer", &f.deleted_customer)],
            ),
            400,
            Some("resource_missing"),
            Some("customer"),
        ),
        refusal(
            "detach: a PaymentMethod attached to no one",
            post(format!("/v1/payment_methods/{}/detach", f.loose_card), &[]),
            400,
            Some("payment_method_unexpected_state"),
            None,
        ),
        refusal(
            "update: a PaymentMethod attached to no one",
            post(
                format!("/v1/payment_methods/{}", f.loose_card),
                &[("metadata[a]", "b")],
            ),
            400,
            None,
            None,
        ),
        // Customers.
        refusal(
            "customer update: a deleted customer",
            post(
                format!("/v1/customers/{}", f.deleted_customer),
                &[("name", "Back")],
            ),
            404,
            Some("resource_missing"),
            Some("id"),
        ),
        refusal(
            "customer delete: a deleted customer",
            Call::new(
                Method::DELETE,
                format!("/v1/customers/{}", f.deleted_customer),
            ),
            404,
            Some("resource_missing"),
            Some("id"),
        ),
        refusal(
            "customer create: a declining pm_card_* card",
            post(
                "/v1/customers",
                &[("payment_method", "pm_card_chargeDeclined")],
            ),
            402,
            Some("card_declined"),
            None,
        ),
        refusal(
            "customer create: a card attached to another customer",
            post("/v1/customers", &[("payment_method", &f.other_card)]),
            400,
            Some("payment_method_unexpected_state"),
            Some("payment_method"),
        ),
        refusal(
            "customer update: a default PaymentMethod of another customer",
            post(
                format!("/v1/customers/{}", f.customer),
                &[("invoice_settings[default_payment_method]", &f.other_card)],
            ),
            400,
            Some("resource_missing"),
            Some("invoice_settings[default_payment_method]"),
        ),
        refusal(
            "charge update: a customer for a charge that has one",
            post(
                format!("/v1/charges/{}", f.charge),
                &[("customer", &f.other_customer)],
            ),
            400,
            None,
            Some("customer"),
        ),
        // Webhooks.
        refusal(
            "webhook endpoint: a URL that is not one",
            post(
                "/v1/webhook_endpoints",
                &[("url", "not a url"), ("enabled_events[]", "*")],
            ),
            400,
            Some("url_invalid"),
            Some("url"),
        ),
        refusal(
            "webhook endpoint: an unknown event type",
            post(
                "/v1/webhook_endpoints",
                &[
                    ("url", "https://example.com/hook"),
                    ("enabled_events[]", "payment_intent.exploded"),
                ],
            ),
            400,
            None,
            Some("enabled_events[0]"),
        ),
        refusal(
            "webhook endpoint update: a URL that is not http",
            post(
                format!("/v1/webhook_endpoints/{}", f.endpoint),
                &[("url", "ftp://example.com/hook")],
            ),
            400,
            Some("url_invalid"),
            Some("url"),
        ),
        refusal(
            "listener: a forward_to that is not a URL",
            post("/v1/payground/listeners", &[("forward_to", "nowhere")]),
            400,
            Some("url_invalid"),
            Some("forward_to"),
        ),
        refusal(
            "resend: to an endpoint that does not exist",
            post(
                format!("/v1/events/{}/resend", f.event),
                &[("webhook_endpoint", &missing_id("we"))],
            ),
            404,
            Some("resource_missing"),
            Some("webhook_endpoint"),
        ),
        refusal(
            "resend: to a disabled endpoint",
            post(
                format!("/v1/events/{}/resend", f.event),
                &[("webhook_endpoint", &f.disabled_endpoint)],
            ),
            400,
            None,
            Some("webhook_endpoint"),
        ),
        // The clock.
        refusal(
            "clock: advanced by a negative amount",
            post("/v1/test_helpers/clock/advance", &[("seconds", "-60")]),
            400,
            None,
            Some("seconds"),
        ),
    ]
}
