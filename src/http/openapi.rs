//! payground's own OpenAPI 3.1 document, served at `GET /payground/openapi.json`,
//! derived from the endpoints every handler file declares ([`endpoints::all`]):
//! their parameters are the JSON schemas of the params types the handlers decode,
//! their answers the schemas of the object types the resources save (both derived
//! with `schemars` from the serde types), so the document cannot drift from what
//! payground accepts and answers. Bodies are form-encoded in Stripe's bracket
//! notation; bearer auth with the secret key; Stripe's error envelope otherwise.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::ctx::API_VERSION;
use crate::http::endpoints::{self, Auth, Described, Endpoint, Input, Output, SchemaFn};
use crate::resources::common::list::CommonListParams;
use crate::resources::registry;
use crate::resources::search::SearchParams;

/// Where the document is served (routed in `admin.rs` with payground's own routes).
pub const PATH: &str = "/payground/openapi.json";

/// Where object schemas live in the document; their `$ref`s point here.
const SCHEMAS: &str = "/components/schemas";

pub async fn serve() -> Response {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| document().to_string());
    let mut response = text.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

// ---- schemas ------------------------------------------------------------------

/// Params types as the handlers decode them, each inlined where it is used.
fn params_generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.contract = Contract::Deserialize;
            s.meta_schema = None;
        })
        .into_generator()
}

/// Objects as the resources serialise them, under `components/schemas`.
fn objects_generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = SCHEMAS.into();
            s.contract = Contract::Serialize;
            s.meta_schema = None;
        })
        .into_generator()
}

/// Calls `f` on every schema object inside `schema`, `schema` included.
fn each_schema(schema: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
    let Value::Object(map) = schema else {
        return;
    };
    f(map);
    for key in ["properties", "patternProperties", "$defs"] {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            for child in children.values_mut() {
                each_schema(child, f);
            }
        }
    }
    for key in ["items", "additionalProperties", "not", "contains"] {
        if let Some(child) = map.get_mut(key) {
            each_schema(child, f);
        }
    }
    for key in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(children)) = map.get_mut(key) {
            for child in children.iter_mut() {
                each_schema(child, f);
            }
        }
    }
}

/// Doc comments are written for the code's readers and serde's defaults are not
/// part of the wire contract: the document keeps neither.
fn strip_annotations(schema: &mut Value) {
    each_schema(schema, &mut |map| {
        for key in ["description", "title", "default"] {
            map.shift_remove(key);
        }
    });
}

/// What a form can carry. An `Option` is absent or `""`, never `null`, so the
/// `null` schemars adds to it goes; a `Value` payground takes whole without
/// looking inside (`mandate_data`, ...) is a hash, as Stripe's spec has it.
fn as_form_params(schema: &mut Value) {
    let open = match schema {
        Value::Bool(true) => true,
        Value::Object(map) => map.is_empty(),
        _ => false,
    };
    if open {
        *schema = json!({"type": "object"});
        return;
    }
    let Value::Object(map) = schema else {
        return;
    };
    for key in ["type", "enum"] {
        if let Some(Value::Array(values)) = map.get_mut(key) {
            values.retain(|v| v != "null" && !v.is_null());
            if key == "type" && values.len() == 1 {
                let only = values.remove(0);
                map.insert(key.into(), only);
            }
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = map.get_mut(key) {
            options.retain(|o| o.get("type").and_then(Value::as_str) != Some("null"));
            if options.len() == 1 {
                let only = options.remove(0);
                map.shift_remove(key);
                if let Value::Object(only) = only {
                    map.extend(only);
                }
                // What it was merged with may itself be open or nullable.
                return as_form_params(schema);
            }
        }
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(as_form_params);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(options)) = map.get_mut(key) {
            options.iter_mut().for_each(as_form_params);
        }
    }
    if let Some(items) = map.get_mut("items") {
        as_form_params(items);
    }
    if let Some(values @ Value::Object(_)) = map.get_mut("additionalProperties") {
        if values.as_object().is_some_and(|m| !m.is_empty()) {
            as_form_params(values);
        }
    }
}

/// A params type's schema as a form describes it.
fn params_schema(generator: &mut SchemaGenerator, schema: SchemaFn) -> Value {
    let mut value = schema(generator).to_value();
    strip_annotations(&mut value);
    as_form_params(&mut value);
    value
}

fn params_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    params_schema(generator, SchemaGenerator::subschema_for::<T>)
}

fn properties(schema: &Value) -> Vec<(String, Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn required(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn schema_type(schema: &Value) -> Option<&str> {
    schema.get("type").and_then(Value::as_str)
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

// ---- operations -------------------------------------------------------------------

fn method_name(method: &Method) -> String {
    method.as_str().to_ascii_lowercase()
}

/// A query parameter; arrays go as `name[]=a&name[]=b`, hashes in bracket notation.
fn query_param(name: &str, schema: Value, required: bool) -> Value {
    let name = if schema_type(&schema) == Some("array") {
        format!("{name}[]")
    } else {
        name.to_string()
    };
    let mut p = json!({"name": name, "in": "query", "required": required, "schema": schema});
    if schema_type(&p["schema"]) == Some("object") {
        p["style"] = json!("deepObject");
        p["explode"] = json!(true);
    }
    p
}

/// The fields of a params schema as query parameters, less those the route refuses.
fn query_params(schema: &Value, refused: &[&str]) -> Vec<Value> {
    let required = required(schema);
    properties(schema)
        .into_iter()
        .filter(|(name, _)| !refused.contains(&name.as_str()))
        .map(|(name, s)| {
            let is_required = required.contains(&name);
            query_param(&name, s, is_required)
        })
        .collect()
}

fn parameters(e: &Endpoint, params: &mut SchemaGenerator) -> Vec<Value> {
    let mut out: Vec<Value> = e
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let expands = e.auth != Auth::Public && e.method == Method::GET;
    match &e.input {
        Input::Query(schema) => {
            let schema = params_schema(params, *schema);
            out.extend(query_params(&schema, e.refused));
        }
        Input::List { filters, created } => {
            let mut refused = e.refused.to_vec();
            if !created {
                refused.push("created");
            }
            out.extend(query_params(
                &params_of::<CommonListParams>(params),
                &refused,
            ));
            let filters = params_schema(params, *filters);
            out.extend(query_params(&filters, e.refused));
        }
        Input::Search => {
            out.extend(query_params(&params_of::<SearchParams>(params), e.refused));
        }
        Input::Nothing | Input::Body(_) => {}
    }
    if expands {
        out.push(query_param("expand", strings(), false));
    }
    if e.method == Method::POST {
        out.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "schema": {"type": "string", "maxLength": 255},
        }));
    }
    out
}

fn request_body(e: &Endpoint, params: &mut SchemaGenerator) -> Option<Value> {
    if e.method != Method::POST {
        return None;
    }
    let mut fields = Map::new();
    let mut required_fields = Vec::new();
    let mut closed = true;
    if let Input::Body(schemas) = &e.input {
        for schema in schemas {
            let schema = params_schema(params, *schema);
            closed &= schema.get("additionalProperties") == Some(&Value::Bool(false));
            required_fields.extend(required(&schema));
            fields.extend(
                properties(&schema)
                    .into_iter()
                    .filter(|(name, _)| !e.refused.contains(&name.as_str())),
            );
        }
    }
    fields.insert("expand".into(), strings());
    // Nested values travel in Stripe's bracket notation: `card[number]=...`.
    let encoding: Map<String, Value> = fields
        .iter()
        .filter(|(_, v)| {
            !matches!(
                schema_type(v),
                Some("string" | "integer" | "number" | "boolean")
            )
        })
        .map(|(k, _)| (k.clone(), json!({"style": "deepObject", "explode": true})))
        .collect();
    let mut schema = json!({"type": "object", "properties": fields});
    if closed {
        schema["additionalProperties"] = json!(false);
    }
    if !required_fields.is_empty() {
        schema["required"] = json!(required_fields);
    }
    Some(json!({
        "required": !required_fields.is_empty(),
        "content": {"application/x-www-form-urlencoded": {"schema": schema, "encoding": encoding}},
    }))
}

/// `{object: name, id}`, for payground's own objects.
fn own_object(name: &str) -> Value {
    if name.is_empty() {
        return json!({"type": "object"});
    }
    json!({
        "type": "object", "required": ["object"],
        "properties": {"id": {"type": "string"}, "object": {"type": "string", "enum": [name]}},
    })
}

fn page_of(page: &str, items: Value) -> Value {
    json!({"allOf": [
        {"$ref": format!("#{SCHEMAS}/{page}")},
        {"properties": {"data": {"type": "array", "items": items}}},
    ]})
}

fn described(objects: &mut SchemaGenerator, d: &Described) -> Value {
    (d.schema)(objects).to_value()
}

fn success(e: &Endpoint, objects: &mut SchemaGenerator) -> Value {
    let schema = match &e.output {
        Output::Object(d) => described(objects, d),
        Output::List(d) => page_of("list", described(objects, d)),
        Output::Search(d) => page_of("search_result", described(objects, d)),
        Output::Deleted(name) => json!({
            "type": "object", "required": ["id", "object", "deleted"],
            "properties": {
                "id": {"type": "string"},
                "object": {"type": "string", "enum": [name]},
                "deleted": {"type": "boolean", "enum": [true]},
            },
        }),
        Output::Own(name) => own_object(name),
        Output::OwnList(name) => page_of("list", own_object(name)),
        Output::Page => {
            return json!({"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}})
        }
    };
    json!({"description": "Success", "content": {"application/json": {"schema": schema}}})
}

fn operation(e: &Endpoint, params: &mut SchemaGenerator, objects: &mut SchemaGenerator) -> Value {
    let mut v = json!({
        "operationId": e.operation_id,
        "summary": e.summary,
        "parameters": parameters(e, params),
        "responses": {
            "200": success(e, objects),
            "default": {
                "description": "Stripe's error envelope",
                "content": {"application/json": {"schema": {"$ref": format!("#{SCHEMAS}/error")}}},
            },
        },
    });
    if let Some(body) = request_body(e, params) {
        v["requestBody"] = body;
    }
    match e.auth {
        Auth::Public => v["security"] = json!([]),
        Auth::Publishable => v["security"] = json!([{"secret_key": []}, {"publishable_key": []}]),
        Auth::Secret | Auth::Admin => {}
    }
    v
}

// ---- the document -----------------------------------------------------------------

/// The expandable fields of the object itself, not of the hashes inside it
/// (those are on the hash's own schema in Stripe's spec).
fn own_expandable(r: &registry::Resource) -> Vec<&'static str> {
    r.expandable
        .iter()
        .filter(|f| !f.contains('.'))
        .copied()
        .collect()
}

/// What the registry knows of each resource's schema: the one `object` its
/// objects say, and Stripe's own mark of what `expand[]` may name on it
/// (`x-expandableFields`), with an expandable id that may come back as its object.
fn describe_resources(schemas: &mut Map<String, Value>) {
    for r in registry::ALL.iter().filter(|r| !r.internal) {
        let Some(Value::Object(schema)) = schemas.get_mut((r.schema_name)().as_ref()) else {
            continue;
        };
        let top = own_expandable(r);
        if let Some(Value::Object(props)) = schema.get_mut("properties") {
            props.insert(
                "object".into(),
                json!({"type": "string", "enum": [r.object]}),
            );
            for field in &top {
                let Some(prop) = props.get_mut(*field) else {
                    continue;
                };
                let holds_id = match prop.get("type") {
                    Some(Value::String(t)) => t == "string",
                    Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
                    _ => false,
                };
                if holds_id {
                    let id = prop.take();
                    *prop =
                        json!({"anyOf": [id, {"type": "object", "required": ["id", "object"]}]});
                }
            }
        }
        schema.insert("x-expandableFields".into(), json!(top));
    }
}

fn error_envelope() -> Value {
    let string = json!({"type": "string"});
    let hash = json!({"type": "object"});
    json!({
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "additionalProperties": false, "required": ["type", "message"],
            "properties": {
                "type": {"type": "string", "enum": [
                    "api_error", "card_error", "idempotency_error", "invalid_request_error",
                ]},
                "message": string, "code": string, "decline_code": string, "param": string,
                "doc_url": string, "charge": string, "request_log_url": string,
                "payment_intent": hash, "payment_method": hash, "setup_intent": hash,
            },
        }},
    })
}

fn components(mut schemas: Map<String, Value>) -> Value {
    for schema in schemas.values_mut() {
        strip_annotations(schema);
    }
    describe_resources(&mut schemas);
    schemas.insert("error".into(), error_envelope());
    schemas.insert(
        "list".into(),
        json!({
            "type": "object", "required": ["object", "data", "has_more", "url"],
            "properties": {
                "object": {"type": "string", "enum": ["list"]},
                "data": {"type": "array", "items": {"type": "object"}},
                "has_more": {"type": "boolean"},
                "url": {"type": "string"},
            },
        }),
    );
    schemas.insert(
        "search_result".into(),
        json!({
            "type": "object", "required": ["object", "data", "has_more", "next_page", "url"],
            "properties": {
                "object": {"type": "string", "enum": ["search_result"]},
                "data": {"type": "array", "items": {"type": "object"}},
                "has_more": {"type": "boolean"},
                "next_page": {"type": ["string", "null"]},
                "url": {"type": "string"},
            },
        }),
    );
    json!({
        "securitySchemes": {
            "secret_key": {
                "type": "http", "scheme": "bearer",
                "description": "The account's secret key, sk_test_... (Basic auth with the key as the user works too).",
            },
            "publishable_key": {
                "type": "http", "scheme": "bearer",
                "description": "The account's publishable key, pk_test_..., with the object's client_secret: the calls stripe.js makes.",
            },
        },
        "schemas": schemas,
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut params = params_generator();
    let mut objects = objects_generator();
    let mut paths = Map::new();
    for e in endpoints::all().iter().filter(|e| e.documented) {
        let item = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        item[method_name(&e.method)] = operation(e, &mut params, &mut objects);
    }
    // Every Stripe resource is described, answered by an endpoint or not yet.
    for r in registry::ALL.iter().filter(|r| !r.internal) {
        (r.schema)(&mut objects);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "payground",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "The routes payground implements of Stripe's API (version {API_VERSION}), and its own. \
                 Bodies are form-encoded in Stripe's bracket notation (JSON bodies are accepted too)."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"secret_key": []}],
        "paths": paths,
        "components": components(objects.take_definitions(true)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The schema a `$ref` (or a nullable `anyOf` of one) points at.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
            let name = target.rsplit('/').next().unwrap_or_default();
            return &doc["components"]["schemas"][name];
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array) {
                if let Some(found) = options.iter().find(|o| o.get("$ref").is_some()) {
                    return resolve(doc, found);
                }
                if let Some(found) = options.iter().find(|o| o.get("properties").is_some()) {
                    return found;
                }
            }
        }
        schema
    }

    fn operation_of<'a>(doc: &'a Value, e: &Endpoint) -> &'a Value {
        &doc["paths"][e.path][method_name(&e.method)]
    }

    /// The names of an operation's parameters `in` the path, the query, ...
    fn parameters_in<'a>(o: &'a Value, place: &str) -> Vec<&'a str> {
        o["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter(|p| p["in"] == place)
            .filter_map(|p| p["name"].as_str())
            .collect()
    }

    #[test]
    fn the_document_is_json_with_the_expected_shape() {
        let text = document().to_string();
        let doc: Value = serde_json::from_str(&text).expect("valid JSON");
        for key in [
            "openapi",
            "info",
            "servers",
            "security",
            "paths",
            "components",
        ] {
            assert!(doc.get(key).is_some(), "missing {key}");
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["components"]["securitySchemes"]["secret_key"].is_object());
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, o) in item.as_object().expect("path item") {
                let id = o["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
                assert!(o["responses"]["200"].is_object(), "{method} {path}");
                assert!(o["responses"]["default"].is_object(), "{method} {path}");
                let declared = parameters_in(o, "path");
                assert_eq!(declared.len(), path.matches('{').count(), "{method} {path}");
                if method == "post" {
                    let body = &o["requestBody"]["content"]["application/x-www-form-urlencoded"];
                    assert_eq!(body["schema"]["type"], "object", "{method} {path}");
                    assert!(body["schema"]["properties"]["expand"].is_object());
                }
            }
        }
        assert!(ids.contains("PostPaymentIntents") && ids.contains("GetCustomersCustomer"));
        let create = &doc["paths"]["/v1/payment_intents"]["post"]["requestBody"]["content"]
            ["application/x-www-form-urlencoded"];
        assert_eq!(create["schema"]["required"], json!(["amount", "currency"]));
        assert_eq!(create["schema"]["additionalProperties"], json!(false));
        assert_eq!(
            create["encoding"]["metadata"]["style"], "deepObject",
            "nested values are in bracket notation"
        );
        // `""` clears a field of an update, as Stripe's spec says with anyOf.
        let update = &doc["paths"]["/v1/customers/{id}"]["post"]["requestBody"]["content"]
            ["application/x-www-form-urlencoded"]["schema"]["properties"];
        assert_eq!(
            update["metadata"]["anyOf"][1],
            json!({"type": "string", "enum": [""]})
        );
        assert_eq!(
            update["address"]["anyOf"][1],
            json!({"type": "string", "enum": [""]})
        );
        // A form carries no null, and an open hash is a hash.
        for item in doc["paths"].as_object().expect("paths").values() {
            for o in item.as_object().expect("path item").values() {
                let mut inputs = o["parameters"].to_string();
                if let Some(body) = o.get("requestBody") {
                    inputs.push_str(&body.to_string());
                }
                assert!(!inputs.contains("null"), "{}", o["operationId"]);
            }
        }
        assert_eq!(update["cash_balance"], json!({"type": "object"}));
    }

    #[test]
    fn every_documented_endpoint_has_its_params_and_output() {
        let doc = document();
        let mut params = params_generator();
        let mut documented = 0;
        for e in endpoints::all() {
            let o = operation_of(&doc, &e);
            if !e.documented {
                assert!(o.is_null(), "{} {} is documented", e.method, e.path);
                continue;
            }
            documented += 1;
            let at = format!("{} {}", e.method, e.path);
            assert!(o.is_object(), "{at} is missing");
            let query: BTreeSet<&str> = parameters_in(o, "query").into_iter().collect();
            let body = &o["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
                ["properties"];
            let wire = |name: &str, schema: &Value| {
                if schema_type(schema) == Some("array") {
                    format!("{name}[]")
                } else {
                    name.to_string()
                }
            };
            match &e.input {
                Input::Body(schemas) => {
                    assert!(!schemas.is_empty(), "{at}");
                    for schema in schemas {
                        let schema = params_schema(&mut params, *schema);
                        for (name, _) in properties(&schema) {
                            assert!(body.get(&name).is_some(), "{at}: body lacks {name}");
                        }
                    }
                }
                Input::Query(schema) => {
                    let schema = params_schema(&mut params, *schema);
                    for (name, s) in properties(&schema) {
                        let documented = query.contains(wire(&name, &s).as_str());
                        assert_eq!(
                            !documented,
                            e.refused.contains(&name.as_str()),
                            "{at}: {name}"
                        );
                    }
                }
                Input::List { filters, created } => {
                    for name in ["limit", "starting_after", "ending_before", "expand[]"] {
                        assert!(query.contains(name), "{at}: {name}");
                    }
                    assert_eq!(query.contains("created"), *created, "{at}");
                    let schema = params_schema(&mut params, *filters);
                    for (name, s) in properties(&schema) {
                        assert!(query.contains(wire(&name, &s).as_str()), "{at}: {name}");
                    }
                }
                Input::Search => {
                    for name in ["query", "limit", "page", "expand[]"] {
                        assert!(query.contains(name), "{at}: {name}");
                    }
                }
                Input::Nothing => {
                    if e.method == Method::POST {
                        assert_eq!(
                            body.as_object().map(|b| b.len()),
                            Some(1),
                            "{at}: only expand"
                        );
                    }
                }
            }
            let success = &o["responses"]["200"]["content"]["application/json"]["schema"];
            match &e.output {
                Output::Object(d) => {
                    let target = success["$ref"].as_str().unwrap_or_default();
                    let name = target.rsplit('/').next().unwrap_or_default();
                    let component = &doc["components"]["schemas"][name];
                    assert_eq!(
                        component["properties"]["object"]["enum"],
                        json!([d.object]),
                        "{at}: answers {target}"
                    );
                }
                Output::List(d) | Output::Search(d) => {
                    let items = resolve(&doc, &success["allOf"][1]["properties"]["data"]["items"]);
                    assert_eq!(
                        items["properties"]["object"]["enum"],
                        json!([d.object]),
                        "{at}"
                    );
                }
                Output::Deleted(object) | Output::Own(object) | Output::OwnList(object) => {
                    let own = if matches!(e.output, Output::OwnList(_)) {
                        &success["allOf"][1]["properties"]["data"]["items"]
                    } else {
                        success
                    };
                    if object.is_empty() {
                        assert_eq!(e.auth, Auth::Public, "{at}: an undescribed answer");
                    } else {
                        assert_eq!(own["properties"]["object"]["enum"], json!([object]), "{at}");
                    }
                }
                Output::Page => panic!("{at}: a page in the document"),
            }
        }
        assert_eq!(
            documented,
            doc["paths"]
                .as_object()
                .map(|p| p
                    .values()
                    .map(|i| i.as_object().map_or(0, |m| m.len()))
                    .sum::<usize>())
                .unwrap_or(0)
        );
    }

    #[test]
    fn every_resource_schema_has_its_expandable_fields() {
        let doc = document();
        for r in registry::ALL.iter().filter(|r| !r.internal) {
            let name = (r.schema_name)();
            let schema = &doc["components"]["schemas"][name.as_ref()];
            assert!(schema.is_object(), "{} has no schema", r.object);
            for field in r.expandable {
                let mut at = schema;
                for segment in field.split('.') {
                    let property = &at["properties"][segment];
                    assert!(
                        !property.is_null(),
                        "{}: {field} has no {segment}",
                        r.object
                    );
                    at = resolve(&doc, property);
                }
            }
            assert_eq!(
                schema["x-expandableFields"],
                json!(own_expandable(r)),
                "{}",
                r.object
            );
        }
    }

    #[test]
    fn internal_kinds_are_not_described() {
        let doc = document();
        for r in registry::ALL.iter().filter(|r| r.internal) {
            let name = (r.schema_name)();
            assert!(
                doc["components"]["schemas"][name.as_ref()].is_null(),
                "{}",
                r.object
            );
        }
    }
}
