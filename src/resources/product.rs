//! Products: what an account sells. Create (with `default_price_data` for its
//! first Price), retrieve, update (its `default_price` among its own Prices),
//! delete (only while it has no Prices, as Stripe allows), list, search; and the
//! products Prices make from `product_data`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ctx::{previous_attributes, Answer, Ctx, Saved, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::common::list::{self, ListParams};
use crate::resources::common::params::{Field, MetadataParam};
use crate::resources::price::{
    self, catalogue_index, check_len, exact, flag, At, DefaultPriceDataParam, LISTED,
};
use crate::resources::registry::{Fixture, Step};
use crate::resources::search::{FieldKind, SearchField, SearchParams};
use crate::resources::webhook_endpoint::check_url;
use crate::resources::{apply_metadata, Metadata};

/// Stripe's product object (API version 2024-04-10).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Product {
    pub id: String,
    pub object: String,
    pub active: bool,
    pub created: i64,
    pub default_price: Option<String>,
    pub description: Option<String>,
    pub images: Vec<String>,
    pub livemode: bool,
    pub marketing_features: Vec<MarketingFeature>,
    pub metadata: Metadata,
    pub name: String,
    pub package_dimensions: Option<PackageDimensions>,
    pub shippable: Option<bool>,
    pub statement_descriptor: Option<String>,
    pub tax_code: Option<String>,
    pub unit_label: Option<String>,
    pub updated: i64,
    pub url: Option<String>,
    /// Made inline by Checkout (`product_data`): as [`price::Price::inline`].
    #[serde(skip)]
    pub inline: bool,
    /// Only on deleted products, which answer 404 and are rendered as
    /// `{id, object, deleted: true}` when deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MarketingFeature {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PackageDimensions {
    pub height: f64,
    pub length: f64,
    pub weight: f64,
    pub width: f64,
}

const BY_ID: &str = "id";
const BY_ACTIVE: &str = "active";
const BY_SHIPPABLE: &str = "shippable";
const BY_URL: &str = "url";

impl StripeObject for Product {
    const OBJECT: &'static str = "product";
    const PREFIXES: &'static [&'static str] = &["prod"];
    const EXPANDABLE: &'static [&'static str] = &[
        "default_price",
        "marketing_features",
        "package_dimensions",
        "tax_code",
    ];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        catalogue_index(
            self.inline,
            [
                (BY_ID, Some(self.id.clone())),
                (BY_ACTIVE, Some(flag(self.active))),
                (BY_SHIPPABLE, self.shippable.map(flag)),
                (BY_URL, self.url.clone()),
            ],
        )
    }
    fn is_deleted(&self) -> bool {
        self.deleted == Some(true)
    }
}

// ---- params --------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MarketingFeatureParam {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageDimensionsParam {
    pub height: f64,
    pub length: f64,
    pub weight: f64,
    pub width: f64,
}

/// What create and update share; `""` clears a field on update.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductParams {
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub description: Field<String>,
    #[serde(default)]
    pub images: Field<Vec<String>>,
    #[serde(default)]
    pub marketing_features: Field<Vec<MarketingFeatureParam>>,
    #[serde(default)]
    pub metadata: MetadataParam,
    #[serde(default)]
    pub name: Field<String>,
    #[serde(default)]
    pub package_dimensions: Field<PackageDimensionsParam>,
    #[serde(default)]
    pub shippable: Option<bool>,
    #[serde(default)]
    pub statement_descriptor: Field<String>,
    #[serde(default)]
    pub tax_code: Field<String>,
    #[serde(default)]
    pub unit_label: Field<String>,
    #[serde(default)]
    pub url: Field<String>,
}

/// What only create takes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductCreateParams {
    #[serde(default)]
    pub default_price_data: Option<DefaultPriceDataParam>,
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
}

/// What only update takes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdateParams {
    /// One of the product's own active Prices, or `""` for none.
    #[serde(default)]
    pub default_price: Field<String>,
}

/// `product_data` of `POST /v1/prices`: a new product for the new Price.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceProductData {
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub metadata: MetadataParam,
    pub name: String,
    #[serde(default)]
    pub statement_descriptor: Option<String>,
    #[serde(default)]
    pub tax_code: Option<String>,
    #[serde(default)]
    pub unit_label: Option<String>,
}

/// Checkout's `line_items[][price_data][product_data]`: the product made inline
/// for the one purchase.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineProductData {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub images: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: MetadataParam,
    pub name: String,
    #[serde(default)]
    pub tax_code: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductListFilters {
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    pub shippable: Option<bool>,
    #[serde(default)]
    pub url: Option<String>,
}

/// Fields Stripe's product search supports.
pub const SEARCH_FIELDS: &[SearchField] = &[
    SearchField::top("active", FieldKind::Token),
    SearchField::top("created", FieldKind::Number),
    SearchField::top("description", FieldKind::Text),
    SearchField::top("name", FieldKind::Text),
    SearchField::top("shippable", FieldKind::Token),
    SearchField::top("url", FieldKind::Text),
];

// ---- rules ---------------------------------------------------------------------

const MAX_IMAGES: usize = 8;
const MAX_MARKETING_FEATURES: usize = 15;
const MAX_STATEMENT_DESCRIPTOR: usize = 22;
const MAX_UNIT_LABEL: usize = 12;

/// An optional parameter given or not, as a field of [`ProductParams`].
fn given<T>(value: Option<T>) -> Field<T> {
    value.map_or(Field::Absent, Field::Set)
}

/// Stripe's answer to `name=`: a product's name cannot be unset.
fn empty_name() -> ApiError {
    ApiError::invalid_param(
        "name",
        "parameter_invalid_empty",
        "You passed an empty string for 'name'. We assume empty values are an attempt to unset a \
         parameter; however 'name' cannot be unset. You should remove 'name' from your request or \
         supply a non-empty value.",
    )
}

/// payground makes every id itself: ids are unique across its accounts.
fn refuse_id(param: &str) -> ApiError {
    ApiError::invalid_request(
        "payground makes product ids itself: choosing one with `id` is not supported.",
    )
    .with_param(param)
}

fn check_statement_descriptor(text: &str) -> Result<(), ApiError> {
    let param = "statement_descriptor";
    check_len(param, text, MAX_STATEMENT_DESCRIPTOR)?;
    if text.contains(['<', '>', '\\', '"', '\'']) {
        return Err(ApiError::invalid_param(
            param,
            "parameter_invalid_string",
            "The statement descriptor may not include any of these characters: < > \\ \" '",
        ));
    }
    if !text.chars().any(char::is_alphabetic) {
        return Err(ApiError::invalid_param(
            param,
            "parameter_invalid_string",
            "The statement descriptor must contain at least one letter.",
        ));
    }
    Ok(())
}

/// Stripe's tax codes are `txcd_` and eight digits; payground keeps no list of
/// which exist, so any of that form is one.
fn check_tax_code(code: &str) -> Result<(), ApiError> {
    let digits = code.strip_prefix("txcd_").unwrap_or_default();
    if digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Err(
        ApiError::invalid_request(format!("No such tax code: '{code}'"))
            .with_code("resource_missing")
            .with_param("tax_code"),
    )
}

fn check_images(images: &[String]) -> Result<(), ApiError> {
    if images.len() > MAX_IMAGES {
        return Err(ApiError::invalid_param(
            "images",
            "parameter_invalid_array",
            format!("A product may have at most {MAX_IMAGES} images."),
        ));
    }
    for (i, url) in images.iter().enumerate() {
        check_url(&format!("images[{i}]"), url)?;
    }
    Ok(())
}

fn marketing_features(
    features: Vec<MarketingFeatureParam>,
) -> Result<Vec<MarketingFeature>, ApiError> {
    if features.len() > MAX_MARKETING_FEATURES {
        return Err(ApiError::invalid_param(
            "marketing_features",
            "parameter_invalid_array",
            format!("A product may have at most {MAX_MARKETING_FEATURES} marketing features."),
        ));
    }
    features
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let param = format!("marketing_features[{i}][name]");
            if f.name.trim().is_empty() {
                return Err(ApiError::invalid_param(
                    &param,
                    "parameter_invalid_empty",
                    "A marketing feature needs a name.",
                ));
            }
            check_len(&param, &f.name, 5000)?;
            Ok(MarketingFeature { name: f.name })
        })
        .collect()
}

fn package_dimensions(d: PackageDimensionsParam) -> Result<PackageDimensions, ApiError> {
    for (name, value) in [
        ("height", d.height),
        ("length", d.length),
        ("weight", d.weight),
        ("width", d.width),
    ] {
        if value < 0.0 {
            return Err(ApiError::invalid_param(
                &format!("package_dimensions[{name}]"),
                "parameter_invalid_decimal",
                "Package dimensions must be 0 or more.",
            ));
        }
    }
    Ok(PackageDimensions {
        height: d.height,
        length: d.length,
        weight: d.weight,
        width: d.width,
    })
}

/// Checks `p` and applies it to `product`, as create, update and the products
/// of `product_data` all do; errors name the parameters as if at the top.
fn apply(product: &mut Product, p: ProductParams) -> Result<(), ApiError> {
    match p.name {
        Field::Set(name) if name.trim().is_empty() => return Err(empty_name()),
        Field::Set(name) => {
            check_len("name", &name, 5000)?;
            product.name = name;
        }
        Field::Clear => return Err(empty_name()),
        Field::Absent => {}
    }
    if let Some(active) = p.active {
        product.active = active;
    }
    if let Field::Set(d) = &p.description {
        check_len("description", d, 40000)?;
    }
    p.description.apply(&mut product.description);
    match p.images {
        Field::Set(images) => {
            check_images(&images)?;
            product.images = images;
        }
        Field::Clear => product.images.clear(),
        Field::Absent => {}
    }
    match p.marketing_features {
        Field::Set(features) => product.marketing_features = marketing_features(features)?,
        Field::Clear => product.marketing_features.clear(),
        Field::Absent => {}
    }
    apply_metadata(&mut product.metadata, p.metadata)?;
    match p.package_dimensions {
        Field::Set(d) => product.package_dimensions = Some(package_dimensions(d)?),
        Field::Clear => product.package_dimensions = None,
        Field::Absent => {}
    }
    if let Some(shippable) = p.shippable {
        product.shippable = Some(shippable);
    }
    if let Field::Set(s) = &p.statement_descriptor {
        check_statement_descriptor(s)?;
    }
    p.statement_descriptor
        .apply(&mut product.statement_descriptor);
    if let Field::Set(code) = &p.tax_code {
        check_tax_code(code)?;
    }
    p.tax_code.apply(&mut product.tax_code);
    if let Field::Set(label) = &p.unit_label {
        check_len("unit_label", label, MAX_UNIT_LABEL)?;
    }
    p.unit_label.apply(&mut product.unit_label);
    if let Field::Set(url) = &p.url {
        check_url("url", url)?;
    }
    p.url.apply(&mut product.url);
    Ok(())
}

/// A new active product, its name to be applied.
fn blank(ctx: &Ctx) -> Product {
    Product {
        id: ids::new_id("prod"),
        object: Product::OBJECT.into(),
        active: true,
        created: ctx.now,
        default_price: None,
        description: None,
        images: Vec::new(),
        livemode: false,
        marketing_features: Vec::new(),
        metadata: Metadata::new(),
        name: String::new(),
        package_dimensions: None,
        shippable: None,
        statement_descriptor: None,
        tax_code: None,
        unit_label: None,
        updated: ctx.now,
        url: None,
        inline: false,
        deleted: None,
    }
}

/// Saves a new product with its event.
fn save_new(ctx: &mut Ctx, product: &Product) -> Result<Saved, ApiError> {
    if product.inline {
        price::mark_inline(ctx, &product.id)?;
    }
    let saved = ctx.save(product)?;
    ctx.emit("product.created", &saved, None);
    Ok(saved)
}

fn encode(product: &Product) -> Result<Value, ApiError> {
    serde_json::to_value(product).map_err(|e| ApiError::internal("product does not encode", e))
}

/// A live product to be saved again, with what its JSON does not say.
async fn load(ctx: &mut Ctx, id: &str) -> Result<Product, ApiError> {
    let mut product: Product = ctx.fetch(id).await?;
    product.inline = price::is_inline(ctx, &product.id).await?;
    Ok(product)
}

/// The live product a new Price is for, named by `param`, saved again unchanged:
/// the new version makes a delete that raced with the Price run again, to
/// find the Price and refuse.
pub async fn touch(ctx: &mut Ctx, id: &str, param: &str) -> Result<Product, ApiError> {
    let product = load(ctx, id).await.map_err(|e| e.referenced_by(param))?;
    ctx.save(&product)?;
    Ok(product)
}

// ---- the operations ------------------------------------------------------------

pub async fn create(
    ctx: &mut Ctx,
    extra: &ProductCreateParams,
    p: &ProductParams,
) -> Result<Answer, ApiError> {
    if extra.id.is_some() {
        return Err(refuse_id("id"));
    }
    let mut product = blank(ctx);
    apply(
        &mut product,
        ProductParams {
            name: Field::Set(extra.name.clone()),
            ..p.clone()
        },
    )?;
    let default_price = match &extra.default_price_data {
        Some(data) => Some(price::draft_default(ctx, data, &product.id)?),
        None => None,
    };
    product.default_price = default_price.as_ref().map(|p| p.id.clone());
    let saved = save_new(ctx, &product)?;
    if let Some(price) = &default_price {
        price::save_default(ctx, price)?;
    }
    Ok(saved.into())
}

/// The product `product_data` of `POST /v1/prices` makes.
pub async fn create_for_price(ctx: &mut Ctx, data: &PriceProductData) -> Result<Product, ApiError> {
    let at = At("product_data");
    if data.id.is_some() {
        return Err(refuse_id(&at.of("id")));
    }
    let mut product = blank(ctx);
    let p = ProductParams {
        active: data.active,
        metadata: data.metadata.clone(),
        name: Field::Set(data.name.clone()),
        statement_descriptor: given(data.statement_descriptor.clone()),
        tax_code: given(data.tax_code.clone()),
        unit_label: given(data.unit_label.clone()),
        ..Default::default()
    };
    apply(&mut product, p).map_err(|e| at.wrap(e))?;
    save_new(ctx, &product)?;
    Ok(product)
}

/// The product Checkout makes inline for a purchase: inactive, and left out of
/// the account's lists and searches, as Stripe does (see
/// [`price::price_from_data`]). Errors are named under `at`.
pub async fn create_inline(
    ctx: &mut Ctx,
    data: &InlineProductData,
    at: At<'_>,
) -> Result<Product, ApiError> {
    let mut product = blank(ctx);
    product.active = false;
    product.inline = true;
    let p = ProductParams {
        description: given(data.description.clone()),
        images: given(data.images.clone()),
        metadata: data.metadata.clone(),
        name: Field::Set(data.name.clone()),
        tax_code: given(data.tax_code.clone()),
        ..Default::default()
    };
    apply(&mut product, p).map_err(|e| at.wrap(e))?;
    save_new(ctx, &product)?;
    Ok(product)
}

pub async fn retrieve(ctx: &mut Ctx, id: &str) -> Result<Answer, ApiError> {
    ctx.fetch_text::<Product>(id).await.map(Answer::Text)
}

/// Makes one of the product's own active Prices its default. The Price is saved
/// again unchanged, so that archiving it at the same moment runs again and finds
/// it the default.
async fn set_default_price(ctx: &mut Ctx, product: &mut Product, id: &str) -> Result<(), ApiError> {
    let param = "default_price";
    let price = price::touch(ctx, id, param).await?;
    if price.product != product.id {
        return Err(ApiError::invalid_request(format!(
            "The price `{}` is a price of product `{}`: a default price must be one of this product's own.",
            price.id, price.product
        ))
        .with_param(param));
    }
    if !price.active {
        return Err(ApiError::invalid_request(
            "The price specified is inactive. This field only accepts active prices.",
        )
        .with_param(param));
    }
    product.default_price = Some(price.id);
    Ok(())
}

pub async fn update(
    ctx: &mut Ctx,
    id: &str,
    extra: &ProductUpdateParams,
    p: &ProductParams,
) -> Result<Answer, ApiError> {
    let mut product = load(ctx, id).await?;
    let before = encode(&product)?;
    match &extra.default_price {
        Field::Set(price) => set_default_price(ctx, &mut product, price).await?,
        Field::Clear => product.default_price = None,
        Field::Absent => {}
    }
    apply(&mut product, p.clone())?;
    if encode(&product)? != before {
        product.updated = ctx.now;
    }
    let saved = ctx.save(&product)?;
    if let Some(previous) = previous_attributes(&before, &saved) {
        ctx.emit("product.updated", &saved, Some(previous));
    }
    Ok(saved.into())
}

pub async fn delete(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    let mut product = load(ctx, id).await?;
    if price::any_of_product(ctx, &product.id).await? {
        return Err(ApiError::invalid_request(
            "This product cannot be deleted because it has one or more user-created prices.",
        ));
    }
    let last = encode(&product)?;
    product.deleted = Some(true);
    ctx.save(&product)?;
    ctx.emit_value("product.deleted", &last, None);
    Ok(json!({ "id": product.id, "object": Product::OBJECT, "deleted": true }))
}

/// `GET /v1/products`: active and inactive unless `active` says, never the
/// inline ones, newest first.
pub async fn list(
    ctx: &mut Ctx,
    filters: &ProductListFilters,
    params: &ListParams,
) -> Result<Answer, ApiError> {
    let mut conditions = vec![exact(LISTED, [flag(true)])];
    if let Some(active) = filters.active {
        conditions.push(exact(BY_ACTIVE, [flag(active)]));
    }
    if let Some(shippable) = filters.shippable {
        conditions.push(exact(BY_SHIPPABLE, [flag(shippable)]));
    }
    if let Some(url) = &filters.url {
        conditions.push(exact(BY_URL, [url.clone()]));
    }
    if let Some(ids) = &filters.ids {
        if params.starting_after.is_some() || params.ending_before.is_some() {
            return Err(ApiError::invalid_request(
                "`ids` cannot be used with `starting_after` or `ending_before`.",
            )
            .with_param("ids"));
        }
        conditions.push(exact(BY_ID, ids.iter().cloned()));
    }
    list::page_where(ctx, Product::OBJECT, &conditions, params, "/v1/products").await
}

pub async fn search(ctx: &mut Ctx, params: &SearchParams) -> Result<Value, ApiError> {
    price::search_listed(ctx, Product::OBJECT, SEARCH_FIELDS, params).await
}

// ---- payground trigger ---------------------------------------------------------

/// A new product, saved as `{product}`.
pub const NEW_PRODUCT: Step = Step::post(
    "/v1/products",
    &[
        ("name", "T-shirt"),
        ("description", "(created by payground trigger)"),
    ],
    Some("product"),
);

pub const FIXTURES: &[Fixture] = &[Fixture {
    event: "product.created",
    steps: &[NEW_PRODUCT],
}];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_descriptors_follow_stripes_rules() {
        assert!(check_statement_descriptor("PAYGROUND TSHIRT").is_ok());
        for bad in ["12345", "<b>shirt</b>", "a very long statement descriptor"] {
            let err = check_statement_descriptor(bad).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("statement_descriptor"), "{bad}");
        }
    }

    #[test]
    fn tax_codes_have_stripes_form() {
        assert!(check_tax_code("txcd_99999999").is_ok());
        for bad in ["txcd_1", "tx_99999999", "txcd_9999999a"] {
            assert_eq!(
                check_tax_code(bad).unwrap_err().code.as_deref(),
                Some("resource_missing"),
                "{bad}"
            );
        }
    }
}
