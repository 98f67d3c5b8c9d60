//! Typed request parameters from the decoded form tree.
//!
//! A serde `Deserializer` over [`serde_json::Value`] that reads Stripe's wire
//! types (integers and booleans arrive as strings, an empty string means "unset")
//! and remembers where it is, so every failure names its `param` the way Stripe
//! does: `card[exp_month]`, `metadata[order]`. Params types use
//! `#[serde(deny_unknown_fields)]`; an unknown key becomes `parameter_unknown`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Decodes `value` into `T`, turning the first problem into Stripe's 400.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    T::deserialize(ValueDe {
        value,
        path: String::new(),
    })
    .map_err(ParamError::into_api_error)
}

#[derive(Debug)]
enum Problem {
    Unknown,
    Missing(String),
    Invalid { code: &'static str, message: String },
    Custom(String),
}

/// A decoding failure and the parameter it concerns, once known.
#[derive(Debug)]
pub struct ParamError {
    problem: Problem,
    param: Option<String>,
}

impl ParamError {
    fn invalid(code: &'static str, message: String) -> Self {
        ParamError {
            problem: Problem::Invalid { code, message },
            param: None,
        }
    }

    fn at(mut self, param: impl FnOnce() -> String) -> Self {
        if self.param.is_none() {
            self.param = Some(param());
        }
        self
    }

    fn into_api_error(self) -> ApiError {
        let param = self.param.unwrap_or_default();
        match self.problem {
            Problem::Unknown => ApiError::unknown_param(&param),
            Problem::Missing(_) => ApiError::missing_param(&param),
            Problem::Invalid { code, message } => ApiError::invalid_param(&param, code, message),
            Problem::Custom(message) => {
                let err = ApiError::invalid_request(message);
                if param.is_empty() {
                    err
                } else {
                    err.with_param(param)
                }
            }
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at {:?}", self.problem, self.param)
    }
}

impl std::error::Error for ParamError {}

impl de::Error for ParamError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ParamError {
            problem: Problem::Custom(msg.to_string()),
            param: None,
        }
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        {
            let _ = field;
            ParamError {
                problem: Problem::Unknown,
                param: None,
            }
        }
    }

    fn missing_field(field: &'static str) -> Self {
        ParamError {
            problem: Problem::Missing(field.to_string()),
            param: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let list = match expected {
            [] => String::new(),
            [one] => one.to_string(),
            [init @ .., last] => format!("{}, or {}", init.join(", "), last),
        };
        let shown = if variant.is_empty() { "\"\"" } else { variant };
        ParamError::invalid(
            "parameter_invalid_string",
            format!("Invalid value {shown}: must be one of {list}"),
        )
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}[{key}]")
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct ValueDe<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> ValueDe<'a> {
    fn integer(&self) -> Result<i64, ParamError> {
        let parsed = match self.value {
            Value::String(s) => s.trim().parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        parsed.ok_or_else(|| {
            ParamError::invalid(
                "parameter_invalid_integer",
                format!("Invalid integer: {}", describe(self.value)),
            )
            .at(|| self.path.clone())
        })
    }

    fn float(&self) -> Result<f64, ParamError> {
        let parsed = match self.value {
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            Value::Number(n) => n.as_f64(),
            _ => None,
        };
        parsed.ok_or_else(|| {
            ParamError::invalid(
                "parameter_invalid_decimal",
                format!("Invalid decimal: {}", describe(self.value)),
            )
            .at(|| self.path.clone())
        })
    }

    fn object(&self) -> Option<&'a Map<String, Value>> {
        match self.value {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    fn is_empty_string(&self) -> bool {
        matches!(self.value, Value::String(s) if s.is_empty())
    }

    fn wrong(&self, what: &str, code: &'static str) -> ParamError {
        ParamError::invalid(code, format!("Invalid {what}: {}", describe(self.value)))
            .at(|| self.path.clone())
    }
}

macro_rules! integer_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
            let n = self.integer()?;
            let n = <$ty>::try_from(n).map_err(|_| {
                ParamError::invalid(
                    "parameter_invalid_integer",
                    format!("Invalid integer: {}", describe(self.value)),
                )
                .at(|| self.path.clone())
            })?;
            visitor.$visit(n)
        }
    };
}

impl<'de, 'a> Deserializer<'de> for ValueDe<'a> {
    type Error = ParamError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or_default())
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Array(_) => self.deserialize_seq(visitor),
            Value::Object(_) => self.deserialize_map(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        match self.value {
            Value::Bool(b) => visitor.visit_bool(*b),
            // stripe-python sends Python's `True`/`False`.
            Value::String(s) if s.eq_ignore_ascii_case("true") => visitor.visit_bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => visitor.visit_bool(false),
            _ => Err(self.wrong("boolean", "parameter_invalid_boolean")),
        }
    }

    integer_method!(deserialize_i8, visit_i8, i8);
    integer_method!(deserialize_i16, visit_i16, i16);
    integer_method!(deserialize_i32, visit_i32, i32);
    integer_method!(deserialize_i64, visit_i64, i64);
    integer_method!(deserialize_u8, visit_u8, u8);
    integer_method!(deserialize_u16, visit_u16, u16);
    integer_method!(deserialize_u32, visit_u32, u32);
    integer_method!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_f32(self.float()? as f32)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_f64(self.float()?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        match self.value {
            Value::String(s) => visitor.visit_str(s),
            Value::Number(n) => visitor.visit_string(n.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => Err(self.wrong("string", "parameter_invalid_string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        if self.value.is_null() || self.is_empty_string() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        let items: Vec<(String, &Value)> = match self.value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            Value::Object(map) => {
                let mut indexed = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let index: usize = k
                        .parse()
                        .map_err(|_| self.wrong("array", "parameter_invalid_array"))?;
                    indexed.push((index, k.clone(), v));
                }
                indexed.sort_by_key(|(i, _, _)| *i);
                indexed.into_iter().map(|(_, k, v)| (k, v)).collect()
            }
            Value::String(s) if s.is_empty() => Vec::new(),
            _ => return Err(self.wrong("array", "parameter_invalid_array")),
        };
        let path = self.path.clone();
        visitor.visit_seq(Seq {
            items: items.into_iter(),
            path,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let map = match self.object() {
            Some(map) => map,
            None if self.is_empty_string() => EMPTY.get_or_init(Map::new),
            None => return Err(self.wrong("hash", "parameter_invalid_hash")),
        };
        let path = self.path.clone();
        visitor
            .visit_map(Entries {
                iter: map.iter(),
                current: None,
                path: path.clone(),
            })
            .map_err(|e| match e.problem {
                Problem::Missing(ref field) => {
                    let field = field.clone();
                    e.at(|| child_path(&path, &field))
                }
                _ => e.at(|| path.clone()),
            })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        match self.value {
            Value::String(s) => {
                let path = self.path.clone();
                visitor
                    .visit_enum(de::value::StrDeserializer::<ParamError>::new(s))
                    .map_err(|e| e.at(|| path))
            }
            _ => Err(self.wrong("string", "parameter_invalid_string")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_unit()
    }
}

struct Entries<'a> {
    iter: serde_json::map::Iter<'a>,
    current: Option<(&'a String, &'a Value)>,
    path: String,
}

impl<'de, 'a> MapAccess<'de> for Entries<'a> {
    type Error = ParamError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ParamError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.current = Some((k, v));
                let path = &self.path;
                seed.deserialize(k.as_str().into_deserializer())
                    .map(Some)
                    .map_err(|e: ParamError| e.at(|| child_path(path, k)))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ParamError> {
        let (k, v) = self
            .current
            .take()
            .ok_or_else(|| <ParamError as de::Error>::custom("value requested before key"))?;
        let path = child_path(&self.path, k);
        seed.deserialize(ValueDe {
            value: v,
            path: path.clone(),
        })
        .map_err(|e| e.at(|| path))
    }
}

struct Seq<I> {
    items: I,
    path: String,
}

impl<'de, 'a, I: Iterator<Item = (String, &'a Value)>> SeqAccess<'de> for Seq<I> {
    type Error = ParamError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ParamError> {
        match self.items.next() {
            Some((k, v)) => {
                let path = child_path(&self.path, &k);
                seed.deserialize(ValueDe {
                    value: v,
                    path: path.clone(),
                })
                .map(Some)
                .map_err(|e| e.at(|| path))
            }
            None => Ok(None),
        }
    }
}

/// An optional parameter of an update: not given, given as "" (clear it), or set.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<T> {
    #[default]
    Absent,
    Clear,
    Set(T),
}

impl<T> Field<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }

    /// The new value of an optional field: `None` keeps `current`.
    pub fn apply(self, current: &mut Option<T>) {
        match self {
            Field::Absent => {}
            Field::Clear => *current = None,
            Field::Set(v) => *current = Some(v),
        }
    }

    pub fn into_option(self) -> Option<T> {
        match self {
            Field::Set(v) => Some(v),
            _ => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for FieldVisitor<T> {
            type Value = Field<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or an empty string")
            }
            fn visit_none<E: de::Error>(self) -> Result<Field<T>, E> {
                Ok(Field::Clear)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field<T>, E> {
                Ok(Field::Clear)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Field<T>, D::Error> {
                T::deserialize(d).map(Field::Set)
            }
        }
        deserializer.deserialize_option(FieldVisitor(std::marker::PhantomData))
    }
}

/// A value, or `""` to clear it: Stripe's spec says so with `anyOf`. A string
/// already takes `""`, so a `Field<String>` is described as a plain string.
impl<T: JsonSchema> JsonSchema for Field<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("Clearable_{}", T::schema_name()).into()
    }

    fn schema_id() -> Cow<'static, str> {
        format!("Field<{}>", T::schema_id()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let value = generator.subschema_for::<T>();
        if value.get("type").and_then(Value::as_str) == Some("string")
            && value.get("enum").is_none()
        {
            return value;
        }
        json_schema!({"anyOf": [value, {"type": "string", "enum": [""]}]})
    }
}

/// `metadata` as an update gives it: `metadata=` clears every key,
/// `metadata[k]=` removes one, `metadata[k]=v` sets one.
pub type MetadataParam = Field<BTreeMap<String, Field<String>>>;
