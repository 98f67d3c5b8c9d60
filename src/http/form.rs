//! Stripe's bracket notation (`card[number]=4242`, `expand[]=customer`,
//! `items[0][price]=price_1`) decoded into one tree.
//!
//! Every interior node is a JSON object, arrays included (`x[]` appends the keys
//! "0", "1", ...): whether `metadata[0]` is an array element or a hash key is only
//! known to the typed params, so [`super::params`] decides when it deserializes.
//! JSON request bodies arrive as the same kind of tree.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Deeper nesting than any Stripe parameter needs; refusing it bounds the work.
const MAX_DEPTH: usize = 12;
/// More pairs than any Stripe request needs.
const MAX_PAIRS: usize = 10_000;

/// Decodes an `application/x-www-form-urlencoded` body or query string.
pub fn decode(input: &[u8]) -> Result<Value, ApiError> {
    let mut root = Map::new();
    for (count, (key, value)) in form_urlencoded::parse(input).enumerate() {
        if count >= MAX_PAIRS {
            return Err(ApiError::invalid_request(format!(
                "Too many parameters: at most {MAX_PAIRS} are accepted."
            )));
        }
        if key.is_empty() {
            continue;
        }
        let segments = split_key(&key)?;
        insert(&mut root, &key, &segments, value.into_owned())?;
    }
    Ok(Value::Object(root))
}

/// `a[b][]` → ["a", "b", ""].
fn split_key(key: &str) -> Result<Vec<&str>, ApiError> {
    let malformed = || {
        ApiError::invalid_request(format!("Invalid parameter name: {key}"))
            .with_code("parameter_invalid_string")
            .with_param(key.to_string())
    };
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return Err(malformed());
    }
    let mut segments = vec![head];
    while !rest.is_empty() {
        if !rest.starts_with('[') {
            return Err(malformed());
        }
        let close = rest.find(']').ok_or_else(malformed)?;
        segments.push(&rest[1..close]);
        rest = &rest[close + 1..];
        if segments.len() > MAX_DEPTH {
            return Err(
                ApiError::invalid_request(format!("Parameter nesting is too deep: {key}"))
                    .with_param(key.to_string()),
            );
        }
    }
    Ok(segments)
}

fn insert(
    root: &mut Map<String, Value>,
    key: &str,
    segments: &[&str],
    value: String,
) -> Result<(), ApiError> {
    let conflict = || {
        ApiError::invalid_request(format!(
            "Invalid parameter: {key} is given both as a value and as a hash or array"
        ))
        .with_param(key.to_string())
    };
    let mut node = root;
    let last = segments.len() - 1;
    for (i, raw) in segments.iter().enumerate() {
        let name = if raw.is_empty() {
            node.len().to_string()
        } else {
            (*raw).to_string()
        };
        if i == last {
            if node.get(&name).is_some_and(Value::is_object) {
                return Err(conflict());
            }
            node.insert(name, Value::String(value));
            return Ok(());
        }
        let child = node
            .entry(name)
            .or_insert_with(|| Value::Object(Map::new()));
        node = match child {
            Value::Object(map) => map,
            // `metadata=` followed by `metadata[k]=v`: the later, more specific form wins.
            Value::String(s) if s.is_empty() => {
                *child = Value::Object(Map::new());
                match child {
                    Value::Object(map) => map,
                    _ => return Err(conflict()),
                }
            }
            _ => return Err(conflict()),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_brackets_and_arrays() {
        let v =
            decode(b"a=1&card[number]=4242&expand[]=x&expand[]=y&items[0][price]=p&metadata[k]=")
                .unwrap();
        assert_eq!(
            v,
            json!({"a":"1","card":{"number":"4242"},"expand":{"0":"x","1":"y"},"items":{"0":{"price":"p"}},"metadata":{"k":""}})
        );
    }

    #[test]
    fn percent_decoding() {
        let v = decode(b"email=a%2Bb%40example.com&name=J+D").unwrap();
        assert_eq!(v, json!({"email":"a+b@example.com","name":"J D"}));
    }

    #[test]
    fn conflicts_and_depth_are_refused() {
        assert!(decode(b"a=1&a[b]=2").is_err());
        assert!(decode(b"a[b]=2&a=1").is_err());
        let deep = format!("a{}=1", "[x]".repeat(40));
        assert!(decode(deep.as_bytes()).is_err());
        assert!(decode(b"[x]=1").is_err());
        assert!(decode(b"a[x=1").is_err());
    }
}

#[cfg(test)]
/// Typed params decoded from bodies as clients send them.
mod params_from_forms {
    use super::decode;
    use crate::error::ApiError;
    use crate::resources::common::params::*;
    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields exist to be decoded, not read
    struct Card {
        number: String,
        exp_month: u32,
        #[serde(default)]
        cvc: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Capture {
        Automatic,
        Manual,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        amount: i64,
        #[serde(default)]
        confirm: Option<bool>,
        #[serde(default)]
        card: Option<Card>,
        #[serde(default)]
        types: Vec<String>,
        #[serde(default)]
        capture_method: Option<Capture>,
        #[serde(default)]
        description: Field<String>,
        #[serde(default)]
        metadata: MetadataParam,
    }

    fn parse(body: &str) -> Result<Params, ApiError> {
        from_value(&decode(body.as_bytes()).unwrap())
    }

    #[test]
    fn typed_values_from_strings() {
        let p = parse("amount=2000&confirm=true&card[number]=4242&card[exp_month]=12&types[]=card&types[]=sepa&capture_method=manual&description=&metadata[a]=1&metadata[b]=").unwrap();
        assert_eq!(p.amount, 2000);
        assert_eq!(p.confirm, Some(true));
        assert_eq!(p.card.unwrap().exp_month, 12);
        assert_eq!(p.types, vec!["card", "sepa"]);
        assert_eq!(p.capture_method, Some(Capture::Manual));
        assert_eq!(p.description, Field::Clear);
        match p.metadata {
            Field::Set(m) => {
                assert_eq!(m["a"], Field::Set("1".into()));
                assert_eq!(m["b"], Field::Clear);
            }
            other => panic!("metadata: {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_param() {
        let e = parse("amount=abc").unwrap_err();
        assert_eq!(e.code.as_deref(), Some("parameter_invalid_integer"));
        assert_eq!(e.param.as_deref(), Some("amount"));
        assert_eq!(e.message, "Invalid integer: abc");

        let e = parse("amount=1&card[number]=1&card[exp_month]=1&card[bogus]=1").unwrap_err();
        assert_eq!(e.code.as_deref(), Some("parameter_unknown"));
        assert_eq!(e.param.as_deref(), Some("card[bogus]"));

        let e = parse("amount=1&card[number]=1").unwrap_err();
        assert_eq!(e.code.as_deref(), Some("parameter_missing"));
        assert_eq!(e.param.as_deref(), Some("card[exp_month]"));

        let e = parse("confirm=true").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("amount"));
        assert_eq!(e.message, "Missing required param: amount.");

        let e = parse("amount=1&confirm=yes").unwrap_err();
        assert_eq!(e.code.as_deref(), Some("parameter_invalid_boolean"));

        let e = parse("amount=1&capture_method=later").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("capture_method"));

        let e = parse("amount=1&card=x").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("card"));

        let e = parse("amount[x]=1").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("amount"));
    }

    #[test]
    fn json_bodies_decode_too() {
        let v: Value = serde_json::json!({"amount": 5, "confirm": true, "metadata": {"k": "v"}});
        let p: Params = from_value(&v).unwrap();
        assert_eq!(p.amount, 5);
        assert_eq!(p.confirm, Some(true));
    }
}
