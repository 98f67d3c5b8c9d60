//! PaymentMethods: cards (raw test numbers, tokens, `pm_card_*` ids), US bank
//! accounts and SEPA debits; create, retrieve, update, attach, detach, lists (all
//! of an account's, and a customer's), and whether a card was set up for later
//! off-session use.

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ctx::{previous_attributes, Answer, Ctx, StripeObject};
use crate::error::{ApiError, ErrorType};
use crate::ids;
use crate::network::{self, Behaviour, Decline, TestCard};
use crate::resources::common::list::{self, ListParams};
use crate::resources::common::params::{Field, MetadataParam};
use crate::resources::customer::Customer;
use crate::resources::{apply_metadata, new_metadata, Address, Metadata};

mod alias;
mod bank;
mod card;

pub use alias::{from_alias, is_alias};
pub use bank::debit_failure;
use bank::{sepa_debit_details, us_bank_account_details};
pub use bank::{
    AccountHolderType, AccountType, SepaDebitDetails, SepaDebitParam, UsBankAccountDetails,
    UsBankAccountParam, UsBankAccountUpdateParam,
};
use card::{card_details, check_expiry, civil, decline_error, full_year, preferred_network};
pub use card::{
    CardChecks, CardDetails, CardParam, CardUpdateParam, Networks, NetworksParam,
    NetworksUpdateParam, PreferredNetwork, ThreeDSecureUsage,
};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BillingDetails {
    pub address: Option<Address>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
}

/// Stripe's payment_method object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PaymentMethod {
    pub id: String,
    pub object: String,
    pub allow_redisplay: String,
    pub billing_details: BillingDetails,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<CardDetails>,
    pub created: i64,
    pub customer: Option<String>,
    pub livemode: bool,
    pub metadata: Metadata,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sepa_debit: Option<SepaDebitDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub us_bank_account: Option<UsBankAccountDetails>,
}

// Index fields. Every list query is one keyset scan over one (field, value) pair,
// so each combination of filters the list endpoints accept has an entry of its own
// (values joined with `|`, which no id, type or allow_redisplay value contains).
const BY_TYPE: &str = "type";
const BY_CUSTOMER: &str = "customer";
const BY_CUSTOMER_TYPE: &str = "customer_type";
const BY_CUSTOMER_REDISPLAY: &str = "customer_redisplay";
const BY_CUSTOMER_TYPE_REDISPLAY: &str = "customer_type_redisplay";

impl StripeObject for PaymentMethod {
    const OBJECT: &'static str = "payment_method";
    const PREFIXES: &'static [&'static str] = &["pm"];
    const EXPANDABLE: &'static [&'static str] = &[
        "billing_details",
        "billing_details.address",
        "card",
        "card.checks",
        "card.generated_from",
        "card.networks",
        "card.three_d_secure_usage",
        "card.wallet",
        "customer",
        "sepa_debit",
        "sepa_debit.generated_from",
        "us_bank_account",
        "us_bank_account.networks",
        "us_bank_account.status_details",
    ];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        let kind = &self.kind;
        let redisplay = &self.allow_redisplay;
        let mut index = vec![(BY_TYPE.to_string(), kind.clone())];
        if let Some(c) = &self.customer {
            index.push((BY_CUSTOMER.to_string(), c.clone()));
            index.push((BY_CUSTOMER_TYPE.to_string(), format!("{c}|{kind}")));
            index.push((
                BY_CUSTOMER_REDISPLAY.to_string(),
                format!("{c}|{redisplay}"),
            ));
            index.push((
                BY_CUSTOMER_TYPE_REDISPLAY.to_string(),
                format!("{c}|{kind}|{redisplay}"),
            ));
        }
        index
    }
}

impl PaymentMethod {
    /// The test card table row this card is (ordinary success for other numbers).
    pub fn test_card(&self, account: &str) -> Option<TestCard> {
        let card = self.card.as_ref()?;
        Some(network::card_for_fingerprint(
            account,
            card.fingerprint.as_deref().unwrap_or(""),
            &card.brand,
        ))
    }

    /// The results the network gives for the CVC and address this card was given
    /// with. A new card's checks read `unchecked`; attaching it (or charging it)
    /// runs them.
    pub fn verified_checks(&self, account: &str) -> Option<CardChecks> {
        let checks = self.card.as_ref()?.checks.as_ref()?;
        let test_card = self.test_card(account)?;
        let (line1, zip, cvc) = network::checks(
            &test_card,
            checks.cvc_check.is_some(),
            checks.address_line1_check.is_some(),
            checks.address_postal_code_check.is_some(),
        );
        Some(CardChecks {
            address_line1_check: line1.map(str::to_string),
            address_postal_code_check: zip.map(str::to_string),
            cvc_check: cvc.map(str::to_string),
        })
    }

    fn encode(&self) -> Result<Value, ApiError> {
        serde_json::to_value(self)
            .map_err(|e| ApiError::internal("payment method does not encode", e))
    }
}

/// payground's private note that a PaymentMethod was set up for future use (by a
/// PaymentIntent with `setup_future_usage` or a SetupIntent). Stripe keeps this
/// state without showing it; it decides later off-session outcomes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SetupRecord {
    pub id: String,
    pub object: String,
    pub payment_method: String,
    pub usage: String,
    pub created: i64,
}

impl StripeObject for SetupRecord {
    const OBJECT: &'static str = "payground.setup";
    const PREFIXES: &'static [&'static str] = &["pgsu"];
    const EXPANDABLE: &'static [&'static str] = &[];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
}

fn setup_record_id(pm: &str) -> String {
    format!("pgsu_{pm}")
}

pub async fn is_set_up(ctx: &mut Ctx, pm: &str) -> Result<bool, ApiError> {
    // A card created by this very request cannot have been set up before: no lookup.
    if ctx.is_new(pm) {
        return Ok(ctx.is_pending(&setup_record_id(pm)));
    }
    Ok(ctx
        .find::<SetupRecord>(&setup_record_id(pm))
        .await?
        .is_some())
}

pub async fn mark_set_up(ctx: &mut Ctx, pm: &str, usage: &str) -> Result<(), ApiError> {
    if is_set_up(ctx, pm).await? {
        return Ok(());
    }
    let record = SetupRecord {
        id: setup_record_id(pm),
        object: SetupRecord::OBJECT.into(),
        payment_method: pm.to_string(),
        usage: usage.to_string(),
        created: ctx.now,
    };
    ctx.save(&record)?;
    Ok(())
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BillingDetailsParam {
    pub address: Field<Address>,
    pub email: Field<String>,
    pub name: Field<String>,
    pub phone: Field<String>,
}

impl BillingDetailsParam {
    pub fn apply(self, details: &mut BillingDetails) {
        self.address.apply(&mut details.address);
        self.email.apply(&mut details.email);
        self.name.apply(&mut details.name);
        self.phone.apply(&mut details.phone);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AllowRedisplay {
    Always,
    Limited,
    Unspecified,
}

impl AllowRedisplay {
    pub fn as_str(self) -> &'static str {
        match self {
            AllowRedisplay::Always => "always",
            AllowRedisplay::Limited => "limited",
            AllowRedisplay::Unspecified => "unspecified",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethodType {
    Card,
    UsBankAccount,
    SepaDebit,
}

impl PaymentMethodType {
    fn as_str(self) -> &'static str {
        match self {
            PaymentMethodType::Card => "card",
            PaymentMethodType::UsBankAccount => "us_bank_account",
            PaymentMethodType::SepaDebit => "sepa_debit",
        }
    }
}

/// `payment_method_data` of an intent, and the body of `POST /v1/payment_methods`
/// (whose `customer` and `payment_method`, for sharing with connected accounts,
/// arrive apart as [`CloneParams`]).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodData {
    #[serde(rename = "type")]
    pub kind: Option<PaymentMethodType>,
    #[serde(default)]
    pub allow_redisplay: Option<AllowRedisplay>,
    #[serde(default)]
    pub billing_details: Option<BillingDetailsParam>,
    #[serde(default)]
    pub card: Option<CardParam>,
    #[serde(default)]
    pub metadata: MetadataParam,
    #[serde(default)]
    pub us_bank_account: Option<UsBankAccountParam>,
    #[serde(default)]
    pub sepa_debit: Option<SepaDebitParam>,
    #[serde(default)]
    pub radar_options: Option<Value>,
}

/// `POST /v1/payment_methods` with `customer` and `payment_method`: Stripe's way of
/// copying a customer's PaymentMethod onto a connected account.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CloneParams {
    pub customer: Option<String>,
    pub payment_method: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachParams {
    pub customer: String,
}

/// The `type` values Stripe's PaymentMethod lists accept (API 2024-04-10).
/// payground creates only some of these types, but filtering by any of them is
/// valid and simply finds nothing.
pub const LISTABLE_TYPES: &[&str] = &[
    "acss_debit",
    "affirm",
    "afterpay_clearpay",
    "alipay",
    "amazon_pay",
    "au_becs_debit",
    "bacs_debit",
    "bancontact",
    "blik",
    "boleto",
    "card",
    "cashapp",
    "customer_balance",
    "eps",
    "fpx",
    "giropay",
    "grabpay",
    "ideal",
    "klarna",
    "konbini",
    "link",
    "mobilepay",
    "oxxo",
    "p24",
    "paynow",
    "paypal",
    "pix",
    "promptpay",
    "revolut_pay",
    "sepa_debit",
    "sofort",
    "swish",
    "us_bank_account",
    "wechat_pay",
    "zip",
];

/// A list's `type` filter: one of [`LISTABLE_TYPES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeFilter(pub String);

impl JsonSchema for TypeFilter {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TypeFilter".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "enum": LISTABLE_TYPES})
    }
}

impl<'de> Deserialize<'de> for TypeFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        if LISTABLE_TYPES.contains(&value.as_str()) {
            Ok(TypeFilter(value))
        } else {
            Err(de::Error::unknown_variant(&value, LISTABLE_TYPES))
        }
    }
}

/// `GET /v1/payment_methods` filters.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListFilters {
    pub customer: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<TypeFilter>,
}

/// `GET /v1/customers/{id}/payment_methods` filters.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerListFilters {
    #[serde(rename = "type")]
    pub kind: Option<TypeFilter>,
    pub allow_redisplay: Option<AllowRedisplay>,
}

// ---- building ---------------------------------------------------------------

/// Where a field of nested data sits in the request: `card` under
/// `payment_method_data` is `payment_method_data[card]`, and
/// `billing_details[name]` becomes `payment_method_data[billing_details][name]`.
fn nested(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        return field.to_string();
    }
    match field.split_once('[') {
        Some((head, rest)) => format!("{prefix}[{head}][{rest}"),
        None => format!("{prefix}[{field}]"),
    }
}

/// A new PaymentMethod from `payment_method_data` (or the create call's body).
/// `prefix` is where the data sits in the request, for error `param`s.
pub fn build(ctx: &Ctx, data: PaymentMethodData, prefix: &str) -> Result<PaymentMethod, ApiError> {
    let at = |field: &str| nested(prefix, field);
    let kind = match (data.kind, &data.card) {
        (Some(k), _) => k,
        (None, Some(c)) if c.token.is_some() => PaymentMethodType::Card,
        (None, _) => return Err(ApiError::missing_param(&at("type"))),
    };
    // Details for another type than the one named are a mistake, not extra data.
    let given = [
        (PaymentMethodType::Card, data.card.is_some()),
        (
            PaymentMethodType::UsBankAccount,
            data.us_bank_account.is_some(),
        ),
        (PaymentMethodType::SepaDebit, data.sepa_debit.is_some()),
    ];
    if let Some((other, _)) = given.iter().find(|(t, present)| *present && *t != kind) {
        return Err(ApiError::invalid_request(format!(
            "You cannot provide `{}` details for a PaymentMethod of type `{}`.",
            other.as_str(),
            kind.as_str()
        ))
        .with_param(at(other.as_str())));
    }
    let mut billing = BillingDetails::default();
    if let Some(b) = data.billing_details {
        b.apply(&mut billing);
    }
    let line1 = billing.address.as_ref().is_some_and(|a| a.line1.is_some());
    let zip = billing
        .address
        .as_ref()
        .is_some_and(|a| a.postal_code.is_some());
    let mut pm = PaymentMethod {
        id: ids::new_id("pm"),
        object: "payment_method".into(),
        allow_redisplay: data
            .allow_redisplay
            .unwrap_or(AllowRedisplay::Unspecified)
            .as_str()
            .into(),
        billing_details: billing,
        card: None,
        created: ctx.now,
        customer: None,
        livemode: false,
        metadata: new_metadata(data.metadata)?,
        kind: kind.as_str().into(),
        sepa_debit: None,
        us_bank_account: None,
    };
    match kind {
        PaymentMethodType::Card => {
            let card = data
                .card
                .ok_or_else(|| ApiError::missing_param(&at("card")))?;
            pm.card = Some(card_details(ctx, &card, &at("card"), line1, zip)?);
        }
        PaymentMethodType::UsBankAccount => {
            let bank = data
                .us_bank_account
                .ok_or_else(|| ApiError::missing_param(&at("us_bank_account")))?;
            // ACH debits need the account holder's name.
            if pm.billing_details.name.is_none() {
                return Err(ApiError::missing_param(&at("billing_details[name]")));
            }
            pm.us_bank_account = Some(us_bank_account_details(ctx, &bank, &at("us_bank_account"))?);
        }
        PaymentMethodType::SepaDebit => {
            let sepa = data
                .sepa_debit
                .ok_or_else(|| ApiError::missing_param(&at("sepa_debit")))?;
            // SEPA mandates need the account holder's name and email.
            for field in ["name", "email"] {
                let present = match field {
                    "name" => pm.billing_details.name.is_some(),
                    _ => pm.billing_details.email.is_some(),
                };
                if !present {
                    return Err(ApiError::missing_param(&at(&format!(
                        "billing_details[{field}]"
                    ))));
                }
            }
            pm.sepa_debit = Some(sepa_debit_details(ctx, &sepa, &at("sepa_debit"))?);
        }
    }
    Ok(pm)
}

/// An id a parameter names that does not exist: Stripe answers 400 for a missing
/// object a parameter refers to (404 is for the object a URL names).
pub fn no_such(id: &str, param: &str) -> ApiError {
    ApiError::invalid_request(format!("No such PaymentMethod: '{id}'"))
        .with_code("resource_missing")
        .with_param(param)
}

/// The PaymentMethod a URL names, or Stripe's 404.
async fn fetch(ctx: &mut Ctx, id: &str) -> Result<PaymentMethod, ApiError> {
    ctx.find::<PaymentMethod>(id)
        .await?
        .ok_or_else(|| ApiError::no_such("PaymentMethod", id))
}

/// An existing PaymentMethod, or a fresh one (saved in this request) for a
/// `pm_card_*` id.
async fn existing_or_alias(ctx: &mut Ctx, id: &str) -> Result<Option<PaymentMethod>, ApiError> {
    // An alias (`pm_card_visa`) never names a stored object (generated ids have no
    // `_` after their prefix), so it is resolved without a store read: one query
    // less per payment, which on PostgreSQL is a round trip.
    if let Some(pm) = from_alias(ctx, id) {
        ctx.save(&pm)?;
        return Ok(Some(pm));
    }
    ctx.find::<PaymentMethod>(id).await
}

/// The PaymentMethod an intent names: an existing one, or a fresh one for a
/// `pm_card_*` id (saved in this request).
pub async fn resolve(ctx: &mut Ctx, id: &str, param: &str) -> Result<PaymentMethod, ApiError> {
    existing_or_alias(ctx, id)
        .await?
        .ok_or_else(|| no_such(id, param))
}

/// The PaymentMethod an id names without creating anything: an existing one
/// (`false`), or for a `pm_card_*` id the fresh one it stands for, not saved
/// (`true`). A ConfirmationToken holds such a method until it is used.
pub async fn resolve_without_saving(
    ctx: &mut Ctx,
    id: &str,
    param: &str,
) -> Result<(PaymentMethod, bool), ApiError> {
    if let Some(pm) = from_alias(ctx, id) {
        return Ok((pm, true));
    }
    match ctx.find::<PaymentMethod>(id).await? {
        Some(pm) if !pm.is_deleted() => Ok((pm, false)),
        _ => Err(no_such(id, param)),
    }
}

/// Whether `pm` may be attached to `customer`: not someone else's, and a card the
/// network verifies. Stripe checks a card before saving it, so numbers that decline
/// fail to attach, with their decline; 4000000000000341 (`ChargeCustomerFail`)
/// exists to attach and then fail every charge. Writes nothing.
pub fn check_attachable(
    ctx: &Ctx,
    pm: &PaymentMethod,
    customer: &str,
    param: &str,
) -> Result<(), ApiError> {
    if pm.customer.as_deref().is_some_and(|c| c != customer) {
        return Err(ApiError::invalid_request(
            "The payment method you provided has already been attached to a customer.",
        )
        .with_code("payment_method_unexpected_state")
        .with_param(param));
    }
    if let Some(TestCard {
        behaviour: Behaviour::Declines(d),
        ..
    }) = pm.test_card(ctx.account_id())
    {
        return Err(decline_error(d));
    }
    Ok(())
}

fn no_such_customer(id: &str) -> ApiError {
    ApiError::invalid_request(format!("No such customer: '{id}'"))
        .with_code("resource_missing")
        .with_param("customer")
}

/// Attaches to a customer (a no-op for the customer it already has), running the
/// card's CVC and address checks, emitting `payment_method.attached`.
pub async fn attach(
    ctx: &mut Ctx,
    pm: &mut PaymentMethod,
    customer: &str,
    param: &str,
) -> Result<Value, ApiError> {
    if pm.customer.as_deref() == Some(customer) {
        return pm.encode();
    }
    if customer.is_empty() {
        return Err(ApiError::invalid_param(
            "customer",
            "parameter_invalid_empty",
            "You passed an empty string for 'customer'. We assume empty values are an attempt to unset a parameter; however 'customer' cannot be unset. You should remove 'customer' from your request or supply a non-empty value.",
        ));
    }
    match ctx.find::<Customer>(customer).await? {
        Some(c) if !c.is_deleted() => {}
        _ => return Err(no_such_customer(customer)),
    }
    check_attachable(ctx, pm, customer, param)?;
    if let Some(checks) = pm.verified_checks(ctx.account_id()) {
        if let Some(card) = pm.card.as_mut() {
            card.checks = Some(checks);
        }
    }
    pm.customer = Some(customer.to_string());
    let value = ctx.save(&*pm)?;
    ctx.emit("payment_method.attached", &value, None);
    Ok(value.into())
}

// ---- operations -------------------------------------------------------------

/// `POST /v1/payment_methods`. `connected_account` says whether the request came
/// with a `Stripe-Account` header.
pub async fn create(
    ctx: &mut Ctx,
    data: PaymentMethodData,
    clone: &CloneParams,
    connected_account: bool,
) -> Result<Value, ApiError> {
    let clone_param = match (&clone.payment_method, &clone.customer) {
        (Some(_), _) => Some("payment_method"),
        (None, Some(_)) => Some("customer"),
        (None, None) => None,
    };
    if let Some(param) = clone_param {
        let message = if connected_account {
            "Sharing a PaymentMethod with a connected account (`customer` and `payment_method` with a \
             `Stripe-Account` header) is not supported: payground does not model connected accounts."
        } else {
            "`customer` and `payment_method` share an existing PaymentMethod with a connected account and \
             are only accepted with a `Stripe-Account` header. To save a new PaymentMethod for a customer, \
             create it without them and attach it (POST /v1/payment_methods/{id}/attach)."
        };
        return Err(ApiError::invalid_request(message).with_param(param));
    }
    let pm = build(ctx, data, "")?;
    ctx.save(&pm).map(Value::from)
}

/// `GET /v1/payment_methods/{id}`; a `pm_card_*` id makes a fresh PaymentMethod.
pub async fn retrieve(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    existing_or_alias(ctx, id)
        .await?
        .ok_or_else(|| ApiError::no_such("PaymentMethod", id))?
        .encode()
}

/// `POST /v1/payment_methods/{id}/attach`.
pub async fn attach_by_id(
    ctx: &mut Ctx,
    id: &str,
    params: &AttachParams,
) -> Result<Value, ApiError> {
    let mut pm = existing_or_alias(ctx, id)
        .await?
        .ok_or_else(|| ApiError::no_such("PaymentMethod", id))?;
    attach(ctx, &mut pm, &params.customer, "payment_method").await
}

/// `POST /v1/payment_methods/{id}/detach`: emits `payment_method.detached` (with the
/// customer it had in `previous_attributes`) and clears the customer's
/// `invoice_settings.default_payment_method` if it named this one.
pub async fn detach(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    let mut pm = fetch(ctx, id).await?;
    let Some(customer_id) = pm.customer.take() else {
        return Err(ApiError::invalid_request(
            "The payment method you provided is not attached to a customer so detachment is impossible.",
        )
        .with_code("payment_method_unexpected_state"));
    };
    let value = ctx.save(&pm)?;
    ctx.emit(
        "payment_method.detached",
        &value,
        Some(json!({ "customer": customer_id })),
    );
    if let Some(mut customer) = ctx.find::<Customer>(&customer_id).await? {
        let is_default = customer.invoice_settings.default_payment_method.as_deref() == Some(id);
        if is_default && !customer.is_deleted() {
            let before = serde_json::to_value(&customer)
                .map_err(|e| ApiError::internal("customer does not encode", e))?;
            customer.invoice_settings.default_payment_method = None;
            let after = ctx.save(&customer)?;
            if let Some(previous) = previous_attributes(&before, &after) {
                ctx.emit("customer.updated", &after, Some(previous));
            }
        }
    }
    Ok(value.into())
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateParams {
    pub allow_redisplay: Option<AllowRedisplay>,
    pub billing_details: Option<BillingDetailsParam>,
    pub card: Option<CardUpdateParam>,
    pub metadata: MetadataParam,
    pub us_bank_account: Option<UsBankAccountUpdateParam>,
    /// Accepted for Link PaymentMethods; there is nothing in it to update.
    pub link: Option<Value>,
}

fn wrong_type(param: &str, kind: &str) -> ApiError {
    ApiError::invalid_request(format!(
        "`{param}` cannot be updated on a PaymentMethod of type `{kind}`."
    ))
    .with_param(param)
}

/// `POST /v1/payment_methods/{id}`: only a PaymentMethod attached to a customer
/// can be updated; emits `payment_method.updated` when something changed.
pub async fn update(ctx: &mut Ctx, id: &str, p: UpdateParams) -> Result<Value, ApiError> {
    let mut pm = fetch(ctx, id).await?;
    if pm.customer.is_none() {
        return Err(ApiError::invalid_request(
            "You must save this PaymentMethod to a customer before you can update it.",
        ));
    }
    let before = pm.encode()?;
    if let Some(a) = p.allow_redisplay {
        pm.allow_redisplay = a.as_str().into();
    }
    if let Some(b) = p.billing_details {
        b.apply(&mut pm.billing_details);
    }
    if let Some(c) = p.card {
        let kind = pm.kind.clone();
        let card = pm.card.as_mut().ok_or_else(|| wrong_type("card", &kind))?;
        let month = c.exp_month.unwrap_or(card.exp_month);
        let year = c.exp_year.map(full_year).unwrap_or(card.exp_year);
        if c.exp_month.is_some() || c.exp_year.is_some() {
            check_expiry(ctx, month, year, "card[exp_month]", "card[exp_year]")?;
        }
        card.exp_month = month;
        card.exp_year = year;
        if let Some(networks) = c.networks {
            let current = card.networks.get_or_insert_with(|| Networks {
                available: vec![card.brand.clone()],
                preferred: None,
            });
            match networks.preferred {
                Field::Set(wanted) => {
                    current.preferred = Some(preferred_network(&current.available, wanted))
                }
                Field::Clear => current.preferred = None,
                Field::Absent => {}
            }
        }
    }
    if let Some(u) = p.us_bank_account {
        let kind = pm.kind.clone();
        let bank = pm
            .us_bank_account
            .as_mut()
            .ok_or_else(|| wrong_type("us_bank_account", &kind))?;
        if let Some(t) = u.account_holder_type {
            bank.account_holder_type = Some(t.as_str().into());
        }
        if let Some(t) = u.account_type {
            bank.account_type = Some(t.as_str().into());
        }
    }
    apply_metadata(&mut pm.metadata, p.metadata)?;
    let after = ctx.save(&pm)?;
    if let Some(previous) = previous_attributes(&before, &after) {
        ctx.emit("payment_method.updated", &after, Some(previous));
    }
    Ok(after.into())
}

/// The index entry that answers a list query, so that every list stays one keyset
/// scan (`limit` and `has_more` exact) however it is filtered.
fn list_filter(
    customer: Option<&str>,
    kind: Option<&str>,
    redisplay: Option<&str>,
) -> Option<(String, String)> {
    let entry = |field: &str, value: String| Some((field.to_string(), value));
    match (customer, kind, redisplay) {
        (Some(c), Some(t), Some(r)) => entry(BY_CUSTOMER_TYPE_REDISPLAY, format!("{c}|{t}|{r}")),
        (Some(c), Some(t), None) => entry(BY_CUSTOMER_TYPE, format!("{c}|{t}")),
        (Some(c), None, Some(r)) => entry(BY_CUSTOMER_REDISPLAY, format!("{c}|{r}")),
        (Some(c), None, None) => entry(BY_CUSTOMER, c.to_string()),
        // Only customer lists filter by allow_redisplay, and they always name one.
        (None, Some(t), _) => entry(BY_TYPE, t.to_string()),
        (None, None, _) => None,
    }
}

/// `GET /v1/payment_methods`: the account's PaymentMethods, optionally those of
/// one customer and of one type.
pub async fn list(
    ctx: &mut Ctx,
    filters: &ListFilters,
    params: &ListParams,
) -> Result<Answer, ApiError> {
    if let Some(customer) = &filters.customer {
        match ctx.find::<Customer>(customer).await? {
            Some(c) if !c.is_deleted() => {}
            _ => return Err(no_such_customer(customer)),
        }
    }
    let filter = list_filter(
        filters.customer.as_deref(),
        filters.kind.as_ref().map(|t| t.0.as_str()),
        None,
    );
    list::page(
        ctx,
        PaymentMethod::OBJECT,
        filter,
        params,
        "/v1/payment_methods",
    )
    .await
}

/// `GET /v1/customers/{id}/payment_methods`.
pub async fn list_for_customer(
    ctx: &mut Ctx,
    customer: &str,
    filters: &CustomerListFilters,
    params: &ListParams,
) -> Result<Answer, ApiError> {
    let customer: Customer = ctx.fetch(customer).await?;
    let filter = list_filter(
        Some(&customer.id),
        filters.kind.as_ref().map(|t| t.0.as_str()),
        filters.allow_redisplay.map(AllowRedisplay::as_str),
    );
    let url = format!("/v1/customers/{}/payment_methods", customer.id);
    list::page(ctx, PaymentMethod::OBJECT, filter, params, &url).await
}

/// The newest of a customer's PaymentMethods with one `allow_redisplay` value, as
/// stored (what a CustomerSession lets the Payment Element show).
pub async fn saved_for_redisplay(
    ctx: &mut Ctx,
    customer: &str,
    allow_redisplay: &str,
    page: &ListParams,
) -> Result<Vec<crate::store::StoredObject>, ApiError> {
    let query = crate::store::ListQuery {
        kind: PaymentMethod::OBJECT.to_string(),
        filter: list_filter(Some(customer), None, Some(allow_redisplay)),
        limit: page.limit,
        ..Default::default()
    };
    ctx.list_page(query, None, None).await
}

/// `GET /v1/customers/{id}/payment_methods/{pm}`: 404 unless it is that customer's.
pub async fn retrieve_for_customer(
    ctx: &mut Ctx,
    customer: &str,
    id: &str,
) -> Result<Value, ApiError> {
    let customer: Customer = ctx.fetch(customer).await?;
    match ctx.find::<PaymentMethod>(id).await? {
        Some(pm) if pm.customer.as_deref() == Some(customer.id.as_str()) => pm.encode(),
        _ => Err(ApiError::no_such("PaymentMethod", id).with_param("payment_method")),
    }
}

#[cfg(test)]
mod tests {
    use super::bank::{iban_checksum_ok, routing_checksum_ok};
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(civil(0), (1970, 1));
        assert_eq!(civil(1_796_151_406), (2026, 12));
        assert_eq!(civil(951_782_400), (2000, 2)); // 2000-02-29
    }

    #[test]
    fn ibans() {
        assert!(iban_checksum_ok("DE89370400440532013000"));
        assert!(!iban_checksum_ok("DE89370400440532013001"));
        assert!(iban_checksum_ok("DE62370400440532013001"));
        assert!(iban_checksum_ok("GB82WEST12345698765432"));
        assert!(!iban_checksum_ok("DE€9370400440532013000"));
    }

    #[test]
    fn routing_numbers() {
        assert!(routing_checksum_ok("110000000"));
        assert!(!routing_checksum_ok("110000001"));
        assert!(!routing_checksum_ok("11000000"));
    }

    #[test]
    fn nested_params() {
        assert_eq!(nested("", "billing_details[name]"), "billing_details[name]");
        assert_eq!(
            nested("payment_method_data", "card"),
            "payment_method_data[card]"
        );
        assert_eq!(
            nested("payment_method_data", "billing_details[name]"),
            "payment_method_data[billing_details][name]"
        );
    }

    #[test]
    fn list_filters_pick_one_index_entry() {
        assert_eq!(list_filter(None, None, None), None);
        assert_eq!(
            list_filter(Some("cus_1"), Some("card"), Some("always")),
            Some(("customer_type_redisplay".into(), "cus_1|card|always".into()))
        );
        assert_eq!(
            list_filter(Some("cus_1"), None, Some("limited")),
            Some(("customer_redisplay".into(), "cus_1|limited".into()))
        );
        assert_eq!(
            list_filter(None, Some("sepa_debit"), None),
            Some(("type".into(), "sepa_debit".into()))
        );
    }

    #[test]
    fn aliases_are_pm_card_ids() {
        assert!(is_alias("pm_card_visa"));
        assert!(!is_alias("tok_visa"));
        assert!(!is_alias("pm_card_nonsense"));
    }
}
