//! The router: every endpoint of [`endpoints::all`], request ids, version echo,
//! and Stripe's 404 for unknown URLs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;

use crate::ctx::API_VERSION;
use crate::error::{ApiError, ErrorType};
use crate::http::app::{App, RequestId};
use crate::http::endpoints;
use crate::ids;

pub fn router(app: App) -> Router {
    // Endpoints on one path are merged by axum into one method router.
    let routes = endpoints::all()
        .into_iter()
        .fold(Router::new(), |routes, e| routes.route(e.path, e.handler));
    routes
        .merge(crate::http::assets::routes())
        .merge(crate::http::cors::preflights())
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
        .layer(crate::http::cors::layer())
        .layer(middleware::from_fn(stamp))
        .with_state(app)
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    ApiError::new(
        404,
        ErrorType::InvalidRequestError,
        format!(
            "Unrecognized request URL ({method}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
            uri.path()
        ),
    )
    .into_response()
}

/// Gives every request an id and echoes the API version, on every response; and
/// closes the connection after an answer given before the body was read.
async fn stamp(req: Request, next: Next) -> Response {
    // A response sent before its request's body was read (a 401, a 404, a 413)
    // leaves the rest of the body on the connection, so hyper closes it; saying
    // `Connection: close` keeps clients from sending their next request into it.
    let declared: Option<u64> = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let read = Arc::new(AtomicU64::new(0));
    let (parts, body) = req.into_parts();
    let counter = read.clone();
    let body = Body::new(body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    }));
    let mut response = tagged(Request::from_parts(parts, body), next).await;
    if declared.is_some_and(|n| read.load(Ordering::Relaxed) < n) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn tagged(mut req: Request, next: Next) -> Response {
    let request_id = ids::new_id("req");
    let version = req
        .headers()
        .get("stripe-version")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(API_VERSION));
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut response = next.run(req).await;
    tracing::debug!(%method, %path, status = response.status().as_u16(), request_id, "request");
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", v);
    }
    headers.insert("stripe-version", version);
    response
}

/// The real router over a fresh SQLite store, for tests that drive it with
/// `oneshot` instead of a socket.
#[cfg(test)]
pub mod testing {
    use std::path::PathBuf;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{header, Method, Request, StatusCode};
    use axum::Router;
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::http::app::App;
    use crate::store::{Account, DynStore};

    pub const ADMIN_TOKEN: &str = "admin-token-of-the-test-router";

    /// Fields drop in order: the router and the store close before the directory goes.
    pub struct TestRouter {
        pub router: Router,
        pub account: Account,
        _store: DynStore,
        _dir: Removed,
    }

    /// A directory removed when dropped.
    struct Removed(PathBuf);

    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl TestRouter {
        pub async fn new() -> TestRouter {
            let dir =
                std::env::temp_dir().join(format!("payground-router-{}", crate::ids::new_id("t")));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let url = format!("sqlite:{}", dir.join("router.db").display());
            let store = crate::store::open(&url).await.expect("store");
            let account = crate::accounts::create(&store, None, None)
                .await
                .expect("account");
            let engine = Arc::new(crate::engine::Engine::new(
                store.clone(),
                "http://127.0.0.1:1".to_string(),
                Arc::default(),
            ));
            let app = App::new(engine, Some(ADMIN_TOKEN.to_string()));
            TestRouter {
                router: super::router(app),
                account,
                _store: store,
                _dir: Removed(dir),
            }
        }

        /// The status and body text of one request.
        pub async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("an answer");
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("a body")
                .to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }

        /// A form-encoded call with the account's secret key, and its JSON answer.
        pub async fn call(&self, method: Method, path: &str, form: &str) -> (StatusCode, Value) {
            let (uri, body) = if method == Method::GET {
                (format!("{path}?{form}"), String::new())
            } else {
                (path.to_string(), form.to_string())
            };
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", self.account.secret_key),
                )
                .body(Body::from(body))
                .expect("request");
            let (status, text) = self.send(request).await;
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    }
}
