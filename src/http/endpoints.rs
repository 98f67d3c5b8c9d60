//! Every (method, path) payground answers, declared once beside its handler: each
//! handler file's `endpoints()` says who may call it, what it takes and answers,
//! and which handler runs. The router is built from [`all`], the OpenAPI document
//! (`openapi.rs`) is derived from it, and the CORS layer reads [`browser_routes`].

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::ctx::StripeObject;
use crate::http::app::App;
use crate::http::{
    admin, authenticate, balance_transactions, charges, confirmation_tokens, customer_sessions,
    customers, events, payment_intents, payment_methods, prices, products, refunds, setup_intents,
    webhook_endpoints,
};

/// Every endpoint of every handler file. A new file adds its line here.
pub fn all() -> Vec<Endpoint> {
    [
        admin::endpoints(),
        customers::endpoints(),
        payment_methods::endpoints(),
        payment_intents::endpoints(),
        charges::endpoints(),
        balance_transactions::endpoints(),
        refunds::endpoints(),
        events::endpoints(),
        webhook_endpoints::endpoints(),
        setup_intents::endpoints(),
        confirmation_tokens::endpoints(),
        customer_sessions::endpoints(),
        products::endpoints(),
        prices::endpoints(),
        authenticate::endpoints(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The (path pattern, method) of every route stripe.js calls with the
/// publishable key and a client secret, for CORS.
pub fn browser_routes() -> Vec<(&'static str, Method)> {
    all()
        .into_iter()
        .filter(|e| e.auth == Auth::Publishable)
        .map(|e| (e.path, e.method))
        .collect()
}

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The account's secret key (`SecretRequest`).
    Secret,
    /// The secret key, or the publishable key with a client secret, as stripe.js
    /// calls it (`BrowserRequest`).
    Publishable,
    /// payground's admin token (`--admin-token`).
    Admin,
    /// Anyone: the health check, the document, hosted pages.
    Public,
}

/// A type's JSON schema, as the generator it is given describes it.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// What an endpoint takes besides its path parameters and `expand[]`.
pub enum Input {
    /// Nothing (a POST still takes a form body with `expand`).
    Nothing,
    /// A form body decoded into these params types (one, or a few that share
    /// the body, each taking its own fields).
    Body(Vec<SchemaFn>),
    /// Query parameters decoded into this type.
    Query(SchemaFn),
    /// A list: Stripe's paging parameters (`created` when the list has it) and
    /// the list's filters.
    List { filters: SchemaFn, created: bool },
    /// A search: `query`, `limit`, `page`.
    Search,
}

/// A resource object as the document describes it.
#[derive(Clone, Copy)]
pub struct Described {
    pub object: &'static str,
    pub schema: SchemaFn,
}

impl Described {
    fn of<T: StripeObject>() -> Described {
        Described {
            object: T::OBJECT,
            schema: SchemaGenerator::subschema_for::<T>,
        }
    }
}

/// What an endpoint answers with on success.
pub enum Output {
    /// One object of a resource.
    Object(Described),
    /// A list page of a resource's objects.
    List(Described),
    /// A search result of a resource's objects.
    Search(Described),
    /// `{id, object, deleted: true}`.
    Deleted(&'static str),
    /// One of payground's own objects with this `object` (`payground.clock`), or,
    /// when empty, a JSON object of no declared shape.
    Own(&'static str),
    /// A list of payground's own objects with this `object`.
    OwnList(&'static str),
    /// An HTML page.
    Page,
}

pub struct Endpoint {
    pub method: Method,
    /// axum's pattern, `/v1/customers/{id}`.
    pub path: &'static str,
    /// Stripe's operationId (`PostPaymentIntents`), and the same style for
    /// payground's own.
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    pub input: Input,
    /// Fields of the input the handler refuses on this route although its type
    /// has them (an event's attempts are not filtered by `event`).
    pub refused: &'static [&'static str],
    pub output: Output,
    /// Part of the documented API: not the admin routes, not the hosted pages.
    pub documented: bool,
    pub handler: MethodRouter<App>,
}

/// `Endpoint::get(path, operation_id, summary, handler)` and its siblings.
macro_rules! on_method {
    ($name:ident, $method:ident) => {
        pub fn $name<H: Handler<T, App>, T: 'static>(
            path: &'static str,
            operation_id: &'static str,
            summary: &'static str,
            handler: H,
        ) -> Endpoint {
            Endpoint::new(
                Method::$method,
                MethodFilter::$method,
                path,
                operation_id,
                summary,
                handler,
            )
        }
    };
}

impl Endpoint {
    fn new<H, T>(
        method: Method,
        filter: MethodFilter,
        path: &'static str,
        operation_id: &'static str,
        summary: &'static str,
        handler: H,
    ) -> Endpoint
    where
        H: Handler<T, App>,
        T: 'static,
    {
        Endpoint {
            method,
            path,
            operation_id,
            summary,
            auth: Auth::Secret,
            input: Input::Nothing,
            refused: &[],
            output: Output::Own(""),
            documented: true,
            handler: on(filter, handler),
        }
    }

    on_method!(get, GET);
    on_method!(post, POST);
    on_method!(delete, DELETE);

    pub fn publishable(self) -> Endpoint {
        Endpoint {
            auth: Auth::Publishable,
            ..self
        }
    }

    pub fn admin(self) -> Endpoint {
        Endpoint {
            auth: Auth::Admin,
            documented: false,
            ..self
        }
    }

    pub fn public(self) -> Endpoint {
        Endpoint {
            auth: Auth::Public,
            ..self
        }
    }

    /// A hosted page: public, HTML, not part of the API.
    pub fn page(self) -> Endpoint {
        Endpoint {
            auth: Auth::Public,
            output: Output::Page,
            documented: false,
            ..self
        }
    }

    /// Takes a form body of `P` (besides the params types named before).
    pub fn body<P: JsonSchema>(self) -> Endpoint {
        let mut schemas = match self.input {
            Input::Body(schemas) => schemas,
            _ => Vec::new(),
        };
        schemas.push(SchemaGenerator::subschema_for::<P>);
        Endpoint {
            input: Input::Body(schemas),
            ..self
        }
    }

    /// Takes query parameters of `P`.
    pub fn query<P: JsonSchema>(self) -> Endpoint {
        Endpoint {
            input: Input::Query(SchemaGenerator::subschema_for::<P>),
            ..self
        }
    }

    /// Refuses these fields of its input type on this route.
    pub fn refusing(self, refused: &'static [&'static str]) -> Endpoint {
        Endpoint { refused, ..self }
    }

    /// A list of `T` filtered by `F`, with Stripe's paging and `created`.
    pub fn list<T: StripeObject, F: JsonSchema>(self) -> Endpoint {
        Endpoint {
            input: Input::List {
                filters: SchemaGenerator::subschema_for::<F>,
                created: true,
            },
            output: Output::List(Described::of::<T>()),
            ..self
        }
    }

    /// A list that takes no `created` filter (PaymentMethod lists, in Stripe's spec).
    pub fn without_created(self) -> Endpoint {
        let input = match self.input {
            Input::List { filters, .. } => Input::List {
                filters,
                created: false,
            },
            other => other,
        };
        Endpoint { input, ..self }
    }

    /// A search of `T`.
    pub fn search<T: StripeObject>(self) -> Endpoint {
        Endpoint {
            input: Input::Search,
            output: Output::Search(Described::of::<T>()),
            ..self
        }
    }

    /// Answers with a `T`.
    pub fn returns<T: StripeObject>(self) -> Endpoint {
        Endpoint {
            output: Output::Object(Described::of::<T>()),
            ..self
        }
    }

    /// Answers with a deleted `T`.
    pub fn deletes<T: StripeObject>(self) -> Endpoint {
        Endpoint {
            output: Output::Deleted(T::OBJECT),
            ..self
        }
    }

    /// Answers with one of payground's own objects.
    pub fn returns_own(self, object: &'static str) -> Endpoint {
        Endpoint {
            output: Output::Own(object),
            ..self
        }
    }

    /// Answers with a list of payground's own objects.
    pub fn lists_own(self, object: &'static str) -> Endpoint {
        Endpoint {
            output: Output::OwnList(object),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use serde_json::Value;

    use crate::http::router::testing::{TestRouter, ADMIN_TOKEN};
    use crate::resources::registry;

    #[test]
    fn operation_ids_and_routes_are_unique() {
        let mut ids = BTreeSet::new();
        let mut routes = BTreeSet::new();
        for e in all() {
            assert!(ids.insert(e.operation_id), "{} twice", e.operation_id);
            assert!(
                routes.insert((e.method.to_string(), e.path)),
                "{} {} twice",
                e.method,
                e.path
            );
            let lowered = e.method.as_str().to_ascii_lowercase();
            let verb = e.operation_id.to_ascii_lowercase();
            assert!(
                verb.starts_with(&lowered),
                "{} for {}",
                e.operation_id,
                e.method
            );
        }
    }

    #[test]
    fn every_resource_is_answered_by_an_endpoint() {
        let answered: BTreeSet<&str> = all()
            .iter()
            .filter_map(|e| match &e.output {
                Output::Object(d) | Output::List(d) | Output::Search(d) => Some(d.object),
                Output::Deleted(object) => Some(*object),
                _ => None,
            })
            .collect();
        for r in registry::ALL.iter().filter(|r| !r.internal) {
            assert!(
                answered.contains(r.object),
                "no endpoint answers {}",
                r.object
            );
        }
    }

    #[test]
    fn the_browser_routes_are_the_ones_stripe_js_calls() {
        let mut routes: Vec<(&str, String)> = browser_routes()
            .into_iter()
            .map(|(path, method)| (path, method.to_string()))
            .collect();
        routes.sort();
        assert_eq!(
            routes,
            vec![
                ("/v1/confirmation_tokens", "POST".to_string()),
                (
                    "/v1/elements/payment_methods/{id}/detach",
                    "POST".to_string()
                ),
                ("/v1/elements/sessions", "GET".to_string()),
                ("/v1/payment_intents/{id}", "GET".to_string()),
                ("/v1/payment_intents/{id}/confirm", "POST".to_string()),
                ("/v1/payment_methods", "POST".to_string()),
                ("/v1/setup_intents/{id}", "GET".to_string()),
                ("/v1/setup_intents/{id}/confirm", "POST".to_string()),
            ]
        );
    }

    /// A request to the endpoint with placeholder path parameters and no params.
    fn request(e: &Endpoint, key: Option<&str>) -> Request<Body> {
        let path: Vec<String> = e
            .path
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => format!("{name}_missing"),
                    None => s.to_string(),
                },
            )
            .collect();
        let mut builder = Request::builder()
            .method(e.method.clone())
            .uri(path.join("/"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(key) = key {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        builder.body(Body::empty()).expect("request")
    }

    fn message(body: &str) -> String {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Each endpoint reaches its handler through the real router, and takes the
    /// keys its `auth` says: a route the router missed answers Stripe's
    /// unknown-URL 404; a secret-key route refuses the publishable key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_endpoint_is_routed_and_takes_the_keys_it_declares() {
        let server = TestRouter::new().await;
        let account = &server.account;
        let endpoints = all();
        assert!(endpoints.len() > 40, "{} endpoints", endpoints.len());
        for e in &endpoints {
            let at = format!("{} {}", e.method, e.path);
            let key = match e.auth {
                Auth::Secret | Auth::Publishable => Some(account.secret_key.as_str()),
                Auth::Admin => Some(ADMIN_TOKEN),
                Auth::Public => None,
            };
            let (status, body) = server.send(request(e, key)).await;
            assert!(
                !message(&body).starts_with("Unrecognized request URL"),
                "{at} is not routed: {status} {body}"
            );
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{at} refused its {:?} caller: {status} {body}",
                e.auth
            );
            if matches!(e.auth, Auth::Secret | Auth::Publishable) {
                let (status, body) = server
                    .send(request(e, Some(&account.publishable_key)))
                    .await;
                let refused = status == StatusCode::FORBIDDEN
                    && message(&body).contains("cannot be made with a publishable API key");
                assert_eq!(
                    refused,
                    e.auth == Auth::Secret,
                    "{at} with the publishable key: {status} {body}"
                );
            }
        }
        // A path nobody declared.
        let mut wrong = request(&endpoints[0], None);
        *wrong.uri_mut() = "/v1/nothing_here".parse().expect("uri");
        let (status, body) = server.send(wrong).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            message(&body).starts_with("Unrecognized request URL"),
            "{body}"
        );
    }
}
