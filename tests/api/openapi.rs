//! The operations of `GET /payground/openapi.json`, read at run time, and the
//! invalid requests each one's parameters call for: an unknown parameter, each
//! typed parameter with a value of the wrong type, each required one missing, and
//! ids that do not exist. Only the document's paths, methods, parameter names and
//! schemas are read, so a new route is covered without editing the tests.

use reqwest::Method;
use serde_json::Value;

/// One operation of the document.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    /// The path template, `/v1/customers/{id}`.
    pub path: String,
    /// Query parameters (GET, DELETE) or the form body's top-level fields (POST).
    pub fields: Vec<Field>,
    /// Needs no key: not an API route (the health check, the document itself).
    pub public: bool,
}

#[derive(Debug, Clone)]
pub struct Field {
    /// As the wire spells it, without a trailing `[]`.
    pub name: String,
    pub schema: Value,
    pub required: bool,
}

impl Operation {
    pub fn id(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The path with its parameters filled in.
    pub fn path_with(&self, ids: &[(String, String)]) -> String {
        let mut path = self.path.clone();
        for (name, id) in ids {
            path = path.replace(&format!("{{{name}}}"), id);
        }
        path
    }

    /// The resource a path parameter names: the segment before it
    /// (`/v1/customers/{id}` → `customers`), and the action after the last one.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }
}

/// Every operation of the document, in its order.
pub fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    let Some(paths) = doc["paths"].as_object() else {
        panic!("the document has no paths: {doc}");
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            let method = match method.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "delete" => Method::DELETE,
                "put" => Method::PUT,
                "patch" => Method::PATCH,
                _ => continue,
            };
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            let mut fields = Vec::new();
            // Path parameters are read from the path itself; headers are not parameters.
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "query" {
                    let name = p["name"].as_str().unwrap_or_default();
                    fields.push(Field {
                        name: name.trim_end_matches("[]").to_string(),
                        schema: inline(doc, &p["schema"], 0),
                        required: p["required"].as_bool().unwrap_or(false),
                    });
                }
            }
            let body = op["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map(|c| inline(doc, &c["schema"], 0));
            if let Some(schema) = body {
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                for (name, s) in schema["properties"].as_object().into_iter().flatten() {
                    fields.push(Field {
                        name: name.clone(),
                        schema: s.clone(),
                        required: required.contains(&name.as_str()),
                    });
                }
            }
            out.push(Operation {
                method,
                path: path.clone(),
                fields,
                public,
            });
        }
    }
    out
}

/// `schema` with every local `$ref` (`#/components/schemas/...`) replaced by
/// what it names, so the walks below see whole schemas however the document
/// shares them.
fn inline(doc: &Value, schema: &Value, depth: usize) -> Value {
    assert!(depth < 32, "a $ref cycle in the document: {schema}");
    match schema {
        Value::Object(map) => {
            if let Some(target) = map.get("$ref").and_then(Value::as_str) {
                let pointer = target.strip_prefix('#').unwrap_or(target);
                let named = doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("{target} names nothing in the document"));
                return inline(doc, named, depth + 1);
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), inline(doc, v, depth + 1)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| inline(doc, v, depth + 1)).collect())
        }
        other => other.clone(),
    }
}

/// `a[b]` under `prefix`, or `b` at the top.
pub fn key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}[{name}]")
    }
}

/// The alternatives of an `anyOf` (or `oneOf`) that are not the `""` that
/// clears a field; a schema without alternatives is its own.
fn alternatives(schema: &Value) -> Vec<&Value> {
    match schema["anyOf"].as_array().or(schema["oneOf"].as_array()) {
        Some(alts) => alts.iter().filter(|a| !clears(a)).collect(),
        None => vec![schema],
    }
}

/// `{"type": "string", "enum": [""]}`: the empty string that unsets a field.
fn clears(schema: &Value) -> bool {
    schema["enum"]
        .as_array()
        .is_some_and(|e| e.len() == 1 && e[0] == "")
}

fn kind(schema: &Value) -> &str {
    schema["type"].as_str().unwrap_or_default()
}

fn has_enum(schema: &Value) -> bool {
    schema["enum"].as_array().is_some_and(|e| !e.is_empty())
}

/// A scalar parameter (or one element of an array of scalars) somewhere in a
/// field's schema, with the bracketed key that names it.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub key: String,
    pub schema: Value,
}

impl Leaf {
    /// The last name in the key: `card[exp_month]` → `exp_month`.
    pub fn name(&self) -> &str {
        let last = self.key.rsplit('[').next().unwrap_or(&self.key);
        last.trim_end_matches(']')
    }

    /// Whether every alternative is a typed scalar (integer, number, boolean or
    /// enum), so that some text is of the wrong type for it.
    pub fn is_typed(&self) -> bool {
        let alts = alternatives(&self.schema);
        !alts.is_empty()
            && alts.iter().all(|a| match kind(a) {
                "integer" | "number" | "boolean" => true,
                "string" => has_enum(a),
                // A range such as `created[gt]` beside an integer: its own leaves
                // are typed on their own.
                "object" => a["properties"].is_object(),
                _ => false,
            })
            && alts.iter().any(|a| kind(a) != "object")
    }

    /// Values of the wrong type: text for a number, `maybe` for a boolean, a value
    /// outside an enum, and numbers just outside a declared range.
    pub fn wrong_values(&self) -> Vec<String> {
        let alts = alternatives(&self.schema);
        let Some(first) = alts.iter().find(|a| kind(a) != "object") else {
            return Vec::new();
        };
        let mut out = vec![match kind(first) {
            "integer" | "number" => "ten".to_string(),
            "boolean" => "maybe".to_string(),
            _ => "payground_not_a_value".to_string(),
        }];
        if alts.len() == 1 && matches!(kind(first), "integer" | "number") {
            if let Some(min) = first["minimum"].as_i64() {
                out.push((min - 1).to_string());
            }
            if let Some(max) = first["maximum"].as_i64() {
                out.push((max + 1).to_string());
            }
        }
        out
    }

    pub fn is_text(&self) -> bool {
        let alts = alternatives(&self.schema);
        alts.iter().any(|a| kind(a) == "string" && !has_enum(a))
    }
}

/// Every scalar leaf of a field, nested objects walked through their properties
/// (arrays of objects are not).
pub fn leaves(field: &Field) -> Vec<Leaf> {
    let mut out = Vec::new();
    walk(&field.name, &field.schema, &mut out);
    out
}

fn walk(key_so_far: &str, schema: &Value, out: &mut Vec<Leaf>) {
    let alts = alternatives(schema);
    let scalar = alts
        .iter()
        .any(|a| kind(a) != "object" && kind(a) != "array");
    if scalar {
        out.push(Leaf {
            key: key_so_far.to_string(),
            schema: schema.clone(),
        });
    }
    for alt in alts {
        match kind(alt) {
            "object" => {
                for (name, s) in alt["properties"].as_object().into_iter().flatten() {
                    walk(&key(key_so_far, name), s, out);
                }
            }
            "array" => {
                let items = &alt["items"];
                if matches!(kind(items), "integer" | "number" | "boolean" | "string") {
                    out.push(Leaf {
                        key: format!("{key_so_far}[0]"),
                        schema: items.clone(),
                    });
                }
            }
            _ => {}
        }
    }
}

/// An object somewhere in a field that requires some of its properties, with the
/// key it sits at.
#[derive(Debug, Clone)]
pub struct RequiringObject {
    pub key: String,
    pub schema: Value,
}

/// Nested objects with required properties (the top level is the operation's
/// own `required`).
pub fn requiring_objects(field: &Field) -> Vec<RequiringObject> {
    let mut out = Vec::new();
    find_requiring(&field.name, &field.schema, &mut out);
    out
}

fn find_requiring(key_so_far: &str, schema: &Value, out: &mut Vec<RequiringObject>) {
    for alt in alternatives(schema) {
        if kind(alt) != "object" {
            continue;
        }
        if alt["required"].as_array().is_some_and(|r| !r.is_empty()) {
            out.push(RequiringObject {
                key: key_so_far.to_string(),
                schema: alt.clone(),
            });
        }
        for (name, s) in alt["properties"].as_object().into_iter().flatten() {
            find_requiring(&key(key_so_far, name), s, out);
        }
    }
}

/// Valid values for a parameter at `key`: `name_value` gives the value of a text
/// field by its name (ids of the fixture, a URL), or `None` for a plain word.
pub fn valid_pairs(
    key_at: &str,
    schema: &Value,
    name_value: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let Some(alt) = alternatives(schema).into_iter().next() else {
        return Vec::new();
    };
    let name = key_at
        .rsplit('[')
        .next()
        .unwrap_or(key_at)
        .trim_end_matches(']');
    match kind(alt) {
        "integer" => {
            let value = name_value(name).unwrap_or_else(|| {
                alt["minimum"]
                    .as_i64()
                    .map_or("1000".to_string(), |m| m.max(1).to_string())
            });
            vec![(key_at.to_string(), value)]
        }
        "number" => vec![(key_at.to_string(), "1".to_string())],
        "boolean" => vec![(key_at.to_string(), "false".to_string())],
        "string" => {
            let value = match alt["enum"].as_array().and_then(|e| e.first()) {
                Some(v) => v.as_str().unwrap_or_default().to_string(),
                None => name_value(name).unwrap_or_else(|| "payground".to_string()),
            };
            vec![(key_at.to_string(), value)]
        }
        "array" => valid_pairs(&format!("{key_at}[0]"), &alt["items"], name_value),
        "object" => match alt["properties"].as_object() {
            Some(props) => {
                let required: Vec<&str> = alt["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let chosen: Vec<(&String, &Value)> = if required.is_empty() {
                    props
                        .iter()
                        .filter(|(_, s)| {
                            alternatives(s).first().is_some_and(|a| kind(a) == "string")
                        })
                        .take(1)
                        .collect()
                } else {
                    props
                        .iter()
                        .filter(|(n, _)| required.contains(&n.as_str()))
                        .collect()
                };
                chosen
                    .into_iter()
                    .flat_map(|(n, s)| valid_pairs(&key(key_at, n), s, name_value))
                    .collect()
            }
            // A hash taken whole.
            None => vec![(key(key_at, "payground"), "1".to_string())],
        },
        _ => vec![(key_at.to_string(), "payground".to_string())],
    }
}

/// Valid values for the properties that the objects on the way down to `leaf_key`
/// require beside it (`components[payment_element][enabled]` beside
/// `components[payment_element][features][...]`), so that a wrong value deep in a
/// field is the request's only fault.
pub fn required_around(
    field: &Field,
    leaf_key: &str,
    name_value: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let Some(rest) = leaf_key.strip_prefix(field.name.as_str()) else {
        return Vec::new();
    };
    let path: Vec<&str> = rest
        .split('[')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches(']'))
        .collect();
    let mut out = Vec::new();
    let mut key_so_far = field.name.clone();
    let mut schema = field.schema.clone();
    for step in path {
        let Some(object) = alternatives(&schema)
            .into_iter()
            .find(|a| kind(a) == "object")
            .cloned()
        else {
            break;
        };
        let required: Vec<&str> = object["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for r in required.into_iter().filter(|r| *r != step) {
            if let Some(s) = object["properties"].get(r) {
                out.extend(valid_pairs(&key(&key_so_far, r), s, name_value));
            }
        }
        let Some(next) = object["properties"].get(step) else {
            break;
        };
        schema = next.clone();
        key_so_far = key(&key_so_far, step);
    }
    out
}
