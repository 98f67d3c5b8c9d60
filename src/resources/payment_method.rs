//! PaymentMethods: cards (raw test numbers, tokens, `pm_card_*` ids), US bank
//! accounts and SEPA debits; attach, detach, and whether a card was set up for
//! later off-session use.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ctx::{previous_attributes, Ctx, StripeObject};
use crate::error::{ApiError, ErrorType};
use crate::http::params::{Field, MetadataParam};
use crate::ids;
use crate::network::{self, TestCard};
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

impl StripeObject for PaymentMethod {
    const OBJECT: &'static str = "payment_method";
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        let mut index = vec![("type".to_string(), self.kind.clone())];
        if let Some(c) = &self.customer {
            index.push(("customer".to_string(), c.clone()));
        }
        index
    }
}

impl PaymentMethod {
    /// The test card table row this card is (ordinary success for other numbers).
    pub fn test_card(&self, account: &str) -> Option<TestCard> {
        let card = self.card.as_ref()?;
        Some(network::card_for_fingerprint(account, card.fingerprint.as_deref().unwrap_or(""), &card.brand))
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
    Ok(ctx.find::<SetupRecord>(&setup_record_id(pm)).await?.is_some())
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

/// Two-digit years mean this century, as Stripe reads them.
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
    pub networks: Option<Value>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsBankAccountParam {
    #[serde(default)]
    pub account_holder_type: Option<String>,
    #[serde(default)]
    pub account_number: Option<String>,
    #[serde(default)]
    pub account_type: Option<String>,
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

/// `payment_method_data` of an intent, and the body of `POST /v1/payment_methods`
/// (which adds `customer` and `payment_method` for cloning, not supported here).
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

fn card_error(code: &str, message: &str, param: &str) -> ApiError {
    let mut e = ApiError::new(402, ErrorType::CardError, message).with_code(code).with_param(param);
    e.decline_code = None;
    e
}

/// Checks a raw card and builds its details; the number itself is not kept.
fn card_details(ctx: &Ctx, card: &CardParam, prefix: &str, line1: bool, postal_code: bool) -> Result<CardDetails, ApiError> {
    let (number, exp_month, exp_year) = match (&card.token, &card.number) {
        (Some(token), _) => {
            let number = network::number_for_alias(token).ok_or_else(|| {
                ApiError::invalid_request(format!("No such token: '{token}'"))
                    .with_code("resource_missing")
                    .with_param(format!("{prefix}[token]"))
            })?;
            (number.to_string(), card.exp_month.unwrap_or(12), card.exp_year.unwrap_or(year_of(ctx.now) + 5))
        }
        (None, Some(number)) => {
            let number: String = number.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
            let exp_month = card.exp_month.ok_or_else(|| ApiError::missing_param(&format!("{prefix}[exp_month]")))?;
            let exp_year = card.exp_year.ok_or_else(|| ApiError::missing_param(&format!("{prefix}[exp_year]")))?;
            (number, exp_month, exp_year)
        }
        (None, None) => return Err(ApiError::missing_param(&format!("{prefix}[number]"))),
    };
    if !network::luhn_valid(&number) {
        return Err(card_error("incorrect_number", "Your card number is incorrect.", "number"));
    }
    if !(1..=12).contains(&exp_month) {
        return Err(card_error("invalid_expiry_month", "Your card's expiration month is invalid.", "exp_month"));
    }
    let exp_year = if exp_year < 100 { 2000 + exp_year } else { exp_year };
    let (year, month) = (year_of(ctx.now), month_of(ctx.now));
    if exp_year < year || exp_year > year + 50 {
        return Err(card_error("invalid_expiry_year", "Your card's expiration year is invalid.", "exp_year"));
    }
    if exp_year == year && exp_month < month {
        return Err(card_error("invalid_expiry_month", "Your card's expiration month is invalid.", "exp_month"));
    }
    if let Some(cvc) = &card.cvc {
        let ok = (3..=4).contains(&cvc.len()) && cvc.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err(card_error("invalid_cvc", "Your card's security code is invalid.", "cvc"));
        }
    }
    let test_card = network::card_for_number(&number);
    let (line1_check, zip_check, cvc_check) = network::checks(&test_card, card.cvc.is_some(), line1, postal_code);
    Ok(CardDetails {
        brand: test_card.brand.to_string(),
        checks: Some(CardChecks {
            address_line1_check: line1_check.map(str::to_string),
            address_postal_code_check: zip_check.map(str::to_string),
            cvc_check: cvc_check.map(str::to_string),
        }),
        country: Some(test_card.country.to_string()),
        display_brand: Some(test_card.brand.to_string()),
        exp_month,
        exp_year,
        fingerprint: Some(network::fingerprint(ctx.account_id(), &number)),
        funding: test_card.funding.to_string(),
        generated_from: None,
        last4: number[number.len() - 4..].to_string(),
        networks: Some(Networks { available: vec![test_card.brand.to_string()], preferred: None }),
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

fn year_of(t: i64) -> i64 {
    civil(t).0
}

fn month_of(t: i64) -> i64 {
    civil(t).1
}

/// Test bank accounts: routing 110000000 with Stripe's documented account numbers.
fn us_bank_account_details(ctx: &Ctx, p: &UsBankAccountParam, prefix: &str) -> Result<UsBankAccountDetails, ApiError> {
    let routing = p.routing_number.clone().ok_or_else(|| ApiError::missing_param(&format!("{prefix}[routing_number]")))?;
    let account = p.account_number.clone().ok_or_else(|| ApiError::missing_param(&format!("{prefix}[account_number]")))?;
    if routing.len() != 9 || !routing.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_param(&format!("{prefix}[routing_number]"), "routing_number_invalid", "Routing number must have 9 digits."));
    }
    if account.len() < 4 || account.len() > 17 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_param(&format!("{prefix}[account_number]"), "account_number_invalid", "The account number must be 4 to 17 digits."));
    }
    Ok(UsBankAccountDetails {
        account_holder_type: Some(p.account_holder_type.clone().unwrap_or_else(|| "individual".into())),
        account_type: Some(p.account_type.clone().unwrap_or_else(|| "checking".into())),
        bank_name: Some("STRIPE TEST BANK".into()),
        financial_connections_account: p.financial_connections_account.clone(),
        fingerprint: Some(network::fingerprint(ctx.account_id(), &format!("{routing}:{account}"))),
        last4: Some(account[account.len() - 4..].to_string()),
        networks: Some(serde_json::json!({ "preferred": "ach", "supported": ["ach"] })),
        routing_number: Some(routing),
        status_details: None,
    })
}

fn sepa_debit_details(ctx: &Ctx, p: &SepaDebitParam, prefix: &str) -> Result<SepaDebitDetails, ApiError> {
    let iban: String = p.iban.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    if iban.len() < 15 || iban.len() > 34 || !iban[..2].bytes().all(|b| b.is_ascii_alphabetic()) || !iban_checksum_ok(&iban) {
        return Err(ApiError::invalid_param(&format!("{prefix}[iban]"), "invalid_bank_account_iban", "The IBAN you provided is invalid."));
    }
    Ok(SepaDebitDetails {
        bank_code: Some(iban[4..12.min(iban.len())].to_string()),
        branch_code: Some(String::new()),
        country: Some(iban[..2].to_string()),
        fingerprint: Some(network::fingerprint(ctx.account_id(), &iban)),
        generated_from: None,
        last4: Some(iban[iban.len() - 4..].to_string()),
    })
}

fn iban_checksum_ok(iban: &str) -> bool {
    let rearranged = format!("{}{}", &iban[4..], &iban[..4]);
    let mut remainder: u32 = 0;
    for c in rearranged.chars() {
        let digits = match c {
            '0'..='9' => c.to_digit(10).map(|d| d.to_string()),
            'A'..='Z' => Some(((c as u32) - ('A' as u32) + 10).to_string()),
            _ => None,
        };
        let Some(digits) = digits else { return false };
        for d in digits.chars() {
            remainder = (remainder * 10 + d.to_digit(10).unwrap_or(0)) % 97;
        }
    }
    remainder == 1
}

/// A new PaymentMethod from `payment_method_data` (or the create call's body).
/// `prefix` is where the data sits in the request, for error `param`s.
pub fn build(ctx: &Ctx, data: PaymentMethodData, prefix: &str) -> Result<PaymentMethod, ApiError> {
    let at = |field: &str| if prefix.is_empty() { field.to_string() } else { format!("{prefix}[{field}]") };
    let kind = match (data.kind, &data.card) {
        (Some(k), _) => k,
        (None, Some(c)) if c.token.is_some() => PaymentMethodType::Card,
        (None, _) => return Err(ApiError::missing_param(&at("type"))),
    };
    let mut billing = BillingDetails::default();
    if let Some(b) = data.billing_details {
        b.apply(&mut billing);
    }
    let line1 = billing.address.as_ref().is_some_and(|a| a.line1.is_some());
    let zip = billing.address.as_ref().is_some_and(|a| a.postal_code.is_some());
    let mut pm = PaymentMethod {
        id: ids::new_id("pm"),
        object: "payment_method".into(),
        allow_redisplay: data.allow_redisplay.unwrap_or(AllowRedisplay::Unspecified).as_str().into(),
        billing_details: billing,
        card: None,
        created: ctx.now,
        customer: None,
        livemode: false,
        metadata: new_metadata(data.metadata)?,
        kind: String::new(),
        sepa_debit: None,
        us_bank_account: None,
    };
    match kind {
        PaymentMethodType::Card => {
            let card = data.card.ok_or_else(|| ApiError::missing_param(&at("card")))?;
            pm.card = Some(card_details(ctx, &card, &at("card"), line1, zip)?);
            pm.kind = "card".into();
        }
        PaymentMethodType::UsBankAccount => {
            let bank = data.us_bank_account.ok_or_else(|| ApiError::missing_param(&at("us_bank_account")))?;
            pm.us_bank_account = Some(us_bank_account_details(ctx, &bank, &at("us_bank_account"))?);
            pm.kind = "us_bank_account".into();
        }
        PaymentMethodType::SepaDebit => {
            let sepa = data.sepa_debit.ok_or_else(|| ApiError::missing_param(&at("sepa_debit")))?;
            if pm.billing_details.name.is_none() || pm.billing_details.email.is_none() {
                return Err(ApiError::missing_param(&at(if pm.billing_details.name.is_none() {
                    "billing_details[name]"
                } else {
                    "billing_details[email]"
                })));
            }
            pm.sepa_debit = Some(sepa_debit_details(ctx, &sepa, &at("sepa_debit"))?);
            pm.kind = "sepa_debit".into();
        }
    }
    Ok(pm)
}

/// A fresh card PaymentMethod for a `pm_card_*` id, as Stripe test mode makes one
/// each time such an id is used.
pub fn from_alias(ctx: &Ctx, alias: &str) -> Option<PaymentMethod> {
    let number = network::number_for_alias(alias)?;
    let data = PaymentMethodData {
        kind: Some(PaymentMethodType::Card),
        allow_redisplay: None,
        billing_details: None,
        card: Some(CardParam {
            number: Some(number.to_string()),
            exp_month: Some(12),
            exp_year: Some(year_of(ctx.now) + 5),
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

pub fn no_such(id: &str, param: &str) -> ApiError {
    ApiError::no_such("PaymentMethod", id).with_param(param)
}

/// The PaymentMethod an intent names: an existing one, or a fresh one for a
/// `pm_card_*` id (saved in this request).
pub async fn resolve(ctx: &mut Ctx, id: &str, param: &str) -> Result<PaymentMethod, ApiError> {
    if let Some(pm) = ctx.find::<PaymentMethod>(id).await? {
        return Ok(pm);
    }
    if let Some(pm) = from_alias(ctx, id) {
        ctx.save(&pm)?;
        return Ok(pm);
    }
    Err(no_such(id, param))
}

/// Attaches to a customer (idempotent for the same customer), emitting
/// `payment_method.attached`.
pub async fn attach(ctx: &mut Ctx, pm: &mut PaymentMethod, customer: &str, param: &str) -> Result<Value, ApiError> {
    match &pm.customer {
        Some(c) if c == customer => return serde_json::to_value(&*pm).map_err(|e| ApiError::internal("encode", e)),
        Some(_) => {
            return Err(ApiError::invalid_request(
                "The payment method you provided has already been attached to a customer.",
            )
            .with_code("payment_method_unexpected_state")
            .with_param(param))
        }
        None => {}
    }
    let _customer: crate::resources::customer::Customer = ctx
        .fetch(customer)
        .await
        .map_err(|e| e.with_param("customer"))?;
    // Declining cards attach fine: they fail when charged (see the test card table).
    pm.customer = Some(customer.to_string());
    let value = ctx.save(&*pm)?;
    ctx.emit("payment_method.attached", value.clone(), None);
    Ok(value)
}

pub async fn detach(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    let mut pm: PaymentMethod = ctx.fetch(id).await.map_err(|_| no_such(id, "payment_method"))?;
    if pm.customer.is_none() {
        return Err(ApiError::invalid_request("The payment method you provided is not attached to a customer so detachment is impossible.")
            .with_code("payment_method_unexpected_state"));
    }
    let before = pm.customer.take();
    let value = ctx.save(&pm)?;
    ctx.emit("payment_method.detached", value.clone(), Some(serde_json::json!({ "customer": before })));
    Ok(value)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardUpdateParam {
    #[serde(default)]
    pub exp_month: Option<i64>,
    #[serde(default)]
    pub exp_year: Option<i64>,
    #[serde(default)]
    pub networks: Option<Value>,
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
    pub us_bank_account: Option<Value>,
    #[serde(default)]
    pub link: Option<Value>,
}

pub async fn update(ctx: &mut Ctx, id: &str, p: UpdateParams) -> Result<Value, ApiError> {
    let mut pm: PaymentMethod = ctx.fetch(id).await.map_err(|_| no_such(id, "payment_method"))?;
    let before = serde_json::to_value(&pm).map_err(|e| ApiError::internal("encode", e))?;
    if let Some(a) = p.allow_redisplay {
        pm.allow_redisplay = a.as_str().into();
    }
    if let Some(b) = p.billing_details {
        b.apply(&mut pm.billing_details);
    }
    if let Some(c) = p.card {
        let card = pm.card.as_mut().ok_or_else(|| ApiError::unknown_param("card"))?;
        if let Some(m) = c.exp_month {
            if !(1..=12).contains(&m) {
                return Err(card_error("invalid_expiry_month", "Your card's expiration month is invalid.", "card[exp_month]"));
            }
            card.exp_month = m;
        }
        if let Some(y) = c.exp_year {
            let y = if y < 100 { 2000 + y } else { y };
            if y < year_of(ctx.now) {
                return Err(card_error("invalid_expiry_year", "Your card's expiration year is invalid.", "card[exp_year]"));
            }
            card.exp_year = y;
        }
    }
    apply_metadata(&mut pm.metadata, p.metadata)?;
    let after = ctx.save(&pm)?;
    if let Some(previous) = previous_attributes(&before, &after) {
        ctx.emit("payment_method.updated", after.clone(), Some(previous));
    }
    Ok(after)
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
    }
}
