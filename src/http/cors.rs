//! CORS for the routes stripe.js calls from the merchant's page with the
//! publishable key. Stripe answers them for any origin (`*`): the key and the
//! client secret are what authorise such a call, never the page's origin. Every
//! other route stays closed to cross-origin pages (a browser blocks their
//! responses), and an `OPTIONS` on one of them gets Stripe's unknown-route 404.
//!
//! The routes are the endpoints that say they admit the publishable key
//! ([`browser_routes`]). The preflight answers are routes of their own
//! ([`preflights`]); [`layer`] adds the headers to the actual responses of those
//! routes and leaves every other response as it is.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::options;
use axum::Router;
use futures::future::{Either, FutureExt, Map};
use tower::{Layer, Service};

use crate::http::endpoints;

/// A path with endpoints that admit the publishable key, and their methods.
pub struct BrowserRoute {
    /// The route's path as the router writes it (`{id}` for a parameter).
    pub path: &'static str,
    pub methods: Vec<Method>,
    /// `methods` as `Access-Control-Allow-Methods` lists them.
    allow_methods: HeaderValue,
}

/// Every path of the endpoints declared [`Auth::Publishable`](crate::http::endpoints::Auth):
/// what stripe.js calls. Made once from the endpoints.
pub fn browser_routes() -> &'static [BrowserRoute] {
    static ROUTES: OnceLock<Vec<BrowserRoute>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut routes: Vec<BrowserRoute> = Vec::new();
        for (path, method) in endpoints::browser_routes() {
            match routes.iter_mut().find(|r| r.path == path) {
                Some(route) => route.methods.push(method),
                None => routes.push(BrowserRoute {
                    path,
                    methods: vec![method],
                    allow_methods: HeaderValue::from_static(""),
                }),
            }
        }
        for route in &mut routes {
            let listed: Vec<&str> = route.methods.iter().map(Method::as_str).collect();
            route.allow_methods = HeaderValue::from_str(&listed.join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static("GET, POST"));
        }
        routes
    })
}

/// The request headers a page may send: what Stripe's SDKs and stripe.js set.
/// `Accept`, `Accept-Language` and a form `Content-Type` need no permission; a
/// JSON `Content-Type` does.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Stripe-Version, Idempotency-Key, \
Stripe-Account, Stripe-Context, X-Stripe-Client-User-Agent, Accept, Accept-Language";

/// The response headers a page may read beside the safelisted ones.
const EXPOSE_HEADERS: &str = "Request-Id, Stripe-Version, Idempotent-Replayed, Stripe-Should-Retry";

/// How long a browser may reuse a preflight's answer: Stripe's 300 seconds.
const MAX_AGE: &str = "300";

/// `OPTIONS` on each path of [`browser_routes`]: 204 with what may be sent there.
/// Merged beside the resources' routes, whose handlers share the paths.
pub fn preflights<S: Clone + Send + Sync + 'static>() -> Router<S> {
    browser_routes()
        .iter()
        .fold(Router::new(), |router, route| {
            router.route(
                route.path,
                options(move |headers: HeaderMap| preflight(route, headers)),
            )
        })
}

async fn preflight(route: &'static BrowserRoute, request: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    // A page on a public origin calling payground on a developer's machine or a
    // private network: Chrome asks first (Private Network Access), and a sandbox
    // is meant to be reached that way.
    if request
        .get("access-control-request-private-network")
        .is_some_and(|v| v == "true")
    {
        h.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        route.allow_methods.clone(),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE),
    );
    response
}

/// Whether `method` on the route the router matched (`path`) admits the
/// publishable key. A non-browser request spends one comparison of the matched
/// path's bytes per table row here, nothing else.
pub fn is_browser_route(method: &Method, path: &str) -> bool {
    // HEAD is answered by the GET handler.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    browser_routes()
        .iter()
        .any(|r| r.path == path && r.methods.contains(method))
}

fn add_response_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
}

/// The layer that adds `Access-Control-Allow-Origin` to the responses of
/// [`browser_routes`]. Put on the router (`Router::layer`), it wraps each route
/// after matching, so it reads the matched route instead of parsing the URL; on
/// other routes it passes the request and its response through untouched, with
/// no allocation and no extra future.
pub fn layer() -> CorsLayer {
    CorsLayer
}

#[derive(Clone, Copy)]
pub struct CorsLayer;

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;
    fn layer(&self, inner: S) -> Cors<S> {
        Cors { inner }
    }
}

#[derive(Clone)]
pub struct Cors<S> {
    inner: S,
}

/// What a browser route's response goes through on its way out.
type WithHeaders = fn(Result<Response, Infallible>) -> Result<Response, Infallible>;

impl<S> Service<Request> for Cors<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    /// Other routes' future is the route's own.
    type Future = Either<S::Future, Map<S::Future, WithHeaders>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let browser = req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| is_browser_route(req.method(), p.as_str()));
        let future = self.inner.call(req);
        if browser {
            Either::Right(future.map(|result| {
                result.map(|mut response| {
                    add_response_headers(response.headers_mut());
                    response
                })
            }))
        } else {
            Either::Left(future)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    /// The shape of the real router: handlers on the same paths as the table,
    /// and on paths beside it, a 404 for unknown routes and wrong methods.
    fn router() -> Router {
        async fn ok() -> &'static str {
            "{}"
        }
        async fn unknown() -> Response {
            StatusCode::NOT_FOUND.into_response()
        }
        Router::new()
            .route("/v1/payment_intents", get(ok).post(ok))
            .route("/v1/payment_intents/{id}", get(ok).post(ok))
            .route("/v1/payment_intents/{id}/confirm", post(ok))
            .route("/v1/payment_intents/{id}/capture", post(ok))
            .route("/v1/payment_methods", get(ok).post(ok))
            .merge(preflights())
            .fallback(unknown)
            .method_not_allowed_fallback(unknown)
            .layer(layer())
    }

    async fn send(method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        router()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    #[test]
    fn allow_methods_says_what_methods_says() {
        assert!(browser_routes().len() >= 3);
        for r in browser_routes() {
            let listed: Vec<&str> = r.methods.iter().map(Method::as_str).collect();
            assert_eq!(r.allow_methods, listed.join(", "), "{}", r.path);
            assert!(r.path.starts_with("/v1/"));
        }
    }

    #[tokio::test]
    async fn browser_routes_answer_any_origin() {
        for (method, path) in [
            ("GET", "/v1/payment_intents/pi_1"),
            ("HEAD", "/v1/payment_intents/pi_1"),
            ("POST", "/v1/payment_intents/pi_1/confirm"),
            ("POST", "/v1/payment_methods"),
        ] {
            let r = send(method, path, &[("origin", "https://shop.example")]).await;
            assert_eq!(r.status(), StatusCode::OK, "{method} {path}");
            assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            assert!(r.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .is_ok_and(|v| v.contains("Request-Id")));
            // Without an Origin too: the answer does not vary with it.
            let r = send(method, path, &[]).await;
            assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        }
    }

    #[tokio::test]
    async fn other_routes_and_methods_answer_no_cors() {
        for (method, path) in [
            ("POST", "/v1/payment_intents"),
            ("GET", "/v1/payment_intents"),
            ("POST", "/v1/payment_intents/pi_1"),
            ("POST", "/v1/payment_intents/pi_1/capture"),
            ("GET", "/v1/payment_methods"),
            ("GET", "/v1/nothing"),
        ] {
            let r = send(method, path, &[("origin", "https://shop.example")]).await;
            assert!(
                r.headers()
                    .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                    .is_none(),
                "{method} {path}"
            );
        }
    }

    #[tokio::test]
    async fn preflight_on_a_browser_path_is_204_with_its_methods() {
        let preflight = [
            ("origin", "https://shop.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type, stripe-version",
            ),
        ];
        let r = send("OPTIONS", "/v1/payment_intents/pi_1/confirm", &preflight).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let h = r.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "300");
        let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .expect("ascii")
            .to_ascii_lowercase();
        for name in [
            "authorization",
            "content-type",
            "stripe-version",
            "idempotency-key",
            "stripe-account",
        ] {
            assert!(allowed.split(", ").any(|a| a == name), "{name}");
        }
        assert!(h.get("access-control-allow-private-network").is_none());
        // The path's secret-only method (update) is not offered.
        let r = send("OPTIONS", "/v1/payment_intents/pi_1", &preflight).await;
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_METHODS], "GET");

        // Chrome's question for a page on a public origin reaching a private address.
        let mut private = preflight.to_vec();
        private.push(("access-control-request-private-network", "true"));
        let r = send("OPTIONS", "/v1/payment_methods", &private).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()["access-control-allow-private-network"], "true");
    }

    #[tokio::test]
    async fn preflight_elsewhere_is_the_unknown_route_404() {
        for path in [
            "/v1/payment_intents",
            "/v1/payment_intents/pi_1/capture",
            "/v1/nothing",
        ] {
            let r = send("OPTIONS", path, &[("origin", "https://shop.example")]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(r
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none());
        }
    }
}
