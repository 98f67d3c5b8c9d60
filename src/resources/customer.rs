//! Customers: create, retrieve, update, delete, list, search.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ctx::{previous_attributes, Answer, Ctx, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::common::list::{self, ListParams};
use crate::resources::common::params::{Field, MetadataParam};
use crate::resources::payment_method;
use crate::resources::registry::{Fixture, Step};
use crate::resources::search::{self, FieldKind, SearchField, SearchParams};
use crate::resources::{
    apply_metadata, new_metadata, validate_email, Address, Metadata, Shipping, ShippingParam,
};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceSettings {
    pub custom_fields: Option<Vec<CustomField>>,
    pub default_payment_method: Option<String>,
    pub footer: Option<String>,
    pub rendering_options: Option<RenderingOptions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomField {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RenderingOptions {
    pub amount_tax_display: Option<String>,
}

/// Stripe's customer object (API version 2024-04-10).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Customer {
    pub id: String,
    pub object: String,
    pub address: Option<Address>,
    pub balance: i64,
    pub created: i64,
    pub currency: Option<String>,
    pub default_source: Option<String>,
    pub delinquent: bool,
    pub description: Option<String>,
    pub discount: Option<Value>,
    pub email: Option<String>,
    pub invoice_prefix: String,
    pub invoice_settings: InvoiceSettings,
    pub livemode: bool,
    pub metadata: Metadata,
    pub name: Option<String>,
    pub next_invoice_sequence: i64,
    pub phone: Option<String>,
    pub preferred_locales: Vec<String>,
    pub shipping: Option<Shipping>,
    pub tax_exempt: String,
    pub test_clock: Option<String>,
    /// Only on deleted customers, which Stripe renders as `{id, object, deleted: true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

impl StripeObject for Customer {
    const OBJECT: &'static str = "customer";
    const PREFIXES: &'static [&'static str] = &["cus"];
    const EXPANDABLE: &'static [&'static str] = &[
        "address",
        "default_source",
        "discount",
        "invoice_settings",
        "invoice_settings.custom_fields",
        "invoice_settings.default_payment_method",
        "invoice_settings.rendering_options",
        "shipping",
        "shipping.address",
        "test_clock",
    ];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        let mut index = Vec::new();
        if let Some(email) = &self.email {
            index.push(("email".to_string(), email.clone()));
        }
        if let Some(clock) = &self.test_clock {
            index.push(("test_clock".to_string(), clock.clone()));
        }
        index
    }
    fn is_deleted(&self) -> bool {
        self.deleted == Some(true)
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceSettingsParam {
    #[serde(default)]
    pub custom_fields: Field<Vec<CustomField>>,
    #[serde(default)]
    pub default_payment_method: Field<String>,
    #[serde(default)]
    pub footer: Field<String>,
    #[serde(default)]
    pub rendering_options: Field<RenderingOptionsParam>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderingOptionsParam {
    #[serde(default)]
    pub amount_tax_display: Field<AmountTaxDisplay>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AmountTaxDisplay {
    ExcludeTax,
    IncludeInclusiveTax,
}

impl AmountTaxDisplay {
    fn as_str(self) -> &'static str {
        match self {
            AmountTaxDisplay::ExcludeTax => "exclude_tax",
            AmountTaxDisplay::IncludeInclusiveTax => "include_inclusive_tax",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaxExempt {
    None,
    Exempt,
    Reverse,
}

impl TaxExempt {
    fn as_str(self) -> &'static str {
        match self {
            TaxExempt::None => "none",
            TaxExempt::Exempt => "exempt",
            TaxExempt::Reverse => "reverse",
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxParam {
    #[serde(default)]
    pub ip_address: Field<String>,
    #[serde(default)]
    pub validate_location: Option<String>,
}

/// The fields create and update share; on create `Clear` and `Absent` mean the same.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerParams {
    pub address: Field<Address>,
    pub balance: Option<i64>,
    pub cash_balance: Option<Value>,
    pub coupon: Field<String>,
    pub default_source: Field<String>,
    pub description: Field<String>,
    pub email: Field<String>,
    pub invoice_prefix: Field<String>,
    pub invoice_settings: Option<InvoiceSettingsParam>,
    pub metadata: MetadataParam,
    pub name: Field<String>,
    pub next_invoice_sequence: Option<i64>,
    pub payment_method: Option<String>,
    pub phone: Field<String>,
    pub preferred_locales: Field<Vec<String>>,
    pub promotion_code: Field<String>,
    pub shipping: Field<ShippingParam>,
    pub source: Field<String>,
    pub tax: Option<TaxParam>,
    pub tax_exempt: Field<TaxExempt>,
    pub tax_id_data: Option<Vec<Value>>,
    pub test_clock: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerListFilters {
    pub email: Option<String>,
    pub test_clock: Option<String>,
}

/// Fields Stripe's customer search supports.
pub const SEARCH_FIELDS: &[SearchField] = &[
    SearchField {
        name: "created",
        path: &["created"],
        kind: FieldKind::Number,
    },
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
    SearchField {
        name: "phone",
        path: &["phone"],
        kind: FieldKind::Text,
    },
];

fn invoice_prefix() -> String {
    ids::random_string(8).to_ascii_uppercase()
}

fn check_invoice_prefix(prefix: &str) -> Result<(), ApiError> {
    let ok = (3..=12).contains(&prefix.len())
        && prefix
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "invoice_prefix",
            "parameter_invalid_string",
            "Invoice prefix must be 3–12 uppercase letters or numbers.",
        ))
    }
}

/// References to resources payground does not model yet are refused as Stripe
/// refuses unknown ids, rather than silently ignored.
fn refuse_missing(param: &str, object: &str, id: &Field<String>) -> Result<(), ApiError> {
    match id {
        Field::Set(id) => Err(
            ApiError::invalid_request(format!("No such {object}: '{id}'"))
                .with_code("resource_missing")
                .with_param(param),
        ),
        _ => Ok(()),
    }
}

async fn check_default_payment_method(
    ctx: &mut Ctx,
    customer: &str,
    pm: &str,
) -> Result<(), ApiError> {
    let attached = match ctx.find_value(pm).await? {
        Some(v) if v.get("object").and_then(Value::as_str) == Some("payment_method") => {
            v.get("customer").and_then(Value::as_str) == Some(customer)
        }
        _ => false,
    };
    if attached {
        Ok(())
    } else {
        Err(ApiError::invalid_request(format!(
            "No such PaymentMethod: '{pm}'; the PaymentMethod must be attached to customer {customer}."
        ))
        .with_code("resource_missing")
        .with_param("invoice_settings[default_payment_method]"))
    }
}

/// Applies the shared params to a customer, as create and update both do.
/// `attaching` is the PaymentMethod create's `payment_method` attaches in the same
/// call: naming it as the default is valid although it is not attached yet.
async fn apply(
    ctx: &mut Ctx,
    customer: &mut Customer,
    p: CustomerParams,
    attaching: Option<&str>,
) -> Result<(), ApiError> {
    refuse_missing("coupon", "coupon", &p.coupon)?;
    refuse_missing("promotion_code", "promotion code", &p.promotion_code)?;
    refuse_missing("source", "source", &p.source)?;
    refuse_missing("default_source", "source", &p.default_source)?;
    if let Some(clock) = &p.test_clock {
        return Err(
            ApiError::invalid_request(format!("No such test clock: '{clock}'"))
                .with_code("resource_missing")
                .with_param("test_clock"),
        );
    }
    if let Field::Set(email) = &p.email {
        validate_email("email", email)?;
    }
    if let Field::Set(prefix) = &p.invoice_prefix {
        check_invoice_prefix(prefix)?;
    }
    p.address.apply(&mut customer.address);
    if let Some(balance) = p.balance {
        customer.balance = balance;
    }
    p.description.apply(&mut customer.description);
    p.email.apply(&mut customer.email);
    match p.invoice_prefix {
        Field::Set(prefix) => customer.invoice_prefix = prefix,
        Field::Clear => customer.invoice_prefix = invoice_prefix(),
        Field::Absent => {}
    }
    if let Some(settings) = p.invoice_settings {
        let s = &mut customer.invoice_settings;
        settings.custom_fields.apply(&mut s.custom_fields);
        if let Field::Set(pm) = &settings.default_payment_method {
            if attaching != Some(pm.as_str()) {
                check_default_payment_method(ctx, &customer.id, pm).await?;
            }
        }
        settings
            .default_payment_method
            .apply(&mut s.default_payment_method);
        settings.footer.apply(&mut s.footer);
        match settings.rendering_options {
            Field::Set(r) => {
                let mut current = s
                    .rendering_options
                    .take()
                    .and_then(|r| r.amount_tax_display);
                r.amount_tax_display
                    .map_set(|d| d.as_str().to_string())
                    .apply(&mut current);
                s.rendering_options = Some(RenderingOptions {
                    amount_tax_display: current,
                });
            }
            Field::Clear => s.rendering_options = None,
            Field::Absent => {}
        }
    }
    apply_metadata(&mut customer.metadata, p.metadata)?;
    p.name.apply(&mut customer.name);
    if let Some(n) = p.next_invoice_sequence {
        customer.next_invoice_sequence = n;
    }
    p.phone.apply(&mut customer.phone);
    match p.preferred_locales {
        Field::Set(locales) => customer.preferred_locales = locales,
        Field::Clear => customer.preferred_locales.clear(),
        Field::Absent => {}
    }
    p.shipping
        .map_set(Shipping::from)
        .apply(&mut customer.shipping);
    match p.tax_exempt {
        Field::Set(t) => customer.tax_exempt = t.as_str().to_string(),
        Field::Clear => customer.tax_exempt = "none".to_string(),
        Field::Absent => {}
    }
    Ok(())
}

impl<T> Field<T> {
    pub fn map_set<U>(self, f: impl FnOnce(T) -> U) -> Field<U> {
        match self {
            Field::Absent => Field::Absent,
            Field::Clear => Field::Clear,
            Field::Set(v) => Field::Set(f(v)),
        }
    }
}

pub async fn create(ctx: &mut Ctx, params: &CustomerParams) -> Result<Value, ApiError> {
    let p = params.clone();
    let attaching = p.payment_method.clone();
    let mut customer = Customer {
        id: ids::new_id("cus"),
        object: "customer".into(),
        address: None,
        balance: 0,
        created: ctx.now,
        currency: None,
        default_source: None,
        delinquent: false,
        description: None,
        discount: None,
        email: None,
        invoice_prefix: invoice_prefix(),
        invoice_settings: InvoiceSettings::default(),
        livemode: false,
        metadata: new_metadata(Field::Absent)?,
        name: None,
        next_invoice_sequence: 1,
        phone: None,
        preferred_locales: Vec::new(),
        shipping: None,
        tax_exempt: "none".into(),
        test_clock: None,
        deleted: None,
    };
    apply(ctx, &mut customer, p, attaching.as_deref()).await?;
    // Everything that can refuse the request runs before the customer is saved, so
    // a refused create leaves no customer behind.
    let pm = match &attaching {
        Some(id) => {
            let pm = payment_method::resolve(ctx, id, "payment_method").await?;
            payment_method::check_attachable(ctx, &pm, &customer.id, "payment_method")?;
            // `pm_card_visa` as both `payment_method` and the default means the
            // fresh PaymentMethod made for it.
            let settings = &mut customer.invoice_settings;
            if settings.default_payment_method.as_deref() == Some(id.as_str()) {
                settings.default_payment_method = Some(pm.id.clone());
            }
            Some(pm)
        }
        None => None,
    };
    let value = ctx.save(&customer)?;
    ctx.emit("customer.created", &value, None);
    if let Some(mut pm) = pm {
        payment_method::attach(ctx, &mut pm, &customer.id, "payment_method").await?;
    }
    Ok(value.into())
}

/// A deleted customer as Stripe shows it.
fn deleted_view(id: &str) -> Value {
    json!({ "id": id, "object": "customer", "deleted": true })
}

pub async fn retrieve(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    match ctx.find::<Customer>(id).await? {
        Some(c) if c.is_deleted() => Ok(deleted_view(&c.id)),
        Some(c) => {
            serde_json::to_value(c).map_err(|e| ApiError::internal("customer does not encode", e))
        }
        None => Err(ApiError::no_such("customer", id)),
    }
}

pub async fn update(ctx: &mut Ctx, id: &str, params: &CustomerParams) -> Result<Value, ApiError> {
    let p = params.clone();
    if p.payment_method.is_some() {
        return Err(ApiError::unknown_param("payment_method"));
    }
    let mut customer: Customer = ctx.fetch(id).await?;
    let before = serde_json::to_value(&customer)
        .map_err(|e| ApiError::internal("customer does not encode", e))?;
    apply(ctx, &mut customer, p, None).await?;
    let after = ctx.save(&customer)?;
    if let Some(previous) = previous_attributes(&before, &after) {
        ctx.emit("customer.updated", &after, Some(previous));
    }
    Ok(after.into())
}

pub async fn delete(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    let mut customer: Customer = ctx.fetch(id).await?;
    let last = serde_json::to_value(&customer)
        .map_err(|e| ApiError::internal("customer does not encode", e))?;
    customer.deleted = Some(true);
    ctx.save(&customer)?;
    ctx.emit_value("customer.deleted", &last, None);
    Ok(deleted_view(id))
}

pub async fn list(
    ctx: &mut Ctx,
    filters: &CustomerListFilters,
    params: &ListParams,
) -> Result<Answer, ApiError> {
    let filter = match (&filters.email, &filters.test_clock) {
        (Some(email), _) => Some(("email".to_string(), email.clone())),
        (None, Some(clock)) => Some(("test_clock".to_string(), clock.clone())),
        (None, None) => None,
    };
    list::page(ctx, Customer::OBJECT, filter, params, "/v1/customers").await
}

pub async fn search(ctx: &mut Ctx, params: &SearchParams) -> Result<Value, ApiError> {
    search::run(
        ctx,
        Customer::OBJECT,
        SEARCH_FIELDS,
        params,
        "/v1/customers/search",
    )
    .await
}

// ---- payground trigger ---------------------------------------------------------

/// A new customer, saved as `{customer}`.
pub const NEW_CUSTOMER: Step = Step::post(
    "/v1/customers",
    &[
        ("name", "Jenny Rosen"),
        ("email", "jenny.rosen@example.com"),
        ("description", "(created by payground trigger)"),
    ],
    Some("customer"),
);

pub const FIXTURES: &[Fixture] = &[
    Fixture {
        event: "customer.created",
        steps: &[NEW_CUSTOMER],
    },
    Fixture {
        event: "customer.updated",
        steps: &[
            NEW_CUSTOMER,
            Step::post(
                "/v1/customers/{customer}",
                &[("metadata[triggered]", "true")],
                None,
            ),
        ],
    },
    Fixture {
        event: "customer.deleted",
        steps: &[NEW_CUSTOMER, Step::delete("/v1/customers/{customer}")],
    },
];
