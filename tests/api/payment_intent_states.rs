//! The PaymentIntent lifecycle as Stripe moves it, through the routes: every
//! status reached through the API, the events each move emits (read back through
//! `GET /v1/events`), and Stripe's refusal for each action a status does not
//! admit.

use reqwest::Method;
use serde_json::Value;

use crate::harness::{spawn_app, Backend, Call, TestApp};
use crate::on_both_stores;

on_both_stores!(
    every_status_is_reached_with_its_events,
    authentication_on_the_hosted_page_completes_or_fails,
    refused_actions_say_why_and_change_nothing,
);

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

async fn create(app: &TestApp, params: &[(&str, &str)]) -> Value {
    let mut all = vec![("amount", "2000"), ("currency", "usd")];
    all.extend_from_slice(params);
    app.create("/v1/payment_intents", &all).await
}

async fn act(app: &TestApp, pi: &Value, action: &str, params: &[(&str, &str)]) -> Value {
    app.create(&format!("/v1/payment_intents/{}/{action}", id(pi)), params)
        .await
}

/// The events about `pi` since `seen` of them were looked at.
async fn new_events(app: &TestApp, pi: &Value, seen: &mut usize) -> Vec<String> {
    let all = app.events_of(&id(pi)).await;
    let fresh = all[*seen..].to_vec();
    *seen = all.len();
    fresh
}

const BANK_DEBIT: &[(&str, &str)] = &[
    ("payment_method_types[]", "us_bank_account"),
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
];

async fn every_status_is_reached_with_its_events(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let app = &app;

    // requires_payment_method → requires_confirmation → succeeded.
    let pi = create(app, &[]).await;
    let mut seen = 0;
    assert_eq!(pi["status"], "requires_payment_method");
    assert_eq!(
        new_events(app, &pi, &mut seen).await,
        ["payment_intent.created"]
    );
    let pi = app
        .create(
            &format!("/v1/payment_intents/{}", id(&pi)),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(pi["status"], "requires_confirmation");
    assert!(
        new_events(app, &pi, &mut seen).await.is_empty(),
        "attaching a method emits nothing"
    );
    let pi = act(app, &pi, "confirm", &[]).await;
    assert_eq!(pi["status"], "succeeded");
    assert_eq!(pi["amount_received"], 2000);
    assert_eq!(
        new_events(app, &pi, &mut seen).await,
        ["charge.succeeded", "payment_intent.succeeded"]
    );
    let charge = app
        .get(
            &format!(
                "/v1/charges/{}",
                pi["latest_charge"].as_str().unwrap_or_default()
            ),
            &[],
        )
        .await;
    assert_eq!(charge.body["captured"], true);
    assert_eq!(charge.body["status"], "succeeded");

    // requires_capture → succeeded, partly captured.
    let pi = create(
        app,
        &[
            ("capture_method", "manual"),
            ("payment_method", "pm_card_visa"),
            ("confirm", "true"),
        ],
    )
    .await;
    let mut seen = 0;
    assert_eq!(pi["status"], "requires_capture");
    assert_eq!(pi["amount_capturable"], 2000);
    assert_eq!(
        new_events(app, &pi, &mut seen).await,
        [
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.amount_capturable_updated"
        ]
    );
    let pi = act(app, &pi, "capture", &[("amount_to_capture", "1500")]).await;
    assert_eq!(pi["status"], "succeeded");
    assert_eq!(
        (
            pi["amount_received"].clone(),
            pi["amount_capturable"].clone()
        ),
        (1500.into(), 0.into())
    );
    assert_eq!(
        new_events(app, &pi, &mut seen).await,
        ["charge.captured", "payment_intent.succeeded"]
    );

    // requires_capture → canceled releases the authorization.
    let pi = create(
        app,
        &[
            ("capture_method", "manual"),
            ("payment_method", "pm_card_visa"),
            ("confirm", "true"),
        ],
    )
    .await;
    let mut seen = new_events(app, &pi, &mut 0).await.len();
    let pi = act(
        app,
        &pi,
        "cancel",
        &[("cancellation_reason", "requested_by_customer")],
    )
    .await;
    assert_eq!(pi["status"], "canceled");
    assert_eq!(pi["cancellation_reason"], "requested_by_customer");
    assert!(pi["canceled_at"].is_i64());
    assert_eq!(
        new_events(app, &pi, &mut seen).await,
        ["charge.refunded", "payment_intent.canceled"]
    );

    // requires_payment_method → canceled.
    let pi = create(app, &[]).await;
    let mut seen = 1;
    let pi = act(app, &pi, "cancel", &[]).await;
    assert_eq!(pi["status"], "canceled");
    assert_eq!(
        new_events(app, &pi, &mut seen).await,
        ["payment_intent.canceled"]
    );

    // A decline: back to requires_payment_method with the error; then paid.
    let declined = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "2000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_chargeDeclined"),
                ("confirm", "true"),
            ],
        )
        .await;
    assert_eq!(declined.status, 402, "{}", declined.text);
    let pi = declined.error()["payment_intent"].clone();
    let mut seen = 0;
    assert_eq!(pi["status"], "requires_payment_method");
    assert_eq!(pi["last_payment_error"]["code"], "card_declined");
    assert_eq!(pi["last_payment_error"]["decline_code"], "generic_decline");
    assert_eq!(
        new_events(app, &pi, &mut seen).await,
        [
            "payment_intent.created",
            "charge.failed",
            "payment_intent.payment_failed"
        ]
    );
    let pi = act(app, &pi, "confirm", &[("payment_method", "pm_card_visa")]).await;
    assert_eq!(pi["status"], "succeeded");
    assert_eq!(pi["last_payment_error"], Value::Null);
    assert_eq!(
        new_events(app, &pi, &mut seen).await,
        ["charge.succeeded", "payment_intent.succeeded"]
    );
    let charges = app
        .get("/v1/charges", &[("payment_intent", &id(&pi))])
        .await;
    assert_eq!(
        charges.body["data"].as_array().map(Vec::len),
        Some(2),
        "one charge per attempt"
    );

    // processing (a bank debit) → succeeded when it settles.
    let mut params = vec![("confirm", "true")];
    params.extend_from_slice(BANK_DEBIT);
    let pi = create(app, &params).await;
    let mut seen = 0;
    assert_eq!(pi["status"], "processing");
    assert_eq!(
        new_events(app, &pi, &mut seen).await,
        [
            "payment_intent.created",
            "charge.pending",
            "payment_intent.processing"
        ]
    );
    let settled = app
        .create(
            &format!("/v1/test_helpers/payment_intents/{}/settle", id(&pi)),
            &[],
        )
        .await;
    assert_eq!(settled["status"], "succeeded");
    assert_eq!(
        new_events(app, &pi, &mut seen).await,
        ["charge.succeeded", "payment_intent.succeeded"]
    );

    // requires_action (3-D Secure): next_action points at the hosted page.
    let pi = create(
        app,
        &[
            ("payment_method", "pm_card_threeDSecure2Required"),
            ("confirm", "true"),
        ],
    )
    .await;
    assert_eq!(pi["status"], "requires_action");
    assert_eq!(pi["next_action"]["type"], "use_stripe_sdk");
    assert_eq!(
        new_events(app, &pi, &mut 0).await,
        ["payment_intent.created", "payment_intent.requires_action"]
    );
    let pi = create(
        app,
        &[
            ("payment_method", "pm_card_threeDSecure2Required"),
            ("confirm", "true"),
            ("return_url", "https://example.com/return"),
        ],
    )
    .await;
    assert_eq!(pi["next_action"]["type"], "redirect_to_url");
    assert_eq!(
        pi["next_action"]["redirect_to_url"]["return_url"],
        "https://example.com/return"
    );
    let url = pi["next_action"]["redirect_to_url"]["url"]
        .as_str()
        .unwrap_or_default();
    let page = app.url(&format!(
        "/payground/authenticate/{}/{}?client_secret=",
        app.account,
        id(&pi)
    ));
    assert!(url.starts_with(&page), "{url}");
}

/// POSTs the hosted page's form as the card holder's browser would.
async fn authenticate(app: &TestApp, pi: &Value, action: &str) -> reqwest::Response {
    let url = pi["next_action"]["redirect_to_url"]["url"]
        .as_str()
        .unwrap_or_default();
    let page = app.client.get(url).send().await.expect("the hosted page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("Complete authentication"), "{html}");
    let path = url.split('?').next().unwrap_or_default();
    app.client
        .post(path)
        .form(&[
            (
                "client_secret",
                pi["client_secret"].as_str().unwrap_or_default(),
            ),
            ("return_url", "https://example.com/return"),
            ("action", action),
        ])
        .send()
        .await
        .expect("the hosted page's form")
}

async fn authentication_on_the_hosted_page_completes_or_fails(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let app = &app;
    let needs_3ds = [
        ("payment_method", "pm_card_threeDSecure2Required"),
        ("confirm", "true"),
        ("return_url", "https://example.com/return"),
    ];
    for (action, status, redirect, events) in [
        (
            "complete",
            "succeeded",
            "succeeded",
            &["charge.succeeded", "payment_intent.succeeded"][..],
        ),
        (
            "fail",
            "requires_payment_method",
            "failed",
            &["payment_intent.payment_failed"][..],
        ),
    ] {
        let pi = create(app, &needs_3ds).await;
        let mut seen = new_events(app, &pi, &mut 0).await.len();
        let answer = authenticate(app, &pi, action).await;
        assert_eq!(answer.status(), 303, "{action}");
        let location = answer
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            location.starts_with("https://example.com/return?payment_intent="),
            "{location}"
        );
        assert!(
            location.ends_with(&format!("redirect_status={redirect}")),
            "{location}"
        );
        let after = app
            .get(&format!("/v1/payment_intents/{}", id(&pi)), &[])
            .await;
        assert_eq!(after.body["status"], status, "{action}: {}", after.text);
        assert_eq!(new_events(app, &pi, &mut seen).await, events, "{action}");
        if action == "fail" {
            assert_eq!(
                after.body["last_payment_error"]["code"],
                "payment_intent_authentication_failure"
            );
        }
    }
    // off_session with a card that needs authentication: a 402, kept as a decline.
    let off = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "2000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_authenticationRequired"),
                ("confirm", "true"),
                ("off_session", "true"),
            ],
        )
        .await;
    assert_eq!(off.status, 402, "{}", off.text);
    assert_eq!(off.error_code(), Some("authentication_required"));
    assert_eq!(
        off.error()["payment_intent"]["status"],
        "requires_payment_method"
    );
}

/// An action to try: its name, its route after the intent's path, its params,
/// and the statuses that admit it, as Stripe documents the lifecycle.
type Attempt<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

/// The statuses the refusals list, in Stripe's order.
const CONFIRMABLE: &str = "requires_confirmation, requires_payment_method, requires_action";
const CANCELABLE: &str =
    "requires_payment_method, requires_capture, requires_confirmation, requires_action";

fn refusal_message(action: &str, status: &str) -> String {
    let base = |verb: &str| {
        format!("You cannot {verb} this PaymentIntent because it has a status of {status}.")
    };
    match action {
        "confirm" => format!(
            "{} Only a PaymentIntent with one of the following statuses may be confirmed: {CONFIRMABLE}.",
            base("confirm")
        ),
        "capture" => format!(
            "{} Only a PaymentIntent with one of the following statuses may be captured: requires_capture.",
            base("capture")
        ),
        "cancel" => format!(
            "{} Only a PaymentIntent with one of the following statuses may be canceled: {CANCELABLE}.",
            base("cancel")
        ),
        "increment_authorization" => base("increment the authorization of"),
        "update" => base("update"),
        "settle" => base("settle"),
        other => panic!("no action {other}"),
    }
}

async fn refused_actions_say_why_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let app = &app;
    let manual = [
        ("capture_method", "manual"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
    ];
    let mut bank = vec![("confirm", "true")];
    bank.extend_from_slice(BANK_DEBIT);
    let canceled = create(app, &[]).await;
    act(app, &canceled, "cancel", &[]).await;
    let intents = [
        create(app, &[]).await,
        create(app, &[("payment_method", "pm_card_visa")]).await,
        create(
            app,
            &[
                ("payment_method", "pm_card_threeDSecure2Required"),
                ("confirm", "true"),
            ],
        )
        .await,
        create(app, &bank).await,
        create(app, &manual).await,
        create(
            app,
            &[("payment_method", "pm_card_visa"), ("confirm", "true")],
        )
        .await,
        canceled,
    ];
    let actions: [Attempt; 6] = [
        (
            "confirm",
            "/confirm",
            &[],
            &[
                "requires_payment_method",
                "requires_confirmation",
                "requires_action",
            ],
        ),
        ("capture", "/capture", &[], &["requires_capture"]),
        (
            "cancel",
            "/cancel",
            &[],
            &[
                "requires_payment_method",
                "requires_confirmation",
                "requires_action",
                "requires_capture",
            ],
        ),
        (
            "increment_authorization",
            "/increment_authorization",
            &[("amount", "5000")],
            &["requires_capture"],
        ),
        (
            "update",
            "",
            &[("amount", "5000")],
            &[
                "requires_payment_method",
                "requires_confirmation",
                "requires_action",
            ],
        ),
        ("settle", "settle", &[], &["processing"]),
    ];
    let mut statuses = Vec::new();
    let mut refused = 0;
    for pi in &intents {
        let pi = app
            .get(&format!("/v1/payment_intents/{}", id(pi)), &[])
            .await
            .body;
        let status = pi["status"].as_str().unwrap_or_default().to_string();
        statuses.push(status.clone());
        for (action, route, params, admitted) in &actions {
            if admitted.contains(&status.as_str()) {
                continue;
            }
            let path = if *route == "settle" {
                format!("/v1/test_helpers/payment_intents/{}/settle", id(&pi))
            } else {
                format!("/v1/payment_intents/{}{route}", id(&pi))
            };
            let reply = app
                .send(&Call::new(Method::POST, &path).params(params.iter().copied()))
                .await;
            refused += 1;
            assert_eq!(reply.status, 400, "{action} from {status}: {}", reply.text);
            assert_eq!(
                reply.error_code(),
                Some("payment_intent_unexpected_state"),
                "{action} from {status}"
            );
            assert_eq!(
                reply.error_message(),
                refusal_message(action, &status),
                "{action} from {status}"
            );
            assert_eq!(reply.error_param(), None, "{action} from {status}");
            assert_eq!(reply.error()["payment_intent"]["id"], pi["id"]);
            assert_eq!(reply.error()["payment_intent"]["status"], status.as_str());
            let after = app
                .get(&format!("/v1/payment_intents/{}", id(&pi)), &[])
                .await
                .body;
            assert_eq!(after, pi, "{action} from {status} changed the intent");
        }
    }
    assert_eq!(
        statuses,
        [
            "requires_payment_method",
            "requires_confirmation",
            "requires_action",
            "processing",
            "requires_capture",
            "succeeded",
            "canceled"
        ]
    );
    assert!(refused >= 20, "{refused} refusals");

    // Refusals of an action the status admits, for what the request asks.
    let fresh = &intents[0];
    let no_method = app
        .post(&format!("/v1/payment_intents/{}/confirm", id(fresh)), &[])
        .await;
    assert_eq!(no_method.status, 400);
    assert_eq!(
        no_method.error_code(),
        Some("payment_intent_unexpected_state")
    );
    assert!(
        no_method.error_message().starts_with(
            "You cannot confirm this PaymentIntent because it's missing a payment method."
        ),
        "{}",
        no_method.text
    );
    let capturable = &intents[4];
    let too_much = app
        .post(
            &format!("/v1/payment_intents/{}/capture", id(capturable)),
            &[("amount_to_capture", "2001")],
        )
        .await;
    assert_eq!(too_much.status, 400);
    assert_eq!(too_much.error_code(), Some("amount_too_large"));
    assert_eq!(too_much.error_param(), Some("amount_to_capture"));
    assert_eq!(
        too_much.error_message(),
        "The amount to capture (2001) must be greater than zero and at most the amount capturable (2000)."
    );
    let not_asked = app
        .post(
            &format!(
                "/v1/payment_intents/{}/increment_authorization",
                id(capturable)
            ),
            &[("amount", "3000")],
        )
        .await;
    assert_eq!(not_asked.status, 400);
    assert_eq!(
        not_asked.error_code(),
        Some("payment_intent_unexpected_state")
    );
    assert!(
        not_asked
            .error_message()
            .starts_with("This PaymentIntent is not eligible for incremental authorization"),
        "{}",
        not_asked.text
    );
    // Asked for at confirm: the authorization grows, and says so.
    let mut incremental = manual.to_vec();
    incremental.push((
        "payment_method_options[card][request_incremental_authorization]",
        "if_available",
    ));
    let grows = create(app, &incremental).await;
    let mut seen = new_events(app, &grows, &mut 0).await.len();
    let grown = act(
        app,
        &grows,
        "increment_authorization",
        &[("amount", "3000")],
    )
    .await;
    assert_eq!(
        (grown["amount"].clone(), grown["amount_capturable"].clone()),
        (3000.into(), 3000.into())
    );
    assert_eq!(
        new_events(app, &grows, &mut seen).await,
        ["payment_intent.amount_capturable_updated"]
    );
    let smaller = app
        .post(
            &format!("/v1/payment_intents/{}/increment_authorization", id(&grows)),
            &[("amount", "3000")],
        )
        .await;
    assert_eq!(smaller.status, 400);
    assert_eq!(smaller.error_code(), Some("amount_too_small"));
    assert_eq!(smaller.error_param(), Some("amount"));
    // Metadata may change in any status; the payment itself only before it is confirmed.
    let succeeded = &intents[5];
    let noted = app
        .create(
            &format!("/v1/payment_intents/{}", id(succeeded)),
            &[("metadata[order]", "6735")],
        )
        .await;
    assert_eq!(noted["metadata"]["order"], "6735");
    assert_eq!(noted["status"], "succeeded");
}
