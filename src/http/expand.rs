//! `expand[]`, resolved generically: any field holding the id of a known object
//! can be replaced by that object, at any depth up to Stripe's four levels, and in
//! lists through the `data.` prefix.

use futures::future::BoxFuture;
use serde_json::Value;

use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::resources::registry;

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
        expand_path(ctx, value, &segments, path).await?;
    }
    Ok(())
}

async fn expand_path(
    ctx: &mut Ctx,
    value: &mut Value,
    segments: &[&str],
    full: &str,
) -> Result<(), ApiError> {
    expand_at(ctx, value, segments, full).await
}

/// Boxed because it recurses: one level of the path per call.
fn expand_at<'a>(
    ctx: &'a mut Ctx,
    node: &'a mut Value,
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
                    expand_at(ctx, item, rest, full).await?;
                }
            }
            return Ok(());
        }
        let Some(field) = node.as_object_mut().and_then(|m| m.get_mut(segment)) else {
            return Err(cannot_expand(full));
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
            Value::Object(_) => expand_at(ctx, field, rest, full).await,
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if let Value::String(id) = item {
                        let id = id.clone();
                        if let Some(object) = ctx.find_value(&id).await? {
                            *item = object;
                        }
                    }
                    expand_at(ctx, item, rest, full).await?;
                }
                Ok(())
            }
            _ => Err(cannot_expand(full)),
        }
    })
}
