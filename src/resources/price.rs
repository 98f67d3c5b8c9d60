//! Prices: what a product costs, once or every interval. Create (for a product,
//! or with `product_data` for a new one), retrieve, update what Stripe lets
//! change, list, search; the Prices a product's `default_price_data` and
//! Checkout's `line_items[][price_data]` make; lookup keys, held by one active
//! price at a time.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ctx::{previous_attributes, Answer, Ctx, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::common::list::{self, ListParams};
use crate::resources::common::params::{Field, MetadataParam};
use crate::resources::product::{self, InlineProductData, PriceProductData, Product};
use crate::resources::registry::{Fixture, Step};
use crate::resources::search::{self, FieldKind, SearchField, SearchParams};
use crate::resources::{apply_metadata, currency, Metadata};
use crate::store::{IndexCondition, IndexValue, ListQuery};

/// Stripe's price object (API version 2024-04-10). `tiers` and
/// `currency_options` are includable fields Stripe leaves out unless expanded;
/// payground makes neither kind of price, so they are never there.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Price {
    pub id: String,
    pub object: String,
    pub active: bool,
    pub billing_scheme: String,
    pub created: i64,
    pub currency: String,
    pub custom_unit_amount: Option<CustomUnitAmount>,
    pub livemode: bool,
    pub lookup_key: Option<String>,
    pub metadata: Metadata,
    pub nickname: Option<String>,
    pub product: String,
    pub recurring: Option<Recurring>,
    pub tax_behavior: Option<String>,
    pub tiers_mode: Option<String>,
    pub transform_quantity: Option<TransformQuantity>,
    #[serde(rename = "type")]
    pub kind: String,
    pub unit_amount: Option<i64>,
    pub unit_amount_decimal: Option<String>,
    /// Made inline by Checkout (`price_data`), which keeps it out of the
    /// account's lists and searches. Nothing in Stripe's JSON says so: it lives in
    /// the index, and [`is_inline`] tells it again when a stored Price is loaded
    /// to be saved anew.
    #[serde(skip)]
    pub inline: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Recurring {
    pub aggregate_usage: Option<String>,
    pub interval: String,
    pub interval_count: i64,
    pub meter: Option<String>,
    pub usage_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomUnitAmount {
    pub maximum: Option<i64>,
    pub minimum: Option<i64>,
    pub preset: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransformQuantity {
    pub divide_by: i64,
    pub round: String,
}

// Index fields. Price lists combine their filters (`list_where`), so each is a
// field of its own.
const BY_PRODUCT: &str = "product";
const BY_ACTIVE: &str = "active";
const BY_TYPE: &str = "type";
const BY_CURRENCY: &str = "currency";
const BY_LOOKUP_KEY: &str = "lookup_key";
const BY_INTERVAL: &str = "recurring_interval";
const BY_USAGE_TYPE: &str = "recurring_usage_type";
const BY_METER: &str = "recurring_meter";
/// Every Price and Product but the inline ones Checkout makes: what lists and
/// searches show.
pub const LISTED: &str = "listed";

/// An index value of a flag.
pub fn flag(value: bool) -> String {
    value.to_string()
}

impl StripeObject for Price {
    const OBJECT: &'static str = "price";
    const PREFIXES: &'static [&'static str] = &["price"];
    const EXPANDABLE: &'static [&'static str] = &[
        "custom_unit_amount",
        "product",
        "recurring",
        "transform_quantity",
    ];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        let recurring = |f: fn(&Recurring) -> Option<String>| self.recurring.as_ref().and_then(f);
        catalogue_index(
            self.inline,
            [
                (BY_PRODUCT, Some(self.product.clone())),
                (BY_ACTIVE, Some(flag(self.active))),
                (BY_TYPE, Some(self.kind.clone())),
                (BY_CURRENCY, Some(self.currency.clone())),
                (BY_LOOKUP_KEY, self.lookup_key.clone()),
                (BY_INTERVAL, recurring(|r| Some(r.interval.clone()))),
                (BY_USAGE_TYPE, recurring(|r| Some(r.usage_type.clone()))),
                (BY_METER, recurring(|r| r.meter.clone())),
            ],
        )
    }
}

/// The index of a Price or Product: the fields it has a value for, and
/// [`LISTED`] unless it was made inline.
pub fn catalogue_index<const N: usize>(
    inline: bool,
    fields: [(&str, Option<String>); N],
) -> Vec<(String, String)> {
    let listed = (!inline).then(|| (LISTED, Some(flag(true))));
    fields
        .into_iter()
        .chain(listed)
        .filter_map(|(field, value)| Some((field.to_string(), value?)))
        .collect()
}

/// payground's notes about Prices and Products, which Stripe keeps without
/// showing them. Two kinds, by id:
///
/// - `pgcn_inline_<id>`: the Price or Product `subject` was made inline by
///   Checkout. What keeps it out of lists is in the object's index only, and an
///   index is written from the object each time it is saved: the note says so
///   again when the object is loaded to be saved anew.
/// - `pgcn_lookup_<digest>`: the price `subject` holds (or last held)
///   `lookup_key`. Every operation that leaves an active price with a key writes
///   the note, so two that race for one key meet in a version conflict and the
///   second runs again, to find the key taken.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CatalogNote {
    pub id: String,
    pub object: String,
    pub subject: String,
    pub lookup_key: Option<String>,
    pub created: i64,
}

impl StripeObject for CatalogNote {
    const OBJECT: &'static str = "payground.catalog_note";
    const PREFIXES: &'static [&'static str] = &["pgcn"];
    const EXPANDABLE: &'static [&'static str] = &[];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
}

fn inline_note_id(of: &str) -> String {
    format!("pgcn_inline_{of}")
}

/// The id of a lookup key's note: ids are unique across accounts, and a key is
/// any text, so both go into a digest.
fn lookup_note_id(account: &str, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(account.as_bytes())
        .chain_update([0x1f])
        .chain_update(key.as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("pgcn_lookup_{hex}")
}

/// Notes that `of` was made inline.
pub fn mark_inline(ctx: &mut Ctx, of: &str) -> Result<(), ApiError> {
    ctx.save(&CatalogNote {
        id: inline_note_id(of),
        object: CatalogNote::OBJECT.into(),
        subject: of.to_string(),
        lookup_key: None,
        created: ctx.now,
    })?;
    Ok(())
}

/// Whether `of` was made inline.
pub async fn is_inline(ctx: &mut Ctx, of: &str) -> Result<bool, ApiError> {
    let note = inline_note_id(of);
    // Made by this very request: its note, if any, is pending too.
    if ctx.is_new(of) {
        return Ok(ctx.is_pending(&note));
    }
    Ok(ctx.find::<CatalogNote>(&note).await?.is_some())
}

// ---- params --------------------------------------------------------------------

/// An enum parameter's value as the wire spells it.
fn wire(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Day,
    Month,
    Week,
    Year,
}

impl Interval {
    /// Stripe's longest interval is a year, whatever it is counted in.
    fn max_count(self) -> i64 {
        match self {
            Interval::Day => 365,
            Interval::Week => 52,
            Interval::Month => 12,
            Interval::Year => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageType {
    Licensed,
    Metered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregateUsage {
    LastDuringPeriod,
    LastEver,
    Max,
    Sum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaxBehavior {
    Exclusive,
    Inclusive,
    Unspecified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingScheme {
    PerUnit,
    Tiered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TiersMode {
    Graduated,
    Volume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Round {
    Down,
    Up,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriceType {
    OneTime,
    Recurring,
}

/// `recurring` of `POST /v1/prices`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurringParam {
    #[serde(default)]
    pub aggregate_usage: Option<AggregateUsage>,
    pub interval: Interval,
    #[serde(default)]
    pub interval_count: Option<i64>,
    #[serde(default)]
    pub meter: Option<String>,
    #[serde(default)]
    pub usage_type: Option<UsageType>,
}

/// `recurring` of the Prices made inline: a product's `default_price_data`,
/// Checkout's `price_data`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineRecurringParam {
    pub interval: Interval,
    #[serde(default)]
    pub interval_count: Option<i64>,
}

impl From<InlineRecurringParam> for RecurringParam {
    fn from(p: InlineRecurringParam) -> Self {
        RecurringParam {
            aggregate_usage: None,
            interval: p.interval,
            interval_count: p.interval_count,
            meter: None,
            usage_type: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomUnitAmountParam {
    pub enabled: bool,
    #[serde(default)]
    pub maximum: Option<i64>,
    #[serde(default)]
    pub minimum: Option<i64>,
    #[serde(default)]
    pub preset: Option<i64>,
}

/// A tier's upper bound: a quantity, or `inf` for the last tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpTo {
    Inf,
    Quantity(i64),
}

impl<'de> Deserialize<'de> for UpTo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = UpTo;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a quantity or inf")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<UpTo, E> {
                Ok(UpTo::Quantity(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<UpTo, E> {
                i64::try_from(v)
                    .map(UpTo::Quantity)
                    .map_err(|_| E::custom(format!("Invalid integer: {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<UpTo, E> {
                if v == "inf" {
                    return Ok(UpTo::Inf);
                }
                v.trim()
                    .parse()
                    .map(UpTo::Quantity)
                    .map_err(|_| E::custom(format!("Invalid value {v}: must be an integer or inf")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A quantity, or `inf`, as Stripe's spec writes it.
impl JsonSchema for UpTo {
    fn schema_name() -> Cow<'static, str> {
        "UpTo".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"anyOf": [
            {"type": "string", "enum": ["inf"]},
            {"type": "integer"},
        ]})
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TierParam {
    #[serde(default)]
    pub flat_amount: Option<i64>,
    #[serde(default)]
    #[schemars(extend("format" = "decimal"))]
    pub flat_amount_decimal: Option<String>,
    #[serde(default)]
    pub unit_amount: Option<i64>,
    #[serde(default)]
    #[schemars(extend("format" = "decimal"))]
    pub unit_amount_decimal: Option<String>,
    pub up_to: UpTo,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformQuantityParam {
    pub divide_by: i64,
    pub round: Round,
}

/// What create and update share, and all that update may change.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceParams {
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    #[schemars(length(max = 200))]
    pub lookup_key: Field<String>,
    #[serde(default)]
    pub metadata: MetadataParam,
    #[serde(default)]
    pub nickname: Field<String>,
    #[serde(default)]
    pub tax_behavior: Option<TaxBehavior>,
    #[serde(default)]
    pub transfer_lookup_key: Option<bool>,
}

/// What only create takes: the amount, the schedule, the product.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceCreateParams {
    #[serde(default)]
    pub billing_scheme: Option<BillingScheme>,
    pub currency: String,
    #[serde(default)]
    pub custom_unit_amount: Option<CustomUnitAmountParam>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub product_data: Option<PriceProductData>,
    #[serde(default)]
    pub recurring: Option<RecurringParam>,
    #[serde(default)]
    pub tiers: Option<Vec<TierParam>>,
    #[serde(default)]
    pub tiers_mode: Option<TiersMode>,
    #[serde(default)]
    pub transform_quantity: Option<TransformQuantityParam>,
    #[serde(default)]
    pub unit_amount: Option<i64>,
    #[serde(default)]
    #[schemars(extend("format" = "decimal"))]
    pub unit_amount_decimal: Option<String>,
}

/// Declares a params type of a Price made inline: its `currency`, amount,
/// `recurring` and `tax_behavior`, after the fields it has of its own (in
/// Stripe's order, which is alphabetical).
macro_rules! inline_price_params {
    ($(#[$doc:meta])* $name:ident { $($(#[$attr:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            pub currency: String,
            $($(#[$attr])* pub $field: $ty,)*
            #[serde(default)]
            pub recurring: Option<InlineRecurringParam>,
            #[serde(default)]
            pub tax_behavior: Option<TaxBehavior>,
            #[serde(default)]
            pub unit_amount: Option<i64>,
            #[serde(default)]
            #[schemars(extend("format" = "decimal"))]
            pub unit_amount_decimal: Option<String>,
        }

        impl $name {
            fn terms(&self) -> Terms<'_> {
                Terms {
                    currency: &self.currency,
                    unit_amount: self.unit_amount,
                    unit_amount_decimal: self.unit_amount_decimal.as_deref(),
                    recurring: self.recurring.clone().map(RecurringParam::from),
                    tax_behavior: self.tax_behavior,
                }
            }
        }
    };
}

inline_price_params!(
    /// A product's `default_price_data`.
    DefaultPriceDataParam {}
);

inline_price_params!(
    /// Checkout's `line_items[][price_data]`: see [`price_from_data`].
    PriceDataParam {
        #[serde(default)]
        product: Option<String>,
        #[serde(default)]
        product_data: Option<InlineProductData>,
    }
);

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurringFilter {
    #[serde(default)]
    pub interval: Option<Interval>,
    #[serde(default)]
    pub meter: Option<String>,
    #[serde(default)]
    pub usage_type: Option<UsageType>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceListFilters {
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub lookup_keys: Option<Vec<String>>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub recurring: Option<RecurringFilter>,
    #[serde(default, rename = "type")]
    pub kind: Option<PriceType>,
}

/// Fields Stripe's price search supports.
pub const SEARCH_FIELDS: &[SearchField] = &[
    SearchField::top("active", FieldKind::Token),
    SearchField::top("created", FieldKind::Number),
    SearchField::top("currency", FieldKind::Token),
    SearchField::top("lookup_key", FieldKind::Text),
    SearchField::top("product", FieldKind::Token),
    SearchField::top("type", FieldKind::Token),
];

// ---- where a parameter sits ----------------------------------------------------

/// Where a request's parameters sit: at the top (`unit_amount`), or under a
/// parent (`line_items[0][price_data]`, whose `unit_amount` is
/// `line_items[0][price_data][unit_amount]`).
#[derive(Debug, Clone, Copy)]
pub struct At<'a>(pub &'a str);

impl At<'_> {
    pub const TOP: At<'static> = At("");

    /// The full name of a parameter given by its name here (`recurring[interval]`).
    pub fn of(&self, name: &str) -> String {
        if self.0.is_empty() {
            return name.to_string();
        }
        match name.split_once('[') {
            Some((head, rest)) => format!("{}[{head}][{rest}", self.0),
            None => format!("{}[{name}]", self.0),
        }
    }

    /// An error about a parameter named as if it were at the top, named from
    /// the top instead.
    pub fn wrap(&self, mut e: ApiError) -> ApiError {
        if let Some(param) = e.param.take() {
            e.param = Some(self.of(&param));
        }
        e
    }
}

/// The longest a text parameter may be.
pub fn check_len(param: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::invalid_param(
            param,
            "parameter_invalid_string",
            format!("`{param}` may be at most {max} characters long."),
        ));
    }
    Ok(())
}

// ---- making a Price ------------------------------------------------------------

/// What every way of making a Price says of it: its amount, currency, schedule.
struct Terms<'a> {
    currency: &'a str,
    unit_amount: Option<i64>,
    unit_amount_decimal: Option<&'a str>,
    recurring: Option<RecurringParam>,
    tax_behavior: Option<TaxBehavior>,
}

/// The unit amount as a Price shows it: the decimal always, the integer when
/// the amount is whole (`123.45` has none). `None` when the text is no decimal
/// of at most 12 places.
fn parse_decimal(text: &str) -> Option<(Option<i64>, String)> {
    let (whole, fraction) = match text.split_once('.') {
        Some((_, "")) => return None,
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || fraction.len() > 12 {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let fraction = fraction.trim_end_matches('0');
    let units: i64 = whole
        .parse()
        .ok()
        .filter(|n| *n <= currency::MAXIMUM_AMOUNT)?;
    if fraction.is_empty() {
        Some((Some(units), units.to_string()))
    } else if units < currency::MAXIMUM_AMOUNT {
        Some((None, format!("{whole}.{fraction}")))
    } else {
        None
    }
}

/// `unit_amount` or `unit_amount_decimal`, one of them.
fn amounts(
    unit_amount: Option<i64>,
    decimal: Option<&str>,
    at: At,
) -> Result<(Option<i64>, String), ApiError> {
    let (amount, decimal_param) = (at.of("unit_amount"), at.of("unit_amount_decimal"));
    match (unit_amount, decimal) {
        (Some(_), Some(_)) => Err(ApiError::invalid_request(format!(
            "You may only specify one of these parameters: {amount}, {decimal_param}."
        ))
        .with_param(amount)),
        (None, None) => Err(ApiError::invalid_request(
            "Prices require an `unit_amount` or `unit_amount_decimal` parameter to be set.",
        )
        .with_param(amount)),
        (Some(n), None) if n < 0 => Err(ApiError::invalid_param(
            &amount,
            "parameter_invalid_integer",
            "This value must be greater than or equal to 0.",
        )),
        (Some(n), None) if n > currency::MAXIMUM_AMOUNT => Err(ApiError::invalid_param(
            &amount,
            "parameter_invalid_integer",
            format!(
                "This value must be less than or equal to {}.",
                currency::MAXIMUM_AMOUNT
            ),
        )),
        (Some(n), None) => Ok((Some(n), n.to_string())),
        (None, Some(text)) => parse_decimal(text).ok_or_else(|| {
            ApiError::invalid_param(
                &decimal_param,
                "parameter_invalid_decimal",
                format!(
                    "Invalid decimal: {text}. Use at most 12 decimal places and at most {}.",
                    currency::MAXIMUM_AMOUNT
                ),
            )
        }),
    }
}

fn recurring(p: RecurringParam, at: At) -> Result<Recurring, ApiError> {
    let count_param = at.of("recurring[interval_count]");
    let count = p.interval_count.unwrap_or(1);
    if count < 1 {
        return Err(ApiError::invalid_param(
            &count_param,
            "parameter_invalid_integer",
            "This value must be greater than or equal to 1.",
        ));
    }
    if count > p.interval.max_count() {
        return Err(ApiError::invalid_request(
            "The maximum billing interval is one year (1 year, 12 months, 52 weeks or 365 days).",
        )
        .with_param(count_param));
    }
    if let Some(meter) = p.meter {
        return Err(
            ApiError::invalid_request(format!("No such billing meter: '{meter}'"))
                .with_code("resource_missing")
                .with_param(at.of("recurring[meter]")),
        );
    }
    let usage_type = p.usage_type.unwrap_or(UsageType::Licensed);
    let aggregate_usage = match (usage_type, p.aggregate_usage) {
        (UsageType::Metered, a) => Some(wire(a.unwrap_or(AggregateUsage::Sum))),
        (UsageType::Licensed, None) => None,
        (UsageType::Licensed, Some(_)) => {
            return Err(ApiError::invalid_request(
                "`aggregate_usage` may only be set when `usage_type` is `metered`.",
            )
            .with_param(at.of("recurring[aggregate_usage]")))
        }
    };
    Ok(Recurring {
        aggregate_usage,
        interval: wire(p.interval),
        interval_count: count,
        meter: None,
        usage_type: wire(usage_type),
    })
}

/// A new active Price of these terms, its product still to be set.
fn draft(ctx: &Ctx, terms: Terms, at: At) -> Result<Price, ApiError> {
    let currency = currency::check(terms.currency, &at.of("currency"))?;
    let (unit_amount, unit_amount_decimal) =
        amounts(terms.unit_amount, terms.unit_amount_decimal, at)?;
    let recurring = terms.recurring.map(|r| recurring(r, at)).transpose()?;
    Ok(Price {
        id: ids::new_id("price"),
        object: Price::OBJECT.into(),
        active: true,
        billing_scheme: wire(BillingScheme::PerUnit),
        created: ctx.now,
        currency,
        custom_unit_amount: None,
        livemode: false,
        lookup_key: None,
        metadata: Metadata::new(),
        nickname: None,
        product: String::new(),
        kind: wire(if recurring.is_some() {
            PriceType::Recurring
        } else {
            PriceType::OneTime
        }),
        recurring,
        tax_behavior: Some(wire(terms.tax_behavior.unwrap_or(TaxBehavior::Unspecified))),
        tiers_mode: None,
        transform_quantity: None,
        unit_amount,
        unit_amount_decimal: Some(unit_amount_decimal),
        inline: false,
    })
}

/// Saves a new Price with its event.
fn save_new(ctx: &mut Ctx, price: &Price) -> Result<Answer, ApiError> {
    if price.inline {
        mark_inline(ctx, &price.id)?;
    }
    let saved = ctx.save(price)?;
    ctx.emit("price.created", &saved, None);
    Ok(saved.into())
}

/// The kinds of price payground does not make yet, refused by the parameter
/// that asks for one rather than made wrong.
fn refuse_unmodelled(p: &PriceCreateParams) -> Result<(), ApiError> {
    let refuse = |param: &str, what: &str| {
        Err(ApiError::invalid_request(format!(
            "payground does not support {what} yet: create a per-unit price with `unit_amount` or `unit_amount_decimal`."
        ))
        .with_param(param))
    };
    if p.billing_scheme == Some(BillingScheme::Tiered) {
        return refuse("billing_scheme", "tiered prices (`billing_scheme=tiered`)");
    }
    if p.tiers.is_some() || p.tiers_mode.is_some() {
        let param = if p.tiers.is_some() {
            "tiers"
        } else {
            "tiers_mode"
        };
        return refuse(
            param,
            "tiered prices (`tiers` need `billing_scheme=tiered`)",
        );
    }
    if p.custom_unit_amount.is_some() {
        return refuse(
            "custom_unit_amount",
            "prices whose amount the customer chooses (`custom_unit_amount`)",
        );
    }
    if p.transform_quantity.is_some() {
        return refuse("transform_quantity", "`transform_quantity`");
    }
    Ok(())
}

/// The product a new Price is for.
enum ProductOf<'a, D> {
    Existing(&'a str),
    New(&'a D),
}

/// `product` or `product_data`, exactly one, under `at`.
fn one_product<'a, D>(
    product: &'a Option<String>,
    data: &'a Option<D>,
    at: At,
) -> Result<ProductOf<'a, D>, ApiError> {
    match (product, data) {
        (Some(_), Some(_)) => Err(ApiError::invalid_request(format!(
            "You may only specify one of these parameters: {}, {}.",
            at.of("product"),
            at.of("product_data")
        ))
        .with_param(at.of("product"))),
        (None, None) => Err(ApiError::invalid_request(
            "You must specify either `product` or `product_data` when creating a price.",
        )
        .with_param(at.of("product"))),
        (Some(id), None) => Ok(ProductOf::Existing(id)),
        (None, Some(data)) => Ok(ProductOf::New(data)),
    }
}

/// Applies what create and update share. `new` for a Price being created.
async fn apply(
    ctx: &mut Ctx,
    price: &mut Price,
    p: &PriceParams,
    new: bool,
) -> Result<(), ApiError> {
    let was_active = price.active;
    let old_key = price.lookup_key.clone();
    if let Some(active) = p.active {
        price.active = active;
    }
    if was_active && !price.active && !new {
        let product: Option<Product> = ctx.find(&price.product).await?;
        if product.and_then(|p| p.default_price).as_deref() == Some(price.id.as_str()) {
            return Err(ApiError::invalid_request(
                "This price cannot be archived because it is the default price of its product.",
            )
            .with_param("active"));
        }
    }
    if let Field::Set(key) = &p.lookup_key {
        check_len("lookup_key", key, 200)?;
    }
    p.lookup_key.clone().apply(&mut price.lookup_key);
    p.nickname.clone().apply(&mut price.nickname);
    apply_metadata(&mut price.metadata, p.metadata.clone())?;
    if let Some(wanted) = p.tax_behavior {
        let wanted = wire(wanted);
        let fixed = matches!(
            price.tax_behavior.as_deref(),
            Some("inclusive" | "exclusive")
        );
        if fixed && price.tax_behavior.as_deref() != Some(wanted.as_str()) {
            return Err(ApiError::invalid_request(
                "You cannot update `tax_behavior` field once it has been specified as `inclusive` or `exclusive`.",
            )
            .with_param("tax_behavior"));
        }
        price.tax_behavior = Some(wanted);
    }
    let transfer = p.transfer_lookup_key == Some(true) && matches!(p.lookup_key, Field::Set(_));
    if let Some(key) = price.lookup_key.clone() {
        let gained = new || old_key.as_deref() != Some(key.as_str()) || !was_active && price.active;
        if gained || transfer {
            take_lookup_key(ctx, price, &key, transfer).await?;
        }
    }
    Ok(())
}

/// Gives `price` the lookup key `key`: refused while another active price has
/// it, unless `transfer`, which takes it from that price (and says so in its
/// `price.updated`).
async fn take_lookup_key(
    ctx: &mut Ctx,
    price: &Price,
    key: &str,
    transfer: bool,
) -> Result<(), ApiError> {
    let id = lookup_note_id(ctx.account_id(), key);
    let note: Option<CatalogNote> = ctx.find(&id).await?;
    let holder = note
        .as_ref()
        .map(|n| n.subject.clone())
        .filter(|h| *h != price.id);
    if let Some(holder) = holder {
        let mut holder = load(ctx, &holder).await?;
        if holder.lookup_key.as_deref() == Some(key) {
            if transfer {
                let before = encode(&holder)?;
                holder.lookup_key = None;
                let saved = ctx.save(&holder)?;
                if let Some(previous) = previous_attributes(&before, &saved) {
                    ctx.emit("price.updated", &saved, Some(previous));
                }
            } else if holder.active && price.active {
                return Err(ApiError::invalid_request(format!(
                    "A price (`{}`) already uses that lookup key.",
                    holder.id
                ))
                .with_param("lookup_key"));
            }
        }
    }
    if price.active || transfer {
        ctx.save(&CatalogNote {
            id,
            object: CatalogNote::OBJECT.into(),
            subject: price.id.clone(),
            lookup_key: Some(key.to_string()),
            created: note.map_or(ctx.now, |n| n.created),
        })?;
    }
    Ok(())
}

fn encode(price: &Price) -> Result<Value, ApiError> {
    serde_json::to_value(price).map_err(|e| ApiError::internal("price does not encode", e))
}

/// A Price to be saved again, with what its JSON does not say.
async fn load(ctx: &mut Ctx, id: &str) -> Result<Price, ApiError> {
    let mut price: Price = ctx.fetch(id).await?;
    price.inline = is_inline(ctx, &price.id).await?;
    Ok(price)
}

/// A live Price named by `param`, saved again unchanged: the new version makes
/// an operation that raced with this one over the Price run again.
pub async fn touch(ctx: &mut Ctx, id: &str, param: &str) -> Result<Price, ApiError> {
    let price = load(ctx, id).await.map_err(|e| e.referenced_by(param))?;
    ctx.save(&price)?;
    Ok(price)
}

/// Whether the product has any Price, inline and archived ones too.
pub async fn any_of_product(ctx: &mut Ctx, product: &str) -> Result<bool, ApiError> {
    let query = ListQuery {
        kind: Price::OBJECT.to_string(),
        filter: Some((BY_PRODUCT.to_string(), product.to_string())),
        limit: 1,
        ..Default::default()
    };
    Ok(!ctx.list_page(query, None, None).await?.is_empty())
}

/// Stripe's 404 for a Price the path names: its parameter is `price`, as the
/// route calls it.
fn missing(id: &str) -> ApiError {
    ApiError::no_such(Price::OBJECT, id).with_param("price")
}

// ---- the operations ------------------------------------------------------------

pub async fn create(
    ctx: &mut Ctx,
    extra: &PriceCreateParams,
    p: &PriceParams,
) -> Result<Answer, ApiError> {
    refuse_unmodelled(extra)?;
    let which = one_product(&extra.product, &extra.product_data, At::TOP)?;
    let terms = Terms {
        currency: &extra.currency,
        unit_amount: extra.unit_amount,
        unit_amount_decimal: extra.unit_amount_decimal.as_deref(),
        recurring: extra.recurring.clone(),
        tax_behavior: p.tax_behavior,
    };
    let mut price = draft(ctx, terms, At::TOP)?;
    price.product = match which {
        ProductOf::Existing(id) => product::touch(ctx, id, "product").await?.id,
        ProductOf::New(data) => product::create_for_price(ctx, data).await?.id,
    };
    apply(ctx, &mut price, p, true).await?;
    save_new(ctx, &price)
}

/// The Price a product's `default_price_data` makes, not yet saved: see
/// [`save_default`].
pub fn draft_default(
    ctx: &Ctx,
    data: &DefaultPriceDataParam,
    product: &str,
) -> Result<Price, ApiError> {
    let mut price = draft(ctx, data.terms(), At("default_price_data"))?;
    price.product = product.to_string();
    Ok(price)
}

/// Saves the Price of [`draft_default`], once its product is saved.
pub fn save_default(ctx: &mut Ctx, price: &Price) -> Result<(), ApiError> {
    save_new(ctx, price).map(|_| ())
}

/// A Price made inline from Checkout's `line_items[][price_data]`, named in
/// errors under `param_prefix` (`line_items[0][price_data]`): for `product`, or
/// for a new product from `product_data`. Stripe makes such prices and products
/// for the one purchase: inactive, so they cannot be bought again, and left out
/// of the account's lists and searches (`GET /v1/prices` lists "your active
/// prices, excluding inline prices"). They are retrieved and expanded by id.
pub async fn price_from_data(
    ctx: &mut Ctx,
    data: &PriceDataParam,
    param_prefix: &str,
) -> Result<Price, ApiError> {
    let at = At(param_prefix);
    let which = one_product(&data.product, &data.product_data, at)?;
    let mut price = draft(ctx, data.terms(), at)?;
    price.product = match which {
        ProductOf::Existing(id) => product::touch(ctx, id, &at.of("product")).await?.id,
        ProductOf::New(data) => {
            let under = at.of("product_data");
            product::create_inline(ctx, data, At(&under)).await?.id
        }
    };
    price.active = false;
    price.inline = true;
    save_new(ctx, &price)?;
    Ok(price)
}

/// The Price a purchase names by id (`line_items[0][price]`): Stripe's 400
/// naming `param` when there is none, or when it is inactive (archived, or made
/// inline for another purchase).
pub async fn load_price(ctx: &mut Ctx, id: &str, param: &str) -> Result<Price, ApiError> {
    let price: Price = ctx.fetch(id).await.map_err(|e| e.referenced_by(param))?;
    if !price.active {
        return Err(ApiError::invalid_request(
            "The price specified is inactive. This field only accepts active prices.",
        )
        .with_param(param));
    }
    Ok(price)
}

pub async fn retrieve(ctx: &mut Ctx, id: &str) -> Result<Answer, ApiError> {
    ctx.fetch_text::<Price>(id)
        .await
        .map(Answer::Text)
        .map_err(|_| missing(id))
}

pub async fn update(ctx: &mut Ctx, id: &str, p: &PriceParams) -> Result<Answer, ApiError> {
    let mut price = load(ctx, id).await.map_err(|e| match e.status {
        404 => missing(id),
        _ => e,
    })?;
    let before = encode(&price)?;
    apply(ctx, &mut price, p, false).await?;
    let saved = ctx.save(&price)?;
    if let Some(previous) = previous_attributes(&before, &saved) {
        ctx.emit("price.updated", &saved, Some(previous));
    }
    Ok(saved.into())
}

/// A list condition: the object is indexed on `field` with one of `values`.
pub fn exact(field: &str, values: impl IntoIterator<Item = String>) -> IndexCondition {
    IndexCondition {
        field: field.to_string(),
        any_of: values.into_iter().map(IndexValue::Exact).collect(),
        negated: false,
    }
}

/// The most `lookup_keys` one list takes.
const MAX_LOOKUP_KEYS: usize = 10;

/// `GET /v1/prices`: the active prices unless `active=false` says otherwise,
/// never the inline ones, newest first.
pub async fn list(
    ctx: &mut Ctx,
    filters: &PriceListFilters,
    params: &ListParams,
) -> Result<Answer, ApiError> {
    let mut conditions = vec![
        exact(LISTED, [flag(true)]),
        exact(BY_ACTIVE, [flag(filters.active.unwrap_or(true))]),
    ];
    if let Some(id) = &filters.product {
        match ctx.find::<Product>(id).await? {
            Some(p) if !p.is_deleted() => {}
            _ => return Err(ApiError::no_such(Product::OBJECT, id).referenced_by("product")),
        }
        conditions.push(exact(BY_PRODUCT, [id.clone()]));
    }
    if let Some(c) = &filters.currency {
        conditions.push(exact(BY_CURRENCY, [c.to_ascii_lowercase()]));
    }
    if let Some(keys) = &filters.lookup_keys {
        if keys.len() > MAX_LOOKUP_KEYS {
            return Err(ApiError::invalid_param(
                "lookup_keys",
                "parameter_invalid_array",
                format!("You can specify up to {MAX_LOOKUP_KEYS} lookup_keys."),
            ));
        }
        conditions.push(exact(BY_LOOKUP_KEY, keys.iter().cloned()));
    }
    if let Some(kind) = filters.kind {
        conditions.push(exact(BY_TYPE, [wire(kind)]));
    }
    if let Some(r) = &filters.recurring {
        let wanted = [
            (BY_INTERVAL, r.interval.map(wire)),
            (BY_USAGE_TYPE, r.usage_type.map(wire)),
            (BY_METER, r.meter.clone()),
        ];
        for (field, value) in wanted {
            if let Some(value) = value {
                conditions.push(exact(field, [value]));
            }
        }
    }
    list::page_where(ctx, Price::OBJECT, &conditions, params, "/v1/prices").await
}

pub async fn search(ctx: &mut Ctx, params: &SearchParams) -> Result<Value, ApiError> {
    search_listed(ctx, Price::OBJECT, SEARCH_FIELDS, params).await
}

/// A search of the Prices or Products (`object`) that lists show: never the
/// inline ones.
pub async fn search_listed(
    ctx: &mut Ctx,
    object: &str,
    fields: &[SearchField],
    params: &SearchParams,
) -> Result<Value, ApiError> {
    let listed = Some((LISTED.to_string(), flag(true)));
    let url = format!("/v1/{object}s/search");
    search::run_within(ctx, object, listed, fields, params, &url).await
}

// ---- payground trigger ---------------------------------------------------------

/// A one-time price of `{product}`, saved as `{price}`.
pub const NEW_PRICE: Step = Step::post(
    "/v1/prices",
    &[
        ("product", "{product}"),
        ("unit_amount", "2000"),
        ("currency", "usd"),
        ("nickname", "(created by payground trigger)"),
    ],
    Some("price"),
);

pub const FIXTURES: &[Fixture] = &[Fixture {
    event: "price.created",
    steps: &[product::NEW_PRODUCT, NEW_PRICE],
}];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_read_as_stripe_shows_them() {
        assert_eq!(parse_decimal("1000"), Some((Some(1000), "1000".into())));
        assert_eq!(parse_decimal("0012.500"), Some((None, "12.5".into())));
        assert_eq!(parse_decimal("12.00"), Some((Some(12), "12".into())));
        assert_eq!(
            parse_decimal("0.000000000001"),
            Some((None, "0.000000000001".into()))
        );
        for bad in [
            "",
            ".5",
            "5.",
            "1.0000000000001",
            "-1",
            "1e3",
            "99999999.5",
            "100000000",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn nested_parameters_are_named_from_the_top() {
        let at = At("line_items[0][price_data]");
        assert_eq!(
            at.of("unit_amount"),
            "line_items[0][price_data][unit_amount]"
        );
        assert_eq!(
            at.of("recurring[interval]"),
            "line_items[0][price_data][recurring][interval]"
        );
        assert_eq!(At::TOP.of("recurring[interval]"), "recurring[interval]");
    }

    #[test]
    fn intervals_are_at_most_a_year() {
        let r = |interval, count| RecurringParam {
            aggregate_usage: None,
            interval,
            interval_count: Some(count),
            meter: None,
            usage_type: None,
        };
        assert!(recurring(r(Interval::Month, 12), At::TOP).is_ok());
        assert!(recurring(r(Interval::Day, 365), At::TOP).is_ok());
        for (interval, count) in [
            (Interval::Month, 13),
            (Interval::Week, 53),
            (Interval::Year, 2),
            (Interval::Day, 0),
        ] {
            let err = recurring(r(interval, count), At("default_price_data")).unwrap_err();
            assert_eq!(
                err.param.as_deref(),
                Some("default_price_data[recurring][interval_count]")
            );
        }
    }

    use std::sync::Arc;

    use crate::ctx::{KeyKind, RequestInfo};
    use crate::store::{Account, DynStore};

    /// A fresh SQLite store with one account, and the directory to remove.
    async fn store() -> (DynStore, Arc<Account>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("payground-price-{}", ids::new_id("t")));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = crate::store::open(&format!("sqlite:{}", dir.join("p.db").display()))
            .await
            .expect("store");
        let account = Account {
            id: ids::new_id("acct"),
            secret_key: format!("sk_test_{}", ids::random_string(24)),
            publishable_key: format!("pk_test_{}", ids::random_string(24)),
            clock_offset: 0,
            created: 0,
        };
        store.create_account(&account).await.expect("account");
        (store, Arc::new(account), dir)
    }

    fn ctx(store: &DynStore, account: &Arc<Account>) -> Ctx {
        let request = RequestInfo {
            request_id: String::new(),
            idempotency_key: None,
            key_kind: KeyKind::Secret,
        };
        Ctx::new(
            store.clone(),
            account.clone(),
            account.now(),
            request,
            "http://127.0.0.1:1".into(),
            Arc::default(),
        )
    }

    async fn commit(store: &DynStore, ctx: Ctx) {
        store.commit(ctx.into_batch(false)).await.expect("commit");
    }

    fn price_data(product: Option<&str>, name: Option<&str>) -> PriceDataParam {
        PriceDataParam {
            currency: "USD".into(),
            product: product.map(str::to_string),
            product_data: name.map(|name| InlineProductData {
                description: Some("Comfortable cotton".into()),
                images: None,
                metadata: Field::Absent,
                name: name.into(),
                tax_code: None,
            }),
            recurring: None,
            tax_behavior: None,
            unit_amount: Some(2000),
            unit_amount_decimal: None,
        }
    }

    fn ids_in(answer: Answer) -> Vec<String> {
        let value = answer.into_value().expect("a list");
        value["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["id"].as_str().map(str::to_string))
            .collect()
    }

    /// Checkout's inline prices and products are saved, retrievable and
    /// inactive, and no list or search shows them, before or after they are
    /// saved again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_prices_and_products_stay_out_of_lists() {
        let (store, account, dir) = store().await;
        let at = "line_items[0][price_data]";
        let mut c = ctx(&store, &account);
        let made = price_from_data(&mut c, &price_data(None, Some("T-shirt")), at)
            .await
            .expect("inline price");
        commit(&store, c).await;
        assert!(!made.active && made.inline, "{made:?}");
        assert_eq!(made.currency, "usd");
        assert_eq!(made.unit_amount, Some(2000));
        let mut c = ctx(&store, &account);
        let listed = PriceProductData {
            active: None,
            id: None,
            metadata: Field::Absent,
            name: "Listed".into(),
            statement_descriptor: None,
            tax_code: None,
            unit_label: None,
        };
        let product = product::create_for_price(&mut c, &listed)
            .await
            .expect("product");
        let listed = price_from_data(&mut c, &price_data(Some(&product.id), None), at)
            .await
            .expect("inline price of a listed product");
        commit(&store, c).await;
        // Saved again (an update of its nickname): still inline.
        let mut c = ctx(&store, &account);
        let p = PriceParams {
            nickname: Field::Set("renamed".into()),
            ..Default::default()
        };
        update(&mut c, &made.id, &p).await.expect("update");
        commit(&store, c).await;

        let mut c = ctx(&store, &account);
        let page = ListParams {
            limit: 100,
            ..Default::default()
        };
        for active in [None, Some(false), Some(true)] {
            let filters = PriceListFilters {
                active,
                ..Default::default()
            };
            let shown = ids_in(list(&mut c, &filters, &page).await.expect("list"));
            assert!(!shown.contains(&made.id), "{active:?}: {shown:?}");
            assert!(!shown.contains(&listed.id), "{active:?}: {shown:?}");
        }
        let all_products = ids_in(
            product::list(&mut c, &Default::default(), &page)
                .await
                .expect("products"),
        );
        assert_eq!(all_products, vec![product.id]);
        let query = SearchParams {
            query: "currency:'usd'".into(),
            limit: None,
            page: None,
        };
        let found = search(&mut c, &query).await.expect("search");
        assert_eq!(found["data"].as_array().map(Vec::len), Some(0), "{found}");
        // By id it is there, and it cannot be bought again.
        let got = c.fetch::<Price>(&made.id).await.expect("retrieve");
        assert_eq!(got.nickname.as_deref(), Some("renamed"));
        let err = load_price(&mut c, &made.id, "line_items[0][price]")
            .await
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.param.as_deref(), Some("line_items[0][price]"));
        let inline_product: Product = c.fetch(&made.product).await.expect("inline product");
        assert!(!inline_product.active);
        assert_eq!(inline_product.name, "T-shirt");
        drop((c, store));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn price_data_errors_are_named_under_their_prefix() {
        let (store, account, dir) = store().await;
        let at = "line_items[1][price_data]";
        let cases: Vec<(PriceDataParam, &str)> = vec![
            (
                PriceDataParam {
                    currency: "zzz".into(),
                    ..price_data(None, Some("x"))
                },
                "line_items[1][price_data][currency]",
            ),
            (
                PriceDataParam {
                    unit_amount_decimal: Some("1.5".into()),
                    ..price_data(None, Some("x"))
                },
                "line_items[1][price_data][unit_amount]",
            ),
            (price_data(None, None), "line_items[1][price_data][product]"),
            (
                price_data(Some("prod_missing"), None),
                "line_items[1][price_data][product]",
            ),
            (
                price_data(None, Some("")),
                "line_items[1][price_data][product_data][name]",
            ),
            (
                PriceDataParam {
                    recurring: Some(InlineRecurringParam {
                        interval: Interval::Week,
                        interval_count: Some(60),
                    }),
                    ..price_data(None, Some("x"))
                },
                "line_items[1][price_data][recurring][interval_count]",
            ),
        ];
        for (data, param) in cases {
            let mut c = ctx(&store, &account);
            let err = price_from_data(&mut c, &data, at).await.unwrap_err();
            assert_eq!(err.status, 400, "{param}: {err}");
            assert_eq!(err.param.as_deref(), Some(param), "{err}");
        }
        let mut c = ctx(&store, &account);
        let err = load_price(&mut c, "price_missing", "line_items[0][price]")
            .await
            .unwrap_err();
        assert_eq!(
            (err.status, err.code.as_deref()),
            (400, Some("resource_missing"))
        );
        assert_eq!(err.param.as_deref(), Some("line_items[0][price]"));
        drop((c, store));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn lookup_notes_are_per_account_and_key() {
        let a = lookup_note_id("acct_1", "gold");
        assert!(a.starts_with("pgcn_lookup_") && a.len() == 12 + 32, "{a}");
        assert_ne!(a, lookup_note_id("acct_2", "gold"));
        assert_ne!(a, lookup_note_id("acct_1", "gold2"));
    }
}
