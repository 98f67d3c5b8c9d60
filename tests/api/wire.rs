//! Stripe's wire conventions, through the routes: bodies, keys, the error
//! envelope and the headers every answer carries, idempotency keys, expansion,
//! cursors, the body limit and unknown URLs. The SDK suites check the same
//! conventions as the SDKs see them; these are the quick checks, in Rust.

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{spawn_app, Auth, Backend, Call, Reply};
use crate::on_both_stores;

on_both_stores!(
    form_bodies_in_bracket_notation_and_json_bodies,
    keys_authenticate_and_publishable_keys_are_limited,
    errors_are_stripes_envelope_and_every_answer_is_stamped,
    idempotency_keys_replay_refuse_and_wait,
    expansion_nests_and_reaches_through_lists,
    lists_page_by_cursor,
);

async fn form_bodies_in_bracket_notation_and_json_bodies(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // Nested hashes, arrays with [] and with indexes, integers and booleans as text.
    let pi = app
        .create(
            "/v1/payment_intents",
            &[
                ("amount", "1234"),
                ("currency", "usd"),
                ("metadata[order_id]", "6735"),
                ("payment_method_types[]", "card"),
                (
                    "payment_method_options[card][request_three_d_secure]",
                    "any",
                ),
                ("shipping[name]", "Jenny Rosen"),
                ("shipping[address][line1]", "1 Main St"),
                ("confirm", "false"),
            ],
        )
        .await;
    assert_eq!(pi["amount"], 1234);
    assert_eq!(pi["metadata"], json!({"order_id": "6735"}));
    assert_eq!(pi["payment_method_types"], json!(["card"]));
    assert_eq!(
        pi["payment_method_options"]["card"]["request_three_d_secure"],
        "any"
    );
    assert_eq!(pi["shipping"]["address"]["line1"], "1 Main St");
    let indexed = app
        .create(
            "/v1/customers",
            &[
                ("preferred_locales[0]", "fr"),
                ("preferred_locales[1]", "en"),
                ("description", "regular"),
                ("metadata[a]", "1"),
                ("metadata[b]", "2"),
            ],
        )
        .await;
    assert_eq!(indexed["preferred_locales"], json!(["fr", "en"]));
    // An empty value unsets: the description, one metadata key.
    let id = indexed["id"].as_str().unwrap_or_default();
    let cleared = app
        .create(
            &format!("/v1/customers/{id}"),
            &[("description", ""), ("metadata[a]", "")],
        )
        .await;
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["metadata"], json!({"b": "2"}));
    // A card's nested fields, its month read as an integer.
    let card = app
        .create(
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", "4242424242424242"),
                ("card[exp_month]", "7"),
                ("card[exp_year]", "2034"),
                ("card[cvc]", "314"),
            ],
        )
        .await;
    assert_eq!(card["card"]["last4"], "4242");
    assert_eq!(card["card"]["exp_month"], 7);
    // An unknown key inside a hash is named with its brackets.
    let unknown = app
        .post(
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", "4242424242424242"),
                ("card[colour]", "red"),
            ],
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    assert_eq!(unknown.error_code(), Some("parameter_unknown"));
    assert_eq!(unknown.error_param(), Some("card[colour]"));

    // The same requests as JSON, with JSON's own numbers and booleans.
    let customer = app
        .post_json(
            "/v1/customers",
            &json!({"email": "jenny@example.com", "metadata": {"order_id": "6735"}, "preferred_locales": ["en"]}),
        )
        .await;
    assert_eq!(customer.status, 200, "{}", customer.text);
    assert_eq!(customer.body["email"], "jenny@example.com");
    assert_eq!(customer.body["metadata"], json!({"order_id": "6735"}));
    assert_eq!(customer.body["preferred_locales"], json!(["en"]));
    let paid = app
        .post_json(
            "/v1/payment_intents",
            &json!({"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": true, "expand": ["latest_charge"]}),
        )
        .await;
    assert_eq!(paid.status, 200, "{}", paid.text);
    assert_eq!(paid.body["status"], "succeeded");
    assert_eq!(paid.body["latest_charge"]["object"], "charge");
    let wrong = app
        .post_json(
            "/v1/payment_intents",
            &json!({"amount": "lots", "currency": "usd"}),
        )
        .await;
    assert_eq!(wrong.status, 400, "{}", wrong.text);
    assert_eq!(wrong.error_param(), Some("amount"));
    let not_an_object = app.post_json("/v1/customers", &json!(["email"])).await;
    assert_eq!(not_an_object.status, 400, "{}", not_an_object.text);
    assert_eq!(not_an_object.error()["type"], "invalid_request_error");
}

async fn keys_authenticate_and_publishable_keys_are_limited(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let list = |auth: Auth| Call::new(Method::GET, "/v1/customers").auth(auth);
    assert_eq!(app.send(&list(Auth::Secret)).await.status, 200);
    assert_eq!(
        app.send(&list(Auth::Basic)).await.status,
        200,
        "Basic with the key as the user"
    );

    let missing = app.send(&list(Auth::None)).await;
    assert_eq!(missing.status, 401, "{}", missing.text);
    assert!(
        missing
            .error_message()
            .starts_with("You did not provide an API key."),
        "{}",
        missing.text
    );
    let wrong_key = format!("sk_test_{}", "x".repeat(32));
    let wrong = app
        .send(&list(Auth::Header(format!("Bearer {wrong_key}"))))
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(
        wrong
            .error_message()
            .starts_with("Invalid API Key provided: sk_test_"),
        "{}",
        wrong.text
    );
    assert!(
        !wrong.text.contains(&wrong_key),
        "the key is masked: {}",
        wrong.text
    );
    let scheme = app.send(&list(Auth::Header("Digest abc".into()))).await;
    assert_eq!(scheme.status, 401, "{}", scheme.text);
    assert_eq!(scheme.error()["type"], "invalid_request_error");

    // A publishable key: refused where a browser has no business, admitted where stripe.js goes.
    let refused = app.send(&list(Auth::Publishable)).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused
            .error_message()
            .starts_with("This API call cannot be made with a publishable API key."),
        "{}",
        refused.text
    );
    let card = app
        .send(
            &Call::new(Method::POST, "/v1/payment_methods")
                .params([("type", "card"), ("card[token]", "tok_visa")])
                .auth(Auth::Publishable),
        )
        .await;
    assert_eq!(card.status, 200, "{}", card.text);
    let pi = app
        .create(
            "/v1/payment_intents",
            &[
                ("amount", "1000"),
                ("currency", "usd"),
                ("metadata[secret]", "1"),
            ],
        )
        .await;
    let path = format!(
        "/v1/payment_intents/{}",
        pi["id"].as_str().unwrap_or_default()
    );
    let secret = pi["client_secret"].as_str().unwrap_or_default();
    let seen = app
        .send(
            &Call::new(Method::GET, &path)
                .params([("client_secret", secret)])
                .auth(Auth::Publishable),
        )
        .await;
    assert_eq!(seen.status, 200, "{}", seen.text);
    assert_eq!(seen.body["id"], pi["id"]);
    assert!(
        seen.body.get("metadata").is_none(),
        "stripe.js's view: {}",
        seen.text
    );
    let guessed = app
        .send(
            &Call::new(Method::GET, &path)
                .params([("client_secret", "pi_x_secret_y")])
                .auth(Auth::Publishable),
        )
        .await;
    assert_eq!(guessed.status, 404, "{}", guessed.text);
    let confirmed = app
        .send(
            &Call::new(Method::POST, format!("{path}/confirm"))
                .params([
                    ("client_secret", secret),
                    ("payment_method", "pm_card_visa"),
                ])
                .auth(Auth::Publishable),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);
    assert_eq!(confirmed.body["status"], "succeeded");
    let capture = app
        .send(&Call::new(Method::POST, format!("{path}/capture")).auth(Auth::Publishable))
        .await;
    assert_eq!(capture.status, 403, "{}", capture.text);
}

fn assert_stamped(reply: &Reply, what: &str) {
    let id = reply.header("request-id").unwrap_or_default();
    assert!(
        id.starts_with("req_") && id.len() > 10,
        "{what}: Request-Id {id:?}"
    );
    assert!(
        reply.header("stripe-version").is_some(),
        "{what}: no Stripe-Version"
    );
}

async fn errors_are_stripes_envelope_and_every_answer_is_stamped(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let missing = app
        .post("/v1/payment_intents", &[("currency", "usd")])
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.body,
        json!({"error": {
            "type": "invalid_request_error",
            "code": "parameter_missing",
            "message": "Missing required param: amount.",
            "param": "amount",
            "doc_url": "https://stripe.com/docs/error-codes/parameter-missing",
        }}),
    );
    assert_eq!(missing.header("content-type"), Some("application/json"));
    assert_eq!(missing.header("stripe-should-retry"), Some("false"));

    let nothing = app.get("/v1/customers/cus_doesnotexist", &[]).await;
    assert_eq!(nothing.status, 404);
    assert_eq!(nothing.error_code(), Some("resource_missing"));
    assert_eq!(nothing.error_param(), Some("id"));
    assert_eq!(
        nothing.error_message(),
        "No such customer: 'cus_doesnotexist'"
    );
    assert_eq!(nothing.header("stripe-should-retry"), Some("false"));

    let declined = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1000"),
                ("currency", "usd"),
                (
                    "payment_method",
                    "pm_card_visa_chargeDeclinedInsufficientFunds",
                ),
                ("confirm", "true"),
            ],
        )
        .await;
    assert_eq!(declined.status, 402, "{}", declined.text);
    let error = declined.error();
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["code"], "card_declined");
    assert_eq!(error["decline_code"], "insufficient_funds");
    assert_eq!(error["message"], "Your card has insufficient funds.");
    assert!(error["charge"]
        .as_str()
        .is_some_and(|c| c.starts_with("ch_")));
    assert_eq!(error["payment_intent"]["status"], "requires_payment_method");
    assert_eq!(error["payment_method"]["object"], "payment_method");

    // Unknown URLs, and known ones with a method they do not take.
    for (method, path) in [
        (Method::GET, "/v1/nothing_here"),
        (Method::POST, "/v2/customers"),
        (Method::PUT, "/v1/customers"),
        (Method::DELETE, "/v1/payment_intents"),
    ] {
        let reply = app.send(&Call::new(method.clone(), path)).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text);
        assert_eq!(reply.error()["type"], "invalid_request_error");
        assert!(
            reply
                .error_message()
                .starts_with(&format!("Unrecognized request URL ({method}: {path}).")),
            "{}",
            reply.text
        );
        assert_stamped(&reply, path);
    }

    // The body limit: 1 MiB, refused before it is read whole.
    let big = "x".repeat(payground::http::app::MAX_BODY_BYTES);
    let too_large = app.post("/v1/customers", &[("description", &big)]).await;
    assert_eq!(
        too_large.status,
        413,
        "{}",
        &too_large.text[..too_large.text.len().min(200)]
    );
    assert_eq!(too_large.error()["type"], "invalid_request_error");
    assert_stamped(&too_large, "413");
    let small_enough = "x".repeat(1000);
    let fits = app
        .post("/v1/customers", &[("description", &small_enough)])
        .await;
    assert_eq!(fits.status, 200, "{}", fits.text);

    // Every answer: a fresh Request-Id, and the version asked for (or payground's).
    let mut ids = std::collections::HashSet::new();
    for reply in [
        &missing,
        &nothing,
        &declined,
        &fits,
        &app.get("/v1/customers", &[]).await,
        &app.send(&Call::new(Method::GET, "/v1/customers").auth(Auth::None))
            .await,
        &app.send(&Call::new(Method::GET, "/v1/customers").auth(Auth::Publishable))
            .await,
    ] {
        assert_stamped(reply, &reply.text);
        assert_eq!(reply.header("stripe-version"), Some("2024-04-10"));
        assert!(ids.insert(reply.header("request-id").unwrap_or_default().to_string()));
    }
    let pinned = app
        .send(&Call::new(Method::GET, "/v1/customers").header("stripe-version", "2023-10-16"))
        .await;
    assert_eq!(pinned.header("stripe-version"), Some("2023-10-16"));
    // The request id is the one the events of the request carry.
    let created = app
        .post("/v1/customers", &[("email", "jenny@example.com")])
        .await;
    let events = app.events().await;
    let event = events.last().expect("customer.created");
    assert_eq!(event["type"], "customer.created");
    assert_eq!(
        event["request"]["id"].as_str(),
        created.header("request-id")
    );
}

async fn idempotency_keys_replay_refuse_and_wait(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let create = Call::new(Method::POST, "/v1/customers")
        .params([("email", "jenny@example.com")])
        .key("order-6735");
    let first = app.send(&create).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("idempotent-replayed"), None);
    let census = app.db.census().await;
    let again = app.send(&create).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body, "the stored answer");
    assert_ne!(again.header("request-id"), first.header("request-id"));
    assert_eq!(app.db.census().await, census, "a replay writes nothing");
    assert_eq!(app.event_types().await, ["customer.created"]);
    assert_eq!(
        app.events().await[0]["request"]["idempotency_key"],
        "order-6735"
    );

    // The same key with other parameters, or on another route.
    let other = app.send(&create.clone().params([("name", "Jenny")])).await;
    assert_eq!(other.status, 400, "{}", other.text);
    assert_eq!(other.error()["type"], "idempotency_error");
    assert_eq!(
        other.error_message(),
        "Keys for idempotent requests can only be used with the same parameters they were first used with. \
         Try using a key other than 'order-6735' if you meant to execute a different request."
    );
    let elsewhere = app
        .send(
            &Call::new(Method::POST, "/v1/payment_intents")
                .params([("amount", "1000"), ("currency", "usd")])
                .key("order-6735"),
        )
        .await;
    assert_eq!(elsewhere.status, 400, "{}", elsewhere.text);
    assert_eq!(elsewhere.error()["type"], "idempotency_error");
    // GETs take no key.
    let listed = app
        .send(&Call::new(Method::GET, "/v1/customers").key("order-6735"))
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.header("idempotent-replayed"), None);

    // While the first request with a key runs, the next with it is told to retry.
    let hold = app.db.hold_writes().await;
    let slow = Call::new(Method::POST, "/v1/customers")
        .params([("email", "slow@example.com")])
        .key("held-key");
    let running = {
        let client = app.client.clone();
        let url = app.url("/v1/customers");
        let key = app.secret_key.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .header("idempotency-key", "held-key")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("email=slow%40example.com")
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    app.db.wait_for_blocked_commit().await;
    let busy = app.send(&slow).await;
    assert_eq!(busy.status, 409, "{}", busy.text);
    assert_eq!(busy.error_code(), Some("idempotency_key_in_use"));
    assert_eq!(busy.header("stripe-should-retry"), Some("true"));
    hold.release().await;
    let finished = running.await.expect("the held request").expect("an answer");
    assert_eq!(finished, 200);
    let replayed = app.send(&slow).await;
    assert_eq!(replayed.status, 200, "{}", replayed.text);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_default()
}

async fn expansion_nests_and_reaches_through_lists(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let customer = app
        .create("/v1/customers", &[("email", "jenny@example.com")])
        .await;
    let mut paid = Vec::new();
    for _ in 0..2 {
        paid.push(
            app.create(
                "/v1/payment_intents",
                &[
                    ("amount", "2000"),
                    ("currency", "usd"),
                    ("customer", id(&customer)),
                    ("payment_method", "pm_card_visa"),
                    ("confirm", "true"),
                ],
            )
            .await,
        );
    }
    let pi = &paid[0];
    let path = format!("/v1/payment_intents/{}", id(pi));
    let expanded = app
        .get(
            &path,
            &[
                ("expand[]", "customer"),
                ("expand[]", "latest_charge.balance_transaction"),
            ],
        )
        .await;
    assert_eq!(expanded.status, 200, "{}", expanded.text);
    assert_eq!(expanded.body["customer"]["id"], customer["id"]);
    assert_eq!(expanded.body["customer"]["object"], "customer");
    let charge = &expanded.body["latest_charge"];
    assert_eq!(charge["object"], "charge");
    assert_eq!(
        charge["balance_transaction"]["object"],
        "balance_transaction"
    );
    assert_eq!(charge["balance_transaction"]["amount"], 2000);
    // Without expand, ids.
    let plain = app.get(&path, &[]).await;
    assert_eq!(plain.body["customer"], customer["id"]);
    assert_eq!(plain.body["latest_charge"], charge["id"]);
    // A write answers expanded too.
    let updated = app
        .create(
            &path,
            &[("description", "expanded"), ("expand[]", "customer")],
        )
        .await;
    assert_eq!(updated["customer"]["email"], "jenny@example.com");
    // Lists through `data.`, nested.
    let listed = app
        .get(
            "/v1/payment_intents",
            &[
                ("customer", id(&customer)),
                ("expand[]", "data.customer"),
                ("expand[]", "data.latest_charge.balance_transaction"),
            ],
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let data = listed.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 2);
    for item in &data {
        assert_eq!(item["customer"]["object"], "customer");
        assert_eq!(
            item["latest_charge"]["balance_transaction"]["object"],
            "balance_transaction"
        );
    }
    // Four levels at most; only ids expand.
    let too_deep = app
        .get(
            &path,
            &[(
                "expand[]",
                "latest_charge.payment_intent.latest_charge.payment_intent.customer",
            )],
        )
        .await;
    assert_eq!(too_deep.status, 400, "{}", too_deep.text);
    assert_eq!(too_deep.error_param(), Some("expand"));
    let four = app
        .get(
            &path,
            &[(
                "expand[]",
                "latest_charge.payment_intent.latest_charge.balance_transaction",
            )],
        )
        .await;
    assert_eq!(four.status, 200, "{}", four.text);
    let not_an_id = app.get(&path, &[("expand[]", "amount")]).await;
    assert_eq!(not_an_id.status, 400, "{}", not_an_id.text);
    assert_eq!(not_an_id.error_param(), Some("expand"));
}

async fn lists_page_by_cursor(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = app
            .create("/v1/customers", &[("email", &format!("c{i}@example.com"))])
            .await;
        ids.push(id(&c).to_string());
    }
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    let page = |params: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let reply = app
                .send(&Call::new(Method::GET, "/v1/customers").params(params))
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert_eq!(reply.body["object"], "list");
            assert_eq!(reply.body["url"], "/v1/customers");
            let got: Vec<String> = reply.body["data"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| id(c).to_string())
                .collect();
            (got, reply.body["has_more"].as_bool().expect("has_more"))
        }
    };
    let two = ("limit", "2".to_string());
    let expect = |got: &(Vec<String>, bool), want: &[&str], more: bool| {
        assert_eq!(got.0, want, "the page");
        assert_eq!(got.1, more, "has_more of {want:?}");
    };
    let first = page(vec![two.clone()]).await;
    expect(&first, &newest_first[..2], true);
    let second = page(vec![two.clone(), ("starting_after", first.0[1].clone())]).await;
    expect(&second, &newest_first[2..4], true);
    let last = page(vec![two.clone(), ("starting_after", second.0[1].clone())]).await;
    expect(&last, &newest_first[4..], false);
    let back = page(vec![two.clone(), ("ending_before", last.0[0].clone())]).await;
    expect(&back, &newest_first[2..4], true);
    let front = page(vec![two.clone(), ("ending_before", second.0[0].clone())]).await;
    expect(&front, &newest_first[..2], false);
    let all = page(vec![]).await;
    expect(&all, &newest_first, false);
    let (filtered, _) = page(vec![("email", "c3@example.com".to_string())]).await;
    assert_eq!(filtered, [ids[3].clone()]);

    for (limit, ok) in [("0", false), ("1", true), ("100", true), ("101", false)] {
        let reply = app.get("/v1/customers", &[("limit", limit)]).await;
        assert_eq!(reply.status == 200, ok, "limit={limit}: {}", reply.text);
        if !ok {
            assert_eq!(reply.error_param(), Some("limit"));
        }
    }
    let unknown = app
        .get(
            "/v1/customers",
            &[("starting_after", "cus_000000000000000000000000")],
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert_eq!(unknown.error_param(), Some("starting_after"));
}
