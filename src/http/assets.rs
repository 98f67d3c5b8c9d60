//! The static files payground's pages use, compiled into the binary from `assets/`
//! and served under `/payground/assets/` by a name that carries a hash of their
//! content (`payground.3f2a9c1b4d5e.css`). A name changes exactly when its bytes
//! do, so a browser may keep a file for a year without asking again, and a new
//! build's pages link the new name instead of waiting for a cache to expire.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// Where the hashed names are served.
pub const PREFIX: &str = "/payground/assets/";

/// One embedded file.
pub struct Asset {
    /// Its name in `assets/`: `stem.ext`.
    file: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// Its hashed name and validators, made on first use.
    hashed: OnceLock<Hashed>,
}

struct Hashed {
    /// `stem.<hash>.ext`: what the URL names.
    name: String,
    /// `/payground/assets/stem.<hash>.ext`: what the pages link.
    href: String,
    etag: HeaderValue,
}

/// The stylesheet every page links from `templates/base.html`.
pub static STYLESHEET: Asset = Asset::new(
    "payground.css",
    "text/css; charset=utf-8",
    include_bytes!("../../assets/payground.css"),
);

/// The pages' icon (the mark beside the name in their header, and the tab's).
pub static ICON: Asset = Asset::new(
    "payground.svg",
    "image/svg+xml",
    include_bytes!("../../assets/payground.svg"),
);

/// Every file served; a file in `assets/` that is not here is not in the binary.
static ALL: &[&Asset] = &[&STYLESHEET, &ICON];

/// A year: the longest lifetime caches honour, and the file never changes under its name.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

impl Asset {
    const fn new(file: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Self {
        Asset {
            file,
            content_type,
            bytes,
            hashed: OnceLock::new(),
        }
    }

    fn hashed(&self) -> &Hashed {
        self.hashed.get_or_init(|| {
            let digest = hex::encode(Sha256::digest(self.bytes));
            // 12 hex digits (48 bits) tell this file's versions apart; the ETag
            // keeps the whole digest.
            let short = &digest[..12];
            let name = match self.file.rsplit_once('.') {
                Some((stem, ext)) => format!("{stem}.{short}.{ext}"),
                None => format!("{}.{short}", self.file),
            };
            let etag = HeaderValue::from_str(&format!("\"{digest}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
            Hashed {
                href: format!("{PREFIX}{name}"),
                name,
                etag,
            }
        })
    }

    /// The URL path pages link: it names this exact content.
    pub fn href(&self) -> &str {
        &self.hashed().href
    }
}

/// The route of the hashed names. Generic over the router's state: it needs none.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/payground/assets/{name}", get(serve))
}

async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ALL.iter().find(|a| a.hashed().name == name) else {
        // An old build's name, or none at all.
        return (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            "Not found\n",
        )
            .into_response();
    };
    let hashed = asset.hashed();
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|v| if_none_match_hits(v, &hashed.etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.bytes.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, hashed.etag.clone());
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Whether an `If-None-Match` value names `etag`: `*`, or a list of tags compared
/// weakly (a `W/` prefix ignored), as RFC 9110 asks of this header.
fn if_none_match_hits(value: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        routes::<()>()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    #[test]
    fn names_carry_the_content_hash() {
        let digest = hex::encode(Sha256::digest(STYLESHEET.bytes));
        assert_eq!(
            STYLESHEET.href(),
            format!("/payground/assets/payground.{}.css", &digest[..12])
        );
        assert!(ICON.href().ends_with(".svg"));
        let mut names: Vec<&str> = ALL.iter().map(|a| a.hashed().name.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[tokio::test]
    async fn serves_the_hashed_name_cacheable_for_a_year() {
        let r = get(STYLESHEET.href(), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(h[header::CACHE_CONTROL], CACHE_CONTROL);
        let etag = h[header::ETAG].to_str().expect("ascii").to_string();
        assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
        let body = to_bytes(r.into_body(), usize::MAX).await.expect("body");
        assert_eq!(&body[..], STYLESHEET.bytes);

        let r = get(ICON.href(), None).await;
        assert_eq!(r.headers()[header::CONTENT_TYPE], "image/svg+xml");
    }

    #[tokio::test]
    async fn a_matching_if_none_match_gets_304_without_a_body() {
        let etag = STYLESHEET
            .hashed()
            .etag
            .to_str()
            .expect("ascii")
            .to_string();
        for tag in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".to_string(),
        ] {
            let r = get(STYLESHEET.href(), Some(&tag)).await;
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{tag}");
            assert_eq!(r.headers()[header::ETAG], etag.as_str());
            assert_eq!(r.headers()[header::CACHE_CONTROL], CACHE_CONTROL);
            let body = to_bytes(r.into_body(), usize::MAX).await.expect("body");
            assert!(body.is_empty());
        }
        let r = get(STYLESHEET.href(), Some("\"stale\"")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_and_unhashed_names_are_404() {
        for path in [
            "/payground/assets/payground.css",
            "/payground/assets/payground.000000000000.css",
            "/payground/assets/nothing",
        ] {
            let r = get(path, None).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(r
                .headers()
                .get(header::CACHE_CONTROL)
                .is_some_and(|v| v == "no-store"));
        }
    }
}
