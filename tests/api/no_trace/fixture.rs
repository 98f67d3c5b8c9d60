//! The objects the refusals need, in every state, made through the API before
//! the census is taken.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::harness::{Call, Receiver, TestApp};

/// A card PaymentMethod's fields in bracket notation under `prefix`.
pub fn card_fields(prefix: &str, number: &str) -> Vec<(String, String)> {
    [
        ("type", "card"),
        ("card[number]", number),
        ("card[exp_month]", "12"),
        ("card[exp_year]", "2034"),
        ("card[cvc]", "123"),
    ]
    .into_iter()
    .map(|(k, v)| {
        let key = match prefix {
            "" => k.to_string(),
            p => match k.split_once('[') {
                Some((head, rest)) => format!("{p}[{head}][{rest}"),
                None => format!("{p}[{k}]"),
            },
        };
        (key, v.to_string())
    })
    .collect()
}

/// Objects in every state the refusals need, made through the API.
pub struct Fixture {
    pub customer: String,
    /// Attached to `customer`.
    pub card: String,
    pub other_customer: String,
    /// Attached to `other_customer`.
    pub other_card: String,
    pub deleted_customer: String,
    /// A card attached to no one.
    pub loose_card: String,
    /// A test card that declines, attached to no one.
    pub declining_card: String,
    pub succeeded: String,
    pub charge: String,
    pub balance_transaction: String,
    pub refund: String,
    pub capturable: String,
    pub capturable_charge: String,
    /// Awaiting capture, with incremental authorization asked for.
    pub incrementable: String,
    pub requires_action: String,
    /// `requires_confirmation`, for `customer`, with `card`.
    pub unconfirmed: String,
    /// `requires_confirmation` with `setup_future_usage`, for `deleted_customer`.
    pub orphaned: String,
    /// `requires_payment_method`.
    pub fresh: String,
    /// `requires_payment_method`, taking only bank debits.
    pub bank_only: String,
    pub canceled: String,
    pub processing: String,
    /// A SetupIntent in `requires_payment_method`, for `customer`.
    pub setup_intent: String,
    /// An unused ConfirmationToken for `pm_card_visa`.
    pub confirmation_token: String,
    /// A CustomerSession of `customer` whose Payment Element may remove cards.
    pub customer_session_secret: String,
    /// A product whose default price is `price`, with the other prices below.
    pub product: String,
    pub other_product: String,
    /// A product that has been deleted.
    pub deleted_product: String,
    /// The default price of `product` (which also has a monthly price with the
    /// lookup key [`LOOKUP_KEY`]).
    pub price: String,
    /// A price of `product` whose `tax_behavior` is `inclusive`.
    pub inclusive_price: String,
    /// An archived price of `product`.
    pub archived_price: String,
    /// A price of `other_product`.
    pub other_price: String,
    pub endpoint: String,
    pub disabled_endpoint: String,
    pub listener: String,
    pub event: String,
}

/// The lookup key of the fixture's `lookup_price`.
pub const LOOKUP_KEY: &str = "fixture_gold_monthly";

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

async fn pi(app: &TestApp, params: &[(&str, &str)], status: &str) -> Value {
    let pi = app.create("/v1/payment_intents", params).await;
    assert_eq!(pi["status"], status, "{pi}");
    pi
}

pub async fn fixture(app: &TestApp, receiver: &Receiver) -> Fixture {
    let endpoint = id(&app
        .create(
            "/v1/webhook_endpoints",
            &[
                ("url", &receiver.url),
                ("enabled_events[]", "payment_intent.succeeded"),
                ("enabled_events[]", "charge.refunded"),
            ],
        )
        .await);
    let disabled_endpoint = id(&app
        .create(
            "/v1/webhook_endpoints",
            &[
                ("url", &receiver.url),
                ("enabled_events[]", "refund.updated"),
            ],
        )
        .await);
    app.create(
        &format!("/v1/webhook_endpoints/{disabled_endpoint}"),
        &[("disabled", "true")],
    )
    .await;
    let listener = id(&app
        .create(
            "/v1/payground/listeners",
            &[
                ("forward_to", "http://127.0.0.1:9/forward"),
                ("events[]", "refund.created"),
            ],
        )
        .await);
    let customer = id(&app
        .create("/v1/customers", &[("email", "jenny@example.com")])
        .await);
    let attach = |customer: String| async move {
        id(&app
            .create(
                "/v1/payment_methods/pm_card_visa/attach",
                &[("customer", &customer)],
            )
            .await)
    };
    let card = attach(customer.clone()).await;
    let other_customer = id(&app
        .create("/v1/customers", &[("email", "other@example.com")])
        .await);
    let other_card = attach(other_customer.clone()).await;
    let deleted_customer = id(&app.create("/v1/customers", &[("name", "Gone")]).await);
    // Set up to save its card for a customer who is deleted before it is confirmed.
    let orphaned = pi(
        app,
        &[
            ("amount", "1000"),
            ("currency", "usd"),
            ("customer", &deleted_customer),
            ("payment_method", "pm_card_visa"),
            ("setup_future_usage", "off_session"),
        ],
        "requires_confirmation",
    )
    .await;
    let gone = app
        .delete(&format!("/v1/customers/{deleted_customer}"))
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    let new_card = |number: &'static str| async move {
        let fields = card_fields("", number);
        id(&app
            .ok(Call::new(Method::POST, "/v1/payment_methods").params(fields))
            .await)
    };
    let loose_card = new_card("4242424242424242").await;
    let declining_card = new_card("4000000000000002").await;

    let succeeded = pi(
        app,
        &[
            ("amount", "2000"),
            ("currency", "usd"),
            ("customer", &customer),
            ("payment_method", &card),
            ("confirm", "true"),
        ],
        "succeeded",
    )
    .await;
    let charge = succeeded["latest_charge"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let balance_transaction = app
        .get(&format!("/v1/charges/{charge}"), &[])
        .await
        .str("balance_transaction")
        .to_string();
    let refund = id(&app
        .create("/v1/refunds", &[("charge", &charge), ("amount", "500")])
        .await);
    let manual = [
        ("amount", "1500"),
        ("currency", "usd"),
        ("capture_method", "manual"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
    ];
    let capturable = pi(app, &manual, "requires_capture").await;
    let mut incremental = manual.to_vec();
    incremental.push((
        "payment_method_options[card][request_incremental_authorization]",
        "if_available",
    ));
    let incrementable = pi(app, &incremental, "requires_capture").await;
    let requires_action = pi(
        app,
        &[
            ("amount", "1000"),
            ("currency", "usd"),
            ("payment_method", "pm_card_threeDSecure2Required"),
            ("confirm", "true"),
            ("return_url", "https://example.com/return"),
        ],
        "requires_action",
    )
    .await;
    let unconfirmed = pi(
        app,
        &[
            ("amount", "1000"),
            ("currency", "usd"),
            ("customer", &customer),
            ("payment_method", &card),
        ],
        "requires_confirmation",
    )
    .await;
    let plain = [("amount", "1000"), ("currency", "usd")];
    let fresh = pi(app, &plain, "requires_payment_method").await;
    let bank_only = pi(
        app,
        &[
            ("amount", "1000"),
            ("currency", "usd"),
            ("payment_method_types[]", "us_bank_account"),
        ],
        "requires_payment_method",
    )
    .await;
    let canceled = id(&pi(app, &plain, "requires_payment_method").await);
    app.create(&format!("/v1/payment_intents/{canceled}/cancel"), &[])
        .await;
    let processing = pi(
        app,
        &[
            ("amount", "1000"),
            ("currency", "usd"),
            ("payment_method_types[]", "us_bank_account"),
            ("confirm", "true"),
            ("payment_method_data[type]", "us_bank_account"),
            ("payment_method_data[billing_details][name]", "Jenny Rosen"),
            (
                "payment_method_data[us_bank_account][routing_number]",
                "110000000",
            ),
            (
                "payment_method_data[us_bank_account][account_number]",
                "000123456789",
            ),
            (
                "payment_method_data[us_bank_account][account_holder_type]",
                "individual",
            ),
            ("mandate_data[customer_acceptance][type]", "offline"),
        ],
        "processing",
    )
    .await;
    let delivered = app
        .get(
            "/v1/events",
            &[
                ("types[]", "payment_intent.succeeded"),
                ("types[]", "charge.refunded"),
                ("limit", "100"),
            ],
        )
        .await;
    let delivered = delivered.body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let event = delivered
        .iter()
        .find(|e| e["type"] == "payment_intent.succeeded")
        .map(id)
        .expect("a payment_intent.succeeded event");
    receiver
        .wait_for(delivered.len(), Duration::from_secs(20))
        .await;
    // Delivered is not yet recorded: wait for the attempts too, so that the
    // census starts from a database nothing is still writing to.
    let attempts = format!("/v1/webhook_endpoints/{endpoint}/attempts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let recorded = app.get(&attempts, &[("limit", "100")]).await;
        let n = recorded.body["data"].as_array().map_or(0, Vec::len);
        if n >= delivered.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} of {} attempts recorded",
            delivered.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let setup_intent = id(&app
        .create("/v1/setup_intents", &[("customer", &customer)])
        .await);
    let confirmation_token = id(&app
        .create(
            "/v1/test_helpers/confirmation_tokens",
            &[("payment_method", "pm_card_visa")],
        )
        .await);
    let customer_session_secret = app
        .create(
            "/v1/customer_sessions",
            &[
                ("customer", customer.as_str()),
                ("components[payment_element][enabled]", "true"),
                (
                    "components[payment_element][features][payment_method_remove]",
                    "enabled",
                ),
            ],
        )
        .await["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let product = app
        .create(
            "/v1/products",
            &[
                ("name", "T-shirt"),
                ("default_price_data[unit_amount]", "2000"),
                ("default_price_data[currency]", "usd"),
            ],
        )
        .await;
    let price = product["default_price"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let product = id(&product);
    let new_price = |params: Vec<(&'static str, String)>| {
        let product = product.clone();
        async move {
            let mut call = Call::new(Method::POST, "/v1/prices").params([
                ("product", product.as_str()),
                ("currency", "usd"),
                ("unit_amount", "1000"),
            ]);
            call = call.params(params);
            id(&app.ok(call).await)
        }
    };
    new_price(vec![
        ("recurring[interval]", "month".into()),
        ("lookup_key", LOOKUP_KEY.into()),
    ])
    .await;
    let inclusive_price = new_price(vec![("tax_behavior", "inclusive".into())]).await;
    let archived_price = new_price(vec![("active", "false".into())]).await;
    let other = app.create("/v1/products", &[("name", "Mug")]).await;
    let other_product = id(&other);
    let other_price = id(&app
        .create(
            "/v1/prices",
            &[
                ("product", &other_product),
                ("currency", "usd"),
                ("unit_amount", "500"),
            ],
        )
        .await);
    let deleted_product = id(&app.create("/v1/products", &[("name", "Gone")]).await);
    let gone = app.delete(&format!("/v1/products/{deleted_product}")).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    Fixture {
        customer,
        card,
        other_customer,
        other_card,
        deleted_customer,
        loose_card,
        declining_card,
        succeeded: id(&succeeded),
        charge,
        balance_transaction,
        refund,
        capturable_charge: capturable["latest_charge"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        capturable: id(&capturable),
        incrementable: id(&incrementable),
        requires_action: id(&requires_action),
        unconfirmed: id(&unconfirmed),
        orphaned: id(&orphaned),
        fresh: id(&fresh),
        bank_only: id(&bank_only),
        canceled,
        processing: id(&processing),
        setup_intent,
        confirmation_token,
        customer_session_secret,
        product,
        other_product,
        deleted_product,
        price,
        inclusive_price,
        archived_price,
        other_price,
        endpoint,
        disabled_endpoint,
        listener,
        event,
    }
}
