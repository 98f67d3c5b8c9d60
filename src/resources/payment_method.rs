//! PaymentMethods: cards (raw test numbers, tokens, `pm_card_*` ids), US bank
//! accounts and SEPA debits; create, retrieve, update, attach, detach, lists (all
//! of an account's, and a customer's), and whether a card was set up for later
//! off-session use.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ctx::{previous_attributes, Answer, Ctx, StripeObject};
use crate::error::{ApiError, ErrorType};
use crate::http::list::{self, ListParams};
use crate::http::params::{Field, MetadataParam};
use crate::ids;
use crate::network::{self, Behaviour, Decline, TestCard};
use crate::resources::customer::Customer;
use crate::resources::{apply_metadata, new_metadata, Address, Metadata};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BillingDetails {
    pub address: Option<Address>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardChecks {
    pub address_line1_check: Option<String>,
    pub address_postal_code_check: Option<String>,
    pub cvc_check: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Networks {
    pub available: Vec<String>,
    pub preferred: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreeDSecureUsage {
    pub supported: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardDetails {
    pub brand: String,
    pub checks: Option<CardChecks>,
    pub country: Option<String>,
    pub display_brand: Option<String>,
    pub exp_month: i64,
    pub exp_year: i64,
    pub fingerprint: Option<String>,
    pub funding: String,
    pub generated_from: Option<Value>,
    pub last4: String,
    pub networks: Option<Networks>,
    pub three_d_secure_usage: Option<ThreeDSecureUsage>,
    pub wallet: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsBankAccountDetails {
    pub account_holder_type: Option<String>,
    pub account_type: Option<String>,
    pub bank_name: Option<String>,
    pub financial_connections_account: Option<String>,
    pub fingerprint: Option<String>,
    pub last4: Option<String>,
    pub networks: Option<Value>,
    pub routing_number: Option<String>,
    pub status_details: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SepaDebitDetails {
    pub bank_code: Option<String>,
    pub branch_code: Option<String>,
    pub country: Option<String>,
    pub fingerprint: Option<String>,
    pub generated_from: Option<Value>,
    pub last4: Option<String>,
}

/// Stripe's payment_method object.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupRecord {
    pub id: String,
    pub object: String,
    pub payment_method: String,
    pub usage: String,
    pub created: i64,
}

impl StripeObject for SetupRecord {
    const OBJECT: &'static str = "payground.setup";
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

// ---- parameters -------------------------------------------------------------

/// `card[networks]`: the network a co-branded card should prefer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworksParam {
    #[serde(default)]
    pub preferred: Field<PreferredNetwork>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreferredNetwork {
    CartesBancaires,
    Mastercard,
    Visa,
}

impl PreferredNetwork {
    fn as_str(self) -> &'static str {
        match self {
            PreferredNetwork::CartesBancaires => "cartes_bancaires",
            PreferredNetwork::Mastercard => "mastercard",
            PreferredNetwork::Visa => "visa",
        }
    }
}

/// A raw card (`number`, `exp_month`, `exp_year`, `cvc`) or a test token
/// (`token=tok_visa`). Two-digit years mean this century, as Stripe reads them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardParam {
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub exp_month: Option<i64>,
    #[serde(default)]
    pub exp_year: Option<i64>,
    #[serde(default)]
    pub cvc: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub networks: Option<NetworksParam>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingDetailsParam {
    #[serde(default)]
    pub address: Field<Address>,
    #[serde(default)]
    pub email: Field<String>,
    #[serde(default)]
    pub name: Field<String>,
    #[serde(default)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountHolderType {
    Company,
    Individual,
}

impl AccountHolderType {
    fn as_str(self) -> &'static str {
        match self {
            AccountHolderType::Company => "company",
            AccountHolderType::Individual => "individual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountType {
    Checking,
    Savings,
}

impl AccountType {
    fn as_str(self) -> &'static str {
        match self {
            AccountType::Checking => "checking",
            AccountType::Savings => "savings",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsBankAccountParam {
    #[serde(default)]
    pub account_holder_type: Option<AccountHolderType>,
    #[serde(default)]
    pub account_number: Option<String>,
    #[serde(default)]
    pub account_type: Option<AccountType>,
    #[serde(default)]
    pub financial_connections_account: Option<String>,
    #[serde(default)]
    pub routing_number: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SepaDebitParam {
    pub iban: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneParams {
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub payment_method: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFilters {
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<TypeFilter>,
}

/// `GET /v1/customers/{id}/payment_methods` filters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerListFilters {
    #[serde(default, rename = "type")]
    pub kind: Option<TypeFilter>,
    #[serde(default)]
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

/// Card validation failures are card errors (402), naming the card field the way
/// Stripe's card errors do (`number`, `exp_month`, ...).
fn card_error(code: &str, message: &str, param: &str) -> ApiError {
    ApiError::new(402, ErrorType::CardError, message)
        .with_code(code)
        .with_param(param)
}

/// A decline from the card network as Stripe reports it.
fn decline_error(d: &Decline) -> ApiError {
    let mut e = ApiError::new(402, ErrorType::CardError, d.message).with_code(d.code);
    e.decline_code = d.decline_code.map(str::to_string);
    match d.param {
        Some(param) => e.with_param(param),
        None => e,
    }
}

/// `display_brand` spells some brands out (`american_express`), unlike `brand`.
fn display_brand(brand: &str) -> &str {
    match brand {
        "amex" => "american_express",
        "diners" => "diners_club",
        "unionpay" => "union_pay",
        "unknown" => "other",
        other => other,
    }
}

/// Networks a co-branded card may prefer: one it runs on, or Stripe's
/// `invalid_preference` marker.
fn preferred_network(available: &[String], wanted: PreferredNetwork) -> String {
    if available.iter().any(|n| n == wanted.as_str()) {
        wanted.as_str().to_string()
    } else {
        "invalid_preference".to_string()
    }
}

/// The expiry of a card, checked against the account's clock.
fn check_expiry(
    ctx: &Ctx,
    month: i64,
    year: i64,
    month_param: &str,
    year_param: &str,
) -> Result<(), ApiError> {
    if !(1..=12).contains(&month) {
        return Err(card_error(
            "invalid_expiry_month",
            "Your card's expiration month is invalid.",
            month_param,
        ));
    }
    let (this_year, this_month) = civil(ctx.now);
    if year < this_year {
        return Err(card_error(
            "invalid_expiry_year",
            "Your card's expiration year is invalid.",
            year_param,
        ));
    }
    if year == this_year && month < this_month {
        return Err(card_error(
            "invalid_expiry_month",
            "Your card's expiration month is invalid.",
            month_param,
        ));
    }
    Ok(())
}

fn full_year(year: i64) -> i64 {
    if (0..100).contains(&year) {
        2000 + year
    } else {
        year
    }
}

/// Checks a raw card (or resolves a test token) and builds its details; the number
/// itself is not kept, only its fingerprint, last four digits and table row.
fn card_details(
    ctx: &Ctx,
    card: &CardParam,
    prefix: &str,
    line1: bool,
    postal_code: bool,
) -> Result<CardDetails, ApiError> {
    let (number, exp_month, exp_year) = match (&card.token, &card.number) {
        (Some(token), _) => {
            // Test tokens (`tok_visa`) stand for a table number; ids of other kinds
            // (`pm_card_visa`) are not tokens.
            let number = token
                .starts_with("tok_")
                .then(|| network::number_for_alias(token))
                .flatten()
                .ok_or_else(|| {
                    ApiError::invalid_request(format!("No such token: '{token}'"))
                        .with_code("resource_missing")
                        .with_param(format!("{prefix}[token]"))
                })?;
            // A token carries its own expiry; test tokens expire in a few years.
            (number.to_string(), 12, civil(ctx.now).0 + 5)
        }
        (None, Some(number)) => {
            let number: String = number
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect();
            let exp_month = card
                .exp_month
                .ok_or_else(|| ApiError::missing_param(&format!("{prefix}[exp_month]")))?;
            let exp_year = card
                .exp_year
                .ok_or_else(|| ApiError::missing_param(&format!("{prefix}[exp_year]")))?;
            (number, exp_month, full_year(exp_year))
        }
        (None, None) => return Err(ApiError::missing_param(&format!("{prefix}[number]"))),
    };
    // luhn_valid also guarantees 12 to 19 ASCII digits, so slicing last4 is safe.
    if !network::luhn_valid(&number) {
        return Err(card_error(
            "incorrect_number",
            "Your card number is incorrect.",
            "number",
        ));
    }
    check_expiry(ctx, exp_month, exp_year, "exp_month", "exp_year")?;
    if let Some(cvc) = &card.cvc {
        let ok = (3..=4).contains(&cvc.len()) && cvc.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err(card_error(
                "invalid_cvc",
                "Your card's security code is invalid.",
                "cvc",
            ));
        }
    }
    let test_card = network::card_for_number(&number);
    let available = vec![test_card.brand.to_string()];
    let preferred = match card.networks.as_ref().map(|n| &n.preferred) {
        Some(Field::Set(wanted)) => Some(preferred_network(&available, *wanted)),
        _ => None,
    };
    // Stripe checks the CVC and address when the card is first attached or
    // charged; until then whatever was given reads `unchecked`.
    let unchecked = |given: bool| given.then(|| "unchecked".to_string());
    Ok(CardDetails {
        brand: test_card.brand.to_string(),
        checks: Some(CardChecks {
            address_line1_check: unchecked(line1),
            address_postal_code_check: unchecked(postal_code),
            cvc_check: unchecked(card.cvc.is_some()),
        }),
        country: Some(test_card.country.to_string()),
        display_brand: Some(display_brand(test_card.brand).to_string()),
        exp_month,
        exp_year,
        fingerprint: Some(network::fingerprint(ctx.account_id(), &number)),
        funding: test_card.funding.to_string(),
        generated_from: None,
        last4: number[number.len() - 4..].to_string(),
        networks: Some(Networks {
            available,
            preferred,
        }),
        three_d_secure_usage: Some(ThreeDSecureUsage { supported: true }),
        wallet: None,
    })
}

/// Days-from-civil arithmetic: the calendar year and month of a unix time.
fn civil(t: i64) -> (i64, i64) {
    let days = t.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month)
}

/// ABA routing numbers carry a checksum: 3·d1 + 7·d2 + d3 + 3·d4 ... ≡ 0 (mod 10).
fn routing_checksum_ok(routing: &str) -> bool {
    const WEIGHTS: [u32; 9] = [3, 7, 1, 3, 7, 1, 3, 7, 1];
    routing.len() == 9
        && routing.bytes().all(|b| b.is_ascii_digit())
        && routing
            .bytes()
            .zip(WEIGHTS)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum::<u32>()
            % 10
            == 0
}

/// Test bank accounts: routing 110000000 with Stripe's documented account numbers
/// (which of them fail is decided when they are debited).
fn us_bank_account_details(
    ctx: &Ctx,
    p: &UsBankAccountParam,
    prefix: &str,
) -> Result<UsBankAccountDetails, ApiError> {
    let (routing, account) = match (&p.routing_number, &p.account_number) {
        (Some(r), Some(a)) => (r.trim().to_string(), a.trim().to_string()),
        (None, None) if p.financial_connections_account.is_some() => {
            // Financial Connections accounts are not modelled: no id can exist.
            let fca = p.financial_connections_account.clone().unwrap_or_default();
            return Err(ApiError::invalid_request(format!(
                "No such financial connections account: '{fca}'"
            ))
            .with_code("resource_missing")
            .with_param(format!("{prefix}[financial_connections_account]")));
        }
        (None, _) => {
            return Err(ApiError::missing_param(&format!(
                "{prefix}[routing_number]"
            )))
        }
        (_, None) => {
            return Err(ApiError::missing_param(&format!(
                "{prefix}[account_number]"
            )))
        }
    };
    if routing.len() != 9 || !routing.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_param(
            &format!("{prefix}[routing_number]"),
            "routing_number_invalid",
            "Routing number must have 9 digits.",
        ));
    }
    if !routing_checksum_ok(&routing) {
        return Err(ApiError::invalid_param(
            &format!("{prefix}[routing_number]"),
            "routing_number_invalid",
            format!("Invalid routing number: {routing}."),
        ));
    }
    if !(4..=17).contains(&account.len()) || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_param(
            &format!("{prefix}[account_number]"),
            "account_number_invalid",
            "The account number must be 4 to 17 digits.",
        ));
    }
    Ok(UsBankAccountDetails {
        account_holder_type: Some(
            p.account_holder_type
                .unwrap_or(AccountHolderType::Individual)
                .as_str()
                .into(),
        ),
        account_type: Some(
            p.account_type
                .unwrap_or(AccountType::Checking)
                .as_str()
                .into(),
        ),
        bank_name: Some("STRIPE TEST BANK".into()),
        financial_connections_account: None,
        fingerprint: Some(network::fingerprint(
            ctx.account_id(),
            &format!("{routing}:{account}"),
        )),
        last4: Some(account[account.len() - 4..].to_string()),
        networks: Some(json!({ "preferred": "ach", "supported": ["ach"] })),
        routing_number: Some(routing),
        status_details: None,
    })
}

fn sepa_debit_details(
    ctx: &Ctx,
    p: &SepaDebitParam,
    prefix: &str,
) -> Result<SepaDebitDetails, ApiError> {
    let iban: String = p
        .iban
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    // Only ASCII letters and digits from here on, so byte slicing is safe.
    let valid = (15..=34).contains(&iban.len())
        && iban.bytes().all(|b| b.is_ascii_alphanumeric())
        && iban.bytes().take(2).all(|b| b.is_ascii_alphabetic())
        && iban.bytes().skip(2).take(2).all(|b| b.is_ascii_digit())
        && iban_checksum_ok(&iban);
    if !valid {
        return Err(ApiError::invalid_param(
            &format!("{prefix}[iban]"),
            "invalid_bank_account_iban",
            "The IBAN you provided is invalid.",
        ));
    }
    Ok(SepaDebitDetails {
        bank_code: Some(iban[4..12].to_string()),
        branch_code: Some(String::new()),
        country: Some(iban[..2].to_string()),
        fingerprint: Some(network::fingerprint(ctx.account_id(), &iban)),
        generated_from: None,
        last4: Some(iban[iban.len() - 4..].to_string()),
    })
}

/// The ISO 13616 check: the rearranged IBAN, letters as numbers, is 1 mod 97.
fn iban_checksum_ok(iban: &str) -> bool {
    if iban.len() < 5 || !iban.is_ascii() {
        return false;
    }
    let rearranged = format!("{}{}", &iban[4..], &iban[..4]);
    let mut remainder: u32 = 0;
    for c in rearranged.chars() {
        let value = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
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

/// Whether `id` is one of Stripe's test PaymentMethod ids (`pm_card_visa`), which
/// stand for a fresh PaymentMethod each time they are used.
pub fn is_alias(id: &str) -> bool {
    id.starts_with("pm_card_") && network::number_for_alias(id).is_some()
}

/// A fresh card PaymentMethod for a `pm_card_*` id, as Stripe test mode makes one
/// each time such an id is used.
pub fn from_alias(ctx: &Ctx, alias: &str) -> Option<PaymentMethod> {
    if !is_alias(alias) {
        return None;
    }
    let number = network::number_for_alias(alias)?;
    let data = PaymentMethodData {
        kind: Some(PaymentMethodType::Card),
        allow_redisplay: None,
        billing_details: None,
        card: Some(CardParam {
            number: Some(number.to_string()),
            exp_month: Some(12),
            exp_year: Some(civil(ctx.now).0 + 5),
            cvc: None,
            token: None,
            networks: None,
        }),
        metadata: Field::Absent,
        us_bank_account: None,
        sepa_debit: None,
        radar_options: None,
    };
    build(ctx, data, "").ok()
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworksUpdateParam {
    #[serde(default)]
    pub preferred: Field<PreferredNetwork>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardUpdateParam {
    #[serde(default)]
    pub exp_month: Option<i64>,
    #[serde(default)]
    pub exp_year: Option<i64>,
    #[serde(default)]
    pub networks: Option<NetworksUpdateParam>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsBankAccountUpdateParam {
    #[serde(default)]
    pub account_holder_type: Option<AccountHolderType>,
    #[serde(default)]
    pub account_type: Option<AccountType>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    #[serde(default)]
    pub allow_redisplay: Option<AllowRedisplay>,
    #[serde(default)]
    pub billing_details: Option<BillingDetailsParam>,
    #[serde(default)]
    pub card: Option<CardUpdateParam>,
    #[serde(default)]
    pub metadata: MetadataParam,
    #[serde(default)]
    pub us_bank_account: Option<UsBankAccountUpdateParam>,
    /// Accepted for Link PaymentMethods; there is nothing in it to update.
    #[serde(default)]
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
