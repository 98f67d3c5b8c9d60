//! Stripe's search query language (`email:'a@b.c' AND metadata['order']:'6735'`),
//! evaluated over a resource's stored objects, newest first, with `page` tokens.

use base64::Engine;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::store::{Cursor, ListQuery};

/// How a searchable field compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Exact (case-insensitive) with `:`, substring with `~`.
    Text,
    /// Exact token such as a status or a currency.
    Token,
    /// Numbers, with `:` `>` `<` `>=` `<=`.
    Number,
}

/// A field a resource allows in queries: its query name and where it is in the object.
pub struct SearchField {
    pub name: &'static str,
    /// Empty for a field at the top of the object under its own name.
    pub path: &'static [&'static str],
    pub kind: FieldKind,
}

impl SearchField {
    /// A field at the top of the object, searched by its own name.
    pub const fn top(name: &'static str, kind: FieldKind) -> SearchField {
        SearchField {
            name,
            path: &[],
            kind,
        }
    }

    fn path(&self) -> &[&'static str] {
        if self.path.is_empty() {
            std::slice::from_ref(&self.name)
        } else {
            self.path
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq,
    Contains,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Text(String),
    Number(f64),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
struct Clause {
    negated: bool,
    /// `None` for metadata, with the key in `metadata_key`.
    field: Option<usize>,
    metadata_key: Option<String>,
    op: Op,
    value: Literal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    clauses: Vec<Clause>,
    any: bool,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message).with_param("query")
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.input.len() - trimmed.len();
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn quoted(&mut self) -> Result<String, ApiError> {
        let quote = match self.rest().chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => {
                return Err(invalid(format!(
                    "Expected a quoted string at position {}.",
                    self.pos
                )))
            }
        };
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                }
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err(invalid("Unterminated string in the search query."))
    }

    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }
}

impl Query {
    pub fn parse(input: &str, fields: &[SearchField]) -> Result<Query, ApiError> {
        let mut p = Parser { input, pos: 0 };
        let mut clauses = Vec::new();
        let mut joiner: Option<bool> = None;
        loop {
            p.skip_ws();
            if p.rest().is_empty() {
                break;
            }
            if !clauses.is_empty() {
                let any = if p.eat("AND") {
                    false
                } else if p.eat("OR") {
                    true
                } else {
                    return Err(invalid(format!(
                        "Expected AND or OR at position {} of the search query.",
                        p.pos
                    )));
                };
                if joiner.is_some_and(|j| j != any) {
                    return Err(invalid("Search queries cannot mix AND and OR."));
                }
                joiner = Some(any);
                p.skip_ws();
            }
            let negated = p.eat("-");
            let name = p.word();
            let (field, metadata_key) = if name == "metadata" {
                if !p.eat("[") {
                    return Err(invalid("Use metadata['key'] to search metadata."));
                }
                let key = p.quoted()?;
                if !p.eat("]") {
                    return Err(invalid("Expected ] after the metadata key."));
                }
                (None, Some(key))
            } else {
                match fields.iter().position(|f| f.name == name) {
                    Some(i) => (Some(i), None),
                    None if name.is_empty() => {
                        return Err(invalid(format!(
                            "Expected a field name at position {}.",
                            p.pos
                        )))
                    }
                    None => {
                        let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
                        return Err(invalid(format!(
                            "Field `{name}` is an unsupported search field. Supported fields: {}, metadata.",
                            known.join(", ")
                        )));
                    }
                }
            };
            let op = if p.eat(">=") {
                Op::Gte
            } else if p.eat("<=") {
                Op::Lte
            } else if p.eat(">") {
                Op::Gt
            } else if p.eat("<") {
                Op::Lt
            } else if p.eat(":") {
                Op::Eq
            } else if p.eat("~") {
                Op::Contains
            } else {
                return Err(invalid(format!(
                    "Expected an operator (:, ~, >, <, >=, <=) at position {}.",
                    p.pos
                )));
            };
            let value = match p.rest().chars().next() {
                Some('\'' | '"') => Literal::Text(p.quoted()?),
                _ => {
                    let word = p.word();
                    if word == "null" {
                        Literal::Null
                    } else if let Ok(n) = word.parse::<f64>() {
                        Literal::Number(n)
                    } else {
                        return Err(invalid(format!(
                            "Invalid value `{word}` in the search query: quote strings."
                        )));
                    }
                }
            };
            let kind = field.map(|i| fields[i].kind).unwrap_or(FieldKind::Text);
            let numeric_op = matches!(op, Op::Gt | Op::Gte | Op::Lt | Op::Lte);
            if numeric_op && kind != FieldKind::Number {
                return Err(invalid(format!(
                    "Field `{name}` does not support range comparisons."
                )));
            }
            if op == Op::Contains {
                match (&value, kind) {
                    (Literal::Text(s), FieldKind::Text) if s.chars().count() >= 3 => {}
                    (Literal::Text(_), FieldKind::Text) => {
                        return Err(invalid("Substring matches (~) need at least 3 characters."))
                    }
                    _ => {
                        return Err(invalid(format!(
                            "Field `{name}` does not support substring matches (~)."
                        )))
                    }
                }
            }
            clauses.push(Clause {
                negated,
                field,
                metadata_key,
                op,
                value,
            });
            if clauses.len() > 10 {
                return Err(invalid("A search query may have at most 10 clauses."));
            }
        }
        if clauses.is_empty() {
            return Err(invalid("The search query is empty."));
        }
        Ok(Query {
            clauses,
            any: joiner.unwrap_or(false),
        })
    }

    pub fn matches(&self, object: &Value, fields: &[SearchField]) -> bool {
        let test = |c: &Clause| {
            let found = match (&c.field, &c.metadata_key) {
                (Some(i), _) => fields[*i].path().iter().try_fold(object, |v, k| v.get(*k)),
                (None, Some(key)) => object.get("metadata").and_then(|m| m.get(key)),
                _ => None,
            };
            let found = found.unwrap_or(&Value::Null);
            let hit = match (&c.value, &c.op) {
                (Literal::Null, _) => found.is_null(),
                (Literal::Text(want), Op::Eq) => match found {
                    Value::String(s) => s.eq_ignore_ascii_case(want),
                    Value::Number(n) => n.to_string() == *want,
                    Value::Bool(b) => b.to_string() == *want,
                    _ => false,
                },
                (Literal::Text(want), Op::Contains) => found
                    .as_str()
                    .is_some_and(|s| s.to_lowercase().contains(&want.to_lowercase())),
                (Literal::Number(want), op) => {
                    let have = found
                        .as_f64()
                        .or_else(|| found.as_str().and_then(|s| s.parse().ok()));
                    match (have, op) {
                        (Some(h), Op::Eq) => h == *want,
                        (Some(h), Op::Gt) => h > *want,
                        (Some(h), Op::Gte) => h >= *want,
                        (Some(h), Op::Lt) => h < *want,
                        (Some(h), Op::Lte) => h <= *want,
                        _ => false,
                    }
                }
                _ => false,
            };
            hit != c.negated
        };
        if self.any {
            self.clauses.iter().any(test)
        } else {
            self.clauses.iter().all(test)
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub query: String,
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<i64>,
    #[serde(default)]
    pub page: Option<String>,
}

const SCAN_BATCH: usize = 500;

/// Runs a search over one kind of object and renders Stripe's `search_result`.
pub async fn run(
    ctx: &mut Ctx,
    kind: &str,
    fields: &[SearchField],
    params: &SearchParams,
    url: &str,
) -> Result<Value, ApiError> {
    run_within(ctx, kind, None, fields, params, url).await
}

/// [`run`] over the objects indexed with `within` only: the ones a resource
/// lets be found (Checkout's inline prices are not).
pub async fn run_within(
    ctx: &mut Ctx,
    kind: &str,
    within: Option<(String, String)>,
    fields: &[SearchField],
    params: &SearchParams,
    url: &str,
) -> Result<Value, ApiError> {
    let query = Query::parse(&params.query, fields)?;
    let limit = match params.limit {
        None => 10,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "limit",
                "parameter_invalid_integer",
                "limit must be between 1 and 100.",
            ))
        }
    };
    let mut cursor = match &params.page {
        None => Cursor::Newest,
        Some(token) => {
            let seq = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid_request("Invalid page token.").with_param("page")
                })?;
            Cursor::Before(seq)
        }
    };
    let mut found: Vec<(i64, Value)> = Vec::new();
    'scan: loop {
        let rows = ctx
            .store
            .list(
                ctx.account_id(),
                &ListQuery {
                    kind: kind.to_string(),
                    filter: within.clone(),
                    cursor,
                    limit: SCAN_BATCH,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ApiError::internal("search scan failed", e))?;
        let exhausted = rows.len() < SCAN_BATCH;
        for row in rows {
            cursor = Cursor::Before(row.seq);
            let object: Value = serde_json::from_str(&row.data)
                .map_err(|e| ApiError::internal("stored object does not decode", e))?;
            if query.matches(&object, fields) {
                found.push((row.seq, object));
                if found.len() > limit {
                    break 'scan;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    let has_more = found.len() > limit;
    found.truncate(limit);
    let next_page = match (has_more, found.last()) {
        (true, Some((seq, _))) => {
            Value::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seq.to_string()))
        }
        _ => Value::Null,
    };
    let data: Vec<Value> = found.into_iter().map(|(_, v)| v).collect();
    Ok(json!({
        "object": "search_result",
        "data": data,
        "has_more": has_more,
        "next_page": next_page,
        "url": url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[SearchField] = &[
        SearchField {
            name: "email",
            path: &["email"],
            kind: FieldKind::Text,
        },
        SearchField {
            name: "name",
            path: &["name"],
            kind: FieldKind::Text,
        },
        SearchField::top("created", FieldKind::Number),
    ];

    fn q(s: &str) -> Result<Query, ApiError> {
        Query::parse(s, FIELDS)
    }

    #[test]
    fn clauses_and_joiners() {
        let obj = json!({"email": "Jane@Example.com", "name": "Jane Doe", "created": 100, "metadata": {"order": "6735"}});
        assert!(q("email:'jane@example.com'").unwrap().matches(&obj, FIELDS));
        assert!(q("name~'doe' AND created>50")
            .unwrap()
            .matches(&obj, FIELDS));
        assert!(!q("name~'doe' AND created>100")
            .unwrap()
            .matches(&obj, FIELDS));
        assert!(q("name:'x' OR metadata['order']:'6735'")
            .unwrap()
            .matches(&obj, FIELDS));
        assert!(q("-email:'other@x.com'").unwrap().matches(&obj, FIELDS));
        assert!(q("created>=100 AND created<=100")
            .unwrap()
            .matches(&obj, FIELDS));
        assert!(q("metadata[\"order\"]:\"6735\"")
            .unwrap()
            .matches(&obj, FIELDS));
    }

    #[test]
    fn malformed_queries_are_400_on_query() {
        for bad in [
            "",
            "email",
            "bogus:'x'",
            "email:'x' AND name:'y' OR created>1",
            "name~'ab'",
            "email>'x'",
            "email:'x",
        ] {
            let err = q(bad).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
            assert_eq!(err.param.as_deref(), Some("query"), "{bad}");
        }
    }
}
