//! A request that answers an error leaves no trace: no object, no event, no
//! webhook delivery, no idempotency record. A census of the database (every
//! table, read behind the app's back) is taken before and after each refused
//! request and must not move.
//!
//! The requests come from two places: every operation of the OpenAPI document,
//! read at run time, with its parameters made wrong in every way the document
//! lets us see (an unknown one, a wrong type, a required one missing, an id that
//! does not exist); and a table of refusals that happen after an operation has
//! started, once it has loaded objects and saved new versions of them, which are
//! the ones a commit of a failed operation would keep. Each is sent without and
//! with an `Idempotency-Key`, and the key must stay free for a valid request.
//!
//! And the opposite, so the census is known to see changes: a card decline is
//! kept with its charge, its events and its idempotency record.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::harness::{spawn_app, Backend, Call, Census, Receiver, Reply, TestApp};
use crate::on_both_stores;
use crate::openapi::{self, Operation};

mod fixture;
mod refusals;

use fixture::Fixture;

on_both_stores!(
    refused_requests_leave_no_trace,
    a_decline_stays_with_its_charge_events_and_key
);

// ---- what a refusal must look like -------------------------------------------------

#[derive(Debug, Clone)]
enum Status {
    Is(u16),
    /// Any 4xx: the request is refused, whichever check refuses it first.
    Refused,
    /// A read may answer with an empty list; it must not fail on the server.
    NotServerError,
}

#[derive(Debug, Clone)]
enum Param {
    Is(Option<String>),
    /// When the answer is `resource_missing`, it names this parameter.
    WhenMissing(String),
}

#[derive(Debug, Clone)]
pub struct Expect {
    status: Status,
    code: Option<String>,
    param: Param,
}

impl Expect {
    pub fn new(status: u16, code: Option<&str>, param: Option<&str>) -> Expect {
        Expect {
            status: Status::Is(status),
            code: code.map(str::to_string),
            param: Param::Is(param.map(str::to_string)),
        }
    }

    /// What is wrong with `reply`, if anything.
    fn mismatch(&self, reply: &Reply) -> Option<String> {
        let status_ok = match self.status {
            Status::Is(s) => reply.status == s,
            Status::Refused => (400..500).contains(&reply.status),
            Status::NotServerError => reply.status < 500,
        };
        if !status_ok {
            return Some(format!("expected {:?}, got {}", self.status, reply.status));
        }
        if reply.status < 400 {
            return None;
        }
        if let Some(code) = &self.code {
            if reply.error_code() != Some(code.as_str()) {
                return Some(format!(
                    "expected code {code}, got {:?}",
                    reply.error_code()
                ));
            }
        }
        let param = reply.error_param().map(str::to_string);
        match &self.param {
            Param::Is(p) if *p != param => Some(format!("expected param {p:?}, got {param:?}")),
            Param::WhenMissing(p)
                if reply.error_code() == Some("resource_missing")
                    && param.as_deref() != Some(p.as_str()) =>
            {
                Some(format!(
                    "resource_missing should name param {p:?}, got {param:?}"
                ))
            }
            _ => None,
        }
    }
}

/// Sends refused requests and keeps the census, the failures and the counts.
struct Sweep<'a> {
    app: &'a TestApp,
    baseline: Census,
    failures: Vec<String>,
    requests: usize,
    keyed: usize,
    next_key: usize,
    /// Cases of each kind the document's operations gave.
    cases: std::collections::BTreeMap<&'static str, usize>,
}

impl<'a> Sweep<'a> {
    fn case(&mut self, kind: &'static str) {
        *self.cases.entry(kind).or_default() += 1;
    }

    async fn send(&mut self, call: &Call) -> Reply {
        self.requests += 1;
        self.app.send(call).await
    }

    /// Compares the census with the last one; a change is a failure.
    async fn untouched(&mut self, what: &str, call: &Call) {
        let now = self.app.db.census().await;
        if now != self.baseline {
            self.failures.push(format!(
                "{what}: {} left a trace:\n      {}",
                call.describe(),
                self.baseline.diff(&now).join("\n      ")
            ));
            self.baseline = now;
        }
    }

    /// After a keyed card error: the census changed in the idempotency records
    /// alone, by one, and the same request with the key replays the 402.
    async fn card_error_kept(&mut self, what: &str, keyed: &Call, reply: &Reply) {
        let now = self.app.db.census().await;
        let changed: Vec<String> = self
            .baseline
            .diff(&now)
            .into_iter()
            .filter(|line| !line.starts_with("idempotency"))
            .collect();
        if !changed.is_empty() {
            self.failures.push(format!(
                "{what}: {} left a trace beside its idempotency record:\n      {}",
                keyed.describe(),
                changed.join("\n      ")
            ));
        }
        let again = self.send(keyed).await;
        if again.status != 402
            || again.header("idempotent-replayed").is_none()
            || again.text != reply.text
        {
            self.failures.push(format!(
                "{what}: {} again with its key was not the stored 402: {} {}",
                keyed.describe(),
                again.status,
                again.text
            ));
        }
        self.baseline = self.app.db.census().await;
    }

    /// Sends `call`, which must be refused as `expect` says and leave nothing; a
    /// POST again with an Idempotency-Key, after which a valid request with that
    /// key must run fresh (unless the refusal is a card error, whose answer the
    /// key keeps).
    async fn refused(&mut self, what: &str, call: Call, expect: &Expect) {
        let reply = self.send(&call).await;
        if let Some(wrong) = expect.mismatch(&reply) {
            self.failures.push(format!(
                "{what}: {}: {wrong}: {}",
                call.describe(),
                reply.text
            ));
        }
        self.untouched(what, &call).await;
        if call.method != Method::POST {
            return;
        }
        self.next_key += 1;
        let key = format!("refused-{}-{}", self.next_key, rand::random::<u32>());
        let keyed = call.clone().key(key.clone());
        self.keyed += 1;
        let reply = self.send(&keyed).await;
        if let Some(wrong) = expect.mismatch(&reply) {
            self.failures.push(format!(
                "{what}: {}: {wrong}: {}",
                keyed.describe(),
                reply.text
            ));
        }
        if reply.header("idempotent-replayed").is_some() {
            self.failures.push(format!(
                "{what}: {} was answered as a replay",
                keyed.describe()
            ));
        }
        if reply.status == 402 {
            // A card error is an answer the endpoint gave: Stripe keeps it for
            // the key (and only that), and the same request replays it.
            self.card_error_kept(what, &keyed, &reply).await;
            return;
        }
        self.untouched(what, &keyed).await;
        let fresh = Call::new(Method::POST, "/v1/customers")
            .params([("description", format!("the key {key} is free"))])
            .key(key);
        let reply = self.send(&fresh).await;
        if reply.status != 200 || reply.header("idempotent-replayed").is_some() {
            self.failures.push(format!(
                "{what}: after {}, a valid request with its key did not run fresh: {} {}",
                keyed.describe(),
                reply.status,
                reply.text
            ));
        }
        self.baseline = self.app.db.census().await;
    }
}

// ---- the document's operations -----------------------------------------------------------

/// The fixture object each path parameter names, by the resource before it and
/// the action after it; an empty id when no fixture exists for the resource.
fn path_ids(op: &Operation, f: &Fixture) -> Vec<(String, String)> {
    let segments = op.segments();
    let mut out = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            continue;
        };
        let resource = if i > 0 { segments[i - 1] } else { "" };
        let action = segments.get(i + 1).filter(|s| !s.starts_with('{')).copied();
        let post = op.method == Method::POST;
        let id = match (resource, action) {
            ("customers", _) => &f.customer,
            ("payment_methods", _) if name == "payment_method" => &f.card,
            ("payment_methods", Some("attach")) => &f.loose_card,
            ("payment_methods", _) => &f.card,
            ("payment_intents", None) if post => &f.fresh,
            ("payment_intents", Some("confirm")) => &f.unconfirmed,
            ("payment_intents", Some("capture")) => &f.capturable,
            ("payment_intents", Some("increment_authorization")) => &f.incrementable,
            ("payment_intents", Some("cancel")) => &f.fresh,
            ("payment_intents", Some("settle")) => &f.processing,
            ("payment_intents", _) => &f.succeeded,
            ("charges", Some("capture")) => &f.capturable_charge,
            ("charges", _) => &f.charge,
            ("refunds", _) => &f.refund,
            ("balance_transactions", _) => &f.balance_transaction,
            ("events", _) => &f.event,
            ("webhook_endpoints", _) => &f.endpoint,
            ("listeners", _) => &f.listener,
            ("setup_intents", _) => &f.setup_intent,
            ("confirmation_tokens", _) => &f.confirmation_token,
            ("products", _) => &f.product,
            ("prices", _) => &f.price,
            _ => "",
        };
        out.push((name.to_string(), id.to_string()));
    }
    out
}

/// An id of the right kind that names nothing.
pub fn missing_id(prefix: &str) -> String {
    format!("{prefix}_{}", "0".repeat(24))
}

fn prefix_of(id: &str) -> &str {
    match id.split_once('_') {
        Some((p, _)) if !p.is_empty() => p,
        _ => "obj",
    }
}

/// The kind of object an id-valued parameter names, by its name.
fn id_param_prefix(name: &str, op: &Operation) -> Option<&'static str> {
    Some(match name {
        "customer" => "cus",
        "payment_method" | "default_payment_method" => "pm",
        "payment_intent" => "pi",
        "charge" => "ch",
        "webhook_endpoint" => "we",
        "event" => "evt",
        "product" => "prod",
        "price" | "default_price" => "price",
        "starting_after" | "ending_before" => match op.segments().last().copied() {
            Some("customers") => "cus",
            Some("payment_methods") => "pm",
            Some("payment_intents") => "pi",
            Some("charges") => "ch",
            Some("refunds") => "re",
            Some("balance_transactions") => "txn",
            Some("events") => "evt",
            Some("webhook_endpoints") => "we",
            Some("attempts") => "wha",
            Some("products") => "prod",
            Some("prices") => "price",
            _ => "obj",
        },
        _ => return None,
    })
}

/// Values for text fields a valid request needs, by name.
fn named_value(name: &str, f: &Fixture) -> Option<String> {
    Some(match name {
        "amount" => "1000".into(),
        "currency" => "usd".into(),
        "customer" => f.customer.clone(),
        "webhook_endpoint" => f.endpoint.clone(),
        "event" => f.event.clone(),
        "url" => "https://example.com/webhook".into(),
        "forward_to" => "http://127.0.0.1:9/forward".into(),
        "enabled_events" | "events" => "*".into(),
        "lease" => "lease_of_nobody".into(),
        "query" => "created>0".into(),
        "seconds" => "60".into(),
        "customer_session_client_secret" => f.customer_session_secret.clone(),
        "setup_intent" => f.setup_intent.clone(),
        _ => return None,
    })
}

/// The request's required fields with valid values.
fn base_params(op: &Operation, f: &Fixture) -> Vec<(String, String)> {
    let value = |name: &str| named_value(name, f);
    op.fields
        .iter()
        .filter(|field| field.required)
        .flat_map(|field| openapi::valid_pairs(&field.name, &field.schema, &value))
        .collect()
}

/// `params` without those of the top-level field `name`.
fn without(params: &[(String, String)], name: &str) -> Vec<(String, String)> {
    let nested = format!("{name}[");
    params
        .iter()
        .filter(|(k, _)| k != name && !k.starts_with(&nested))
        .cloned()
        .collect()
}

/// Every invalid request the document calls for, for one operation.
async fn sweep_operation(sweep: &mut Sweep<'_>, op: &Operation, f: &Fixture) -> usize {
    let before = sweep.requests;
    let ids = path_ids(op, f);
    let path = op.path_with(&ids);
    let base = base_params(op, f);
    let call =
        |params: Vec<(String, String)>| Call::new(op.method.clone(), path.clone()).params(params);
    let name = op.id();

    let mut unknown = base.clone();
    unknown.push(("payground_unknown_param".into(), "1".into()));
    sweep.case("unknown parameter");
    sweep
        .refused(
            &format!("{name}: an unknown parameter"),
            call(unknown),
            &Expect::new(
                400,
                Some("parameter_unknown"),
                Some("payground_unknown_param"),
            ),
        )
        .await;

    for field in &op.fields {
        for leaf in openapi::leaves(field) {
            if leaf.is_typed() {
                for wrong in leaf.wrong_values() {
                    let mut params = without(&base, &field.name);
                    params.extend(openapi::required_around(field, &leaf.key, &|n: &str| {
                        named_value(n, f)
                    }));
                    params.push((leaf.key.clone(), wrong.clone()));
                    let expect = Expect {
                        status: Status::Is(400),
                        code: None,
                        param: Param::Is(Some(leaf.key.clone())),
                    };
                    sweep.case("wrong type");
                    sweep
                        .refused(
                            &format!("{name}: {}={wrong}", leaf.key),
                            call(params),
                            &expect,
                        )
                        .await;
                }
            }
            if leaf.is_text() {
                if let Some(prefix) = id_param_prefix(leaf.name(), op) {
                    let mut params = without(&base, &field.name);
                    params.push((leaf.key.clone(), missing_id(prefix)));
                    let expect = Expect {
                        status: if op.method == Method::GET {
                            Status::NotServerError
                        } else {
                            Status::Refused
                        },
                        code: None,
                        param: Param::WhenMissing(leaf.key.clone()),
                    };
                    sweep.case("id naming nothing");
                    sweep
                        .refused(
                            &format!("{name}: {} names nothing", leaf.key),
                            call(params),
                            &expect,
                        )
                        .await;
                }
            }
        }
        if field.required {
            sweep.case("required missing");
            sweep
                .refused(
                    &format!("{name}: without {}", field.name),
                    call(without(&base, &field.name)),
                    &Expect::new(400, Some("parameter_missing"), Some(&field.name)),
                )
                .await;
        }
        for object in openapi::requiring_objects(field) {
            let value = |n: &str| named_value(n, f);
            let required: Vec<&str> = object.schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let props = object.schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for missing in &required {
                let others: Vec<(String, String)> = if required.len() > 1 {
                    required
                        .iter()
                        .filter(|r| *r != missing)
                        .filter_map(|r| props.get(*r).map(|s| (*r, s)))
                        .flat_map(|(r, s)| {
                            openapi::valid_pairs(&openapi::key(&object.key, r), s, &value)
                        })
                        .collect()
                } else {
                    props
                        .iter()
                        .filter(|(n, _)| n.as_str() != *missing)
                        .map(|(n, s)| {
                            openapi::valid_pairs(&openapi::key(&object.key, n), s, &value)
                        })
                        .find(|pairs| pairs.len() == 1)
                        .unwrap_or_default()
                };
                if others.is_empty() {
                    continue;
                }
                let mut params = without(&base, &field.name);
                params.extend(others);
                let param = openapi::key(&object.key, missing);
                sweep.case("required missing");
                sweep
                    .refused(
                        &format!("{name}: without {param}"),
                        call(params),
                        &Expect::new(400, Some("parameter_missing"), Some(&param)),
                    )
                    .await;
            }
        }
    }

    for (i, (param, id)) in ids.iter().enumerate() {
        let mut wrong = ids.clone();
        wrong[i].1 = missing_id(prefix_of(id));
        sweep.case("id naming nothing");
        sweep
            .refused(
                &format!("{name}: {{{param}}} names nothing"),
                Call::new(op.method.clone(), op.path_with(&wrong)).params(base.clone()),
                &Expect::new(404, Some("resource_missing"), Some(param)),
            )
            .await;
    }
    sweep.requests - before
}

// ---- the tests ---------------------------------------------------------------------------

async fn refused_requests_leave_no_trace(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let f = fixture::fixture(&app, &receiver).await;
    let baseline = app.db.settled_census(Duration::from_secs(20)).await;
    for table in [
        "objects",
        "idempotency",
        "webhook_deliveries",
        "webhook_attempts",
    ] {
        assert!(
            baseline.tables().contains(&table),
            "the census misses {table}: {:?}",
            baseline.tables()
        );
    }
    assert!(baseline.rows("webhook_attempts") > 0, "{baseline:?}");
    let tables = baseline.tables().len();
    let doc = app.get("/payground/openapi.json", &[]).await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    let operations = openapi::operations(&doc.body);
    let mut sweep = Sweep {
        app: &app,
        baseline,
        failures: Vec::new(),
        requests: 0,
        keyed: 0,
        next_key: 0,
        cases: Default::default(),
    };
    let mut covered = 0;
    for op in operations.iter().filter(|op| !op.public) {
        if sweep_operation(&mut sweep, op, &f).await > 0 {
            covered += 1;
        }
    }
    // The document gives every kind of case, or its schemas were not understood.
    for kind in [
        "unknown parameter",
        "wrong type",
        "required missing",
        "id naming nothing",
    ] {
        let n = sweep.cases.get(kind).copied().unwrap_or(0);
        assert!(
            n >= 10,
            "only {n} cases of {kind} in the document: {:?}",
            sweep.cases
        );
    }
    let table = refusals::refusals(&f);
    let after_start = table.len();
    for r in table {
        sweep.refused(r.what, r.call, &r.expect).await;
    }
    let kinds: Vec<String> = sweep
        .cases
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    println!(
        "no trace ({backend:?}): {covered} operations of {} in the document ({}) and {after_start} \
         refusals after the operation started: {} refused requests sent, {} of them with an \
         Idempotency-Key each followed by a valid request with it; census of {tables} tables",
        operations.len(),
        kinds.join(", "),
        sweep.requests - sweep.keyed,
        sweep.keyed,
    );
    assert!(
        sweep.failures.is_empty(),
        "{} of the refused requests went wrong:\n  {}",
        sweep.failures.len(),
        sweep.failures.join("\n  ")
    );
}

async fn a_decline_stays_with_its_charge_events_and_key(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let before = app.db.census().await;
    let decline = Call::new(Method::POST, "/v1/payment_intents")
        .params([
            ("amount", "1000"),
            ("currency", "usd"),
            ("payment_method", "pm_card_chargeDeclined"),
            ("confirm", "true"),
        ])
        .key("a-declined-payment");
    let first = app.send(&decline).await;
    assert_eq!(first.status, 402, "{}", first.text);
    assert_eq!(first.error()["type"], "card_error");
    assert_eq!(first.error_code(), Some("card_declined"));
    let pi = first.error()["payment_intent"]["id"]
        .as_str()
        .expect("the PaymentIntent in the error")
        .to_string();
    let charge = first.error()["charge"].as_str().expect("the failed charge");
    let after = app.db.census().await;
    let grew = |key: &str| after.rows(key) - before.rows(key);
    assert_eq!(
        grew("objects[payment_intent]"),
        1,
        "{:?}",
        before.diff(&after)
    );
    assert_eq!(grew("objects[charge]"), 1, "{:?}", before.diff(&after));
    assert_eq!(
        grew("objects[payment_method]"),
        1,
        "{:?}",
        before.diff(&after)
    );
    assert_eq!(grew("idempotency"), 1, "{:?}", before.diff(&after));
    assert_eq!(
        app.event_types().await,
        [
            "payment_intent.created",
            "charge.failed",
            "payment_intent.payment_failed"
        ],
    );
    assert_eq!(grew("objects[event]"), 3, "{:?}", before.diff(&after));
    let kept = app.get(&format!("/v1/payment_intents/{pi}"), &[]).await;
    assert_eq!(
        kept.body["status"], "requires_payment_method",
        "{}",
        kept.text
    );
    assert_eq!(kept.body["latest_charge"], charge);
    assert_eq!(kept.body["last_payment_error"]["code"], "card_declined");

    let replay = app.send(&decline).await;
    assert_eq!(replay.status, 402, "{}", replay.text);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body, "the stored answer, as it was");
    assert_eq!(app.db.census().await, after, "a replay writes nothing");
}
