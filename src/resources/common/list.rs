//! Stripe's list conventions: `limit`, `starting_after`, `ending_before`,
//! `created[...]`, newest first, `has_more`, `url`; and search results with `page`.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ctx::{push_json, Answer, Ctx};
use crate::error::ApiError;
use crate::resources::common::params;
use crate::store::{CreatedRange, IndexCondition, ListQuery};

/// `created=123` or `created[gte]=...&created[lt]=...`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreatedParam(pub CreatedRange);

/// A timestamp, or a range of `gt`, `gte`, `lt`, `lte`.
impl JsonSchema for CreatedParam {
    fn schema_name() -> Cow<'static, str> {
        "CreatedParam".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let bound = json!({"type": "integer"});
        json_schema!({"anyOf": [
            {"type": "integer"},
            {
                "type": "object",
                "additionalProperties": false,
                "properties": {"gt": bound, "gte": bound, "lt": bound, "lte": bound},
            },
        ]})
    }
}

impl<'de> Deserialize<'de> for CreatedParam {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CreatedParam;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a timestamp or a hash of gt, gte, lt, lte")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CreatedParam, E> {
                Ok(CreatedParam(CreatedRange {
                    gte: Some(v),
                    lte: Some(v),
                    ..Default::default()
                }))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CreatedParam, E> {
                self.visit_i64(v as i64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CreatedParam, E> {
                let n: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| E::custom(format!("Invalid integer: {v}")))?;
                self.visit_i64(n)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CreatedParam, A::Error> {
                #[derive(Deserialize, JsonSchema)]
                #[serde(rename_all = "lowercase")]
                enum Bound {
                    Gt,
                    Gte,
                    Lt,
                    Lte,
                }
                let mut range = CreatedRange::default();
                while let Some(bound) = map.next_key::<Bound>()? {
                    let v: i64 = map.next_value()?;
                    match bound {
                        Bound::Gt => range.gt = Some(v),
                        Bound::Gte => range.gte = Some(v),
                        Bound::Lt => range.lt = Some(v),
                        Bound::Lte => range.lte = Some(v),
                    }
                }
                Ok(CreatedParam(range))
            }
        }
        d.deserialize_any(V)
    }
}

/// What [`ListParams::take`] reads; public for the documents that describe lists.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommonListParams {
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    limit: Option<i64>,
    #[serde(default)]
    starting_after: Option<String>,
    #[serde(default)]
    ending_before: Option<String>,
    #[serde(default)]
    created: Option<CreatedParam>,
}

/// The list parameters every list endpoint takes.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub limit: usize,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
    pub created: CreatedRange,
}

fn limit_from(raw: Option<i64>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(10),
        Some(n) if n < 1 => Err(ApiError::invalid_param(
            "limit",
            "parameter_invalid_integer",
            "This value must be greater than or equal to 1.",
        )),
        Some(n) if n > 100 => Err(ApiError::invalid_param(
            "limit",
            "parameter_invalid_integer",
            "This value must be less than or equal to 100 (it currently is greater than 100).",
        )),
        Some(n) => Ok(n as usize),
    }
}

impl ListParams {
    /// Takes the shared list parameters out of a request's parameter tree,
    /// leaving the resource's own filters for its typed params.
    pub fn take(tree: &mut Value) -> Result<Self, ApiError> {
        let mut common = serde_json::Map::new();
        if let Some(map) = tree.as_object_mut() {
            for key in ["limit", "starting_after", "ending_before", "created"] {
                if let Some(v) = map.shift_remove(key) {
                    common.insert(key.to_string(), v);
                }
            }
        }
        let raw: CommonListParams = params::from_value(&Value::Object(common))?;
        Ok(ListParams {
            limit: limit_from(raw.limit)?,
            starting_after: raw.starting_after,
            ending_before: raw.ending_before,
            created: raw.created.map(|c| c.0).unwrap_or_default(),
        })
    }
}

/// Reads one page and renders Stripe's list object. The stored texts are spliced
/// into it as they are: parsing eleven objects into trees to write them out again
/// was most of a list page's cost.
pub async fn page(
    ctx: &mut Ctx,
    kind: &str,
    filter: Option<(String, String)>,
    params: &ListParams,
    url: &str,
) -> Result<Answer, ApiError> {
    page_of(ctx, query(kind, filter, params), &[], params, url).await
}

/// [`page`] of the objects that satisfy every condition: a list whose filters
/// combine (`active`, `product` and `type` of prices at once).
pub async fn page_where(
    ctx: &mut Ctx,
    kind: &str,
    conditions: &[IndexCondition],
    params: &ListParams,
    url: &str,
) -> Result<Answer, ApiError> {
    page_of(ctx, query(kind, None, params), conditions, params, url).await
}

/// One more row than the page, to learn `has_more`.
fn query(kind: &str, filter: Option<(String, String)>, params: &ListParams) -> ListQuery {
    ListQuery {
        kind: kind.to_string(),
        filter,
        created: params.created,
        cursor: Default::default(),
        limit: params.limit + 1,
        delivery_success: None,
    }
}

async fn page_of(
    ctx: &mut Ctx,
    query: ListQuery,
    conditions: &[IndexCondition],
    params: &ListParams,
    url: &str,
) -> Result<Answer, ApiError> {
    let backwards = params.starting_after.is_none() && params.ending_before.is_some();
    let mut rows = ctx
        .list_page_where(
            query,
            conditions,
            params.starting_after.as_deref(),
            params.ending_before.as_deref(),
        )
        .await?;
    let has_more = rows.len() > params.limit;
    rows.truncate(params.limit);
    if backwards {
        rows.reverse();
    }
    let texts: usize = rows.iter().map(|row| row.data.len() + 1).sum();
    let mut out = String::with_capacity(texts + url.len() + 64);
    out.push_str("{\"object\":\"list\",\"data\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&row.data);
    }
    out.push_str("],\"has_more\":");
    out.push_str(if has_more { "true" } else { "false" });
    out.push_str(",\"url\":");
    push_json(&mut out, url);
    out.push('}');
    Ok(Answer::Text(out))
}
