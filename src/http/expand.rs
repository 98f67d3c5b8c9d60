//! `expand[]`, by Stripe's rule: a segment of a path may be expanded only if it is
//! one of the expandable fields of the object found at that point (by its `object`
//! field, in the registry), up to Stripe's four levels, and in lists through the
//! `data.` prefix. An expandable field that holds an id is replaced by that object;
//! one that holds a hash is walked into, for the next segment.

use futures::future::BoxFuture;
use serde_json::Value;

use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::resources::registry::{self, Resource};

const MAX_DEPTH: usize = 4;

fn cannot_expand(path: &str) -> ApiError {
    ApiError::invalid_request(format!("This property cannot be expanded ({path})."))
        .with_param("expand")
}

/// Applies every path of `expand` to `value` in place.
pub async fn apply(ctx: &mut Ctx, value: &mut Value, expand: &[String]) -> Result<(), ApiError> {
    for path in expand {
        let segments: Vec<&str> = path.split('.').collect();
        let depth = segments.iter().filter(|s| **s != "data").count();
        if depth > MAX_DEPTH {
            return Err(ApiError::invalid_request(format!(
                "You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}"
            ))
            .with_param("expand"));
        }
        expand_at(ctx, value, None, &segments, path).await?;
    }
    Ok(())
}

/// Where a path stands: the object it is in, and the hashes walked through since
/// (`invoice_settings` on a customer).
#[derive(Clone)]
struct Within {
    resource: &'static Resource,
    hashes: String,
}

impl Within {
    fn field(&self, segment: &str) -> String {
        if self.hashes.is_empty() {
            segment.to_string()
        } else {
            format!("{}.{segment}", self.hashes)
        }
    }
}

/// The expandable object `node` is, if it says what it is; payground's internal
/// kinds and objects without a resource expand nothing.
fn object_of(node: &Value) -> Option<&'static Resource> {
    let object = node.get("object").and_then(Value::as_str)?;
    registry::resource(object).filter(|r| !r.internal)
}

/// Boxed because it recurses: one level of the path per call.
fn expand_at<'a>(
    ctx: &'a mut Ctx,
    node: &'a mut Value,
    within: Option<Within>,
    segments: &'a [&'a str],
    full: &'a str,
) -> BoxFuture<'a, Result<(), ApiError>> {
    Box::pin(async move {
        let Some((&segment, rest)) = segments.split_first() else {
            return Ok(());
        };
        let is_list = node
            .get("object")
            .and_then(Value::as_str)
            .is_some_and(|o| o == "list" || o == "search_result");
        if segment == "data" && is_list {
            if let Some(Value::Array(items)) = node.get_mut("data") {
                for item in items.iter_mut() {
                    expand_at(ctx, item, None, rest, full).await?;
                }
            }
            return Ok(());
        }
        // A node that names its object starts afresh from that object's fields.
        let within = match object_of(node) {
            Some(resource) => Within {
                resource,
                hashes: String::new(),
            },
            None if node.get("object").is_some() => return Err(cannot_expand(full)),
            None => within.ok_or_else(|| cannot_expand(full))?,
        };
        let field_path = within.field(segment);
        if !within.resource.expands(&field_path) {
            return Err(cannot_expand(full));
        }
        let Some(field) = node.as_object_mut().and_then(|m| m.get_mut(segment)) else {
            return Err(cannot_expand(full));
        };
        let inner = Within {
            resource: within.resource,
            hashes: field_path,
        };
        if let Value::String(id) = field {
            if registry::kind_of(id).is_none() {
                return Err(cannot_expand(full));
            }
            let id = id.clone();
            match ctx.find_value(&id).await? {
                Some(object) => *field = object,
                None => return Err(cannot_expand(full)),
            }
        }
        match field {
            Value::Null => Ok(()),
            Value::Object(_) => expand_at(ctx, field, Some(inner), rest, full).await,
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if let Value::String(id) = item {
                        let id = id.clone();
                        if let Some(object) = ctx.find_value(&id).await? {
                            *item = object;
                        }
                    }
                    expand_at(ctx, item, Some(inner.clone()), rest, full).await?;
                }
                Ok(())
            }
            _ => Err(cannot_expand(full)),
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::Value;

    use crate::http::router::testing::TestRouter;

    /// Stripe's rule, not "any field that holds an id": a charge's
    /// `payment_intent` expands, its `payment_method` (an id too, but not one
    /// of the charge's expandable fields) does not; a hash walks on to its own
    /// expandable fields.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_expandable_fields_of_the_object_at_hand_expand() {
        let server = TestRouter::new().await;
        let (status, pi) = server
            .call(
                Method::POST,
                "/v1/payment_intents",
                "amount=2000&currency=usd&payment_method=pm_card_visa&confirm=true",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{pi}");
        let charge = pi["latest_charge"].as_str().expect("a charge").to_string();
        let path = format!("/v1/charges/{charge}");

        let (status, got) = server
            .call(
                Method::GET,
                &path,
                "expand[]=payment_intent&expand[]=balance_transaction",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["payment_intent"]["object"], "payment_intent");
        assert_eq!(got["balance_transaction"]["object"], "balance_transaction");

        // Through the expanded PaymentIntent to its own expandable field.
        let (status, got) = server
            .call(Method::GET, &path, "expand[]=payment_intent.payment_method")
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(
            got["payment_intent"]["payment_method"]["object"],
            "payment_method"
        );

        for refused in [
            "payment_method",
            "amount",
            "payment_intent.amount",
            "nothing",
        ] {
            let (status, got) = server
                .call(Method::GET, &path, &format!("expand[]={refused}"))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}: {got}");
            assert_eq!(got["error"]["param"], "expand", "{refused}");
            assert_eq!(
                got["error"]["message"],
                Value::from(format!("This property cannot be expanded ({refused}).")),
            );
        }

        // A hash is walked into for the fields Stripe lets be expanded there.
        let (status, customer) = server.call(Method::POST, "/v1/customers", "name=x").await;
        assert_eq!(status, StatusCode::OK, "{customer}");
        let path = format!(
            "/v1/customers/{}",
            customer["id"].as_str().unwrap_or_default()
        );
        let (status, got) = server
            .call(
                Method::GET,
                &path,
                "expand[]=invoice_settings.default_payment_method",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert!(got["invoice_settings"]["default_payment_method"].is_null());
        let (status, _) = server
            .call(Method::GET, &path, "expand[]=invoice_settings.footer")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // Lists through `data.`.
        let (status, got) = server
            .call(Method::GET, "/v1/charges", "expand[]=data.payment_intent")
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["data"][0]["payment_intent"]["object"], "payment_intent");
        let (status, _) = server
            .call(Method::GET, "/v1/charges", "expand[]=data.payment_method")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
