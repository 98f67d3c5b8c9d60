//! Cards: raw test numbers and test tokens checked and turned into a card's
//! details (brand, funding, country, fingerprint, checks), and the card
//! parameters of create and update.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CardChecks {
    pub address_line1_check: Option<String>,
    pub address_postal_code_check: Option<String>,
    pub cvc_check: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Networks {
    pub available: Vec<String>,
    pub preferred: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreeDSecureUsage {
    pub supported: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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

// ---- parameters -------------------------------------------------------------

/// `card[networks]`: the network a co-branded card should prefer.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworksParam {
    #[serde(default)]
    pub preferred: Field<PreferredNetwork>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, JsonSchema)]
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

/// Card validation failures are card errors (402), naming the card field the way
/// Stripe's card errors do (`number`, `exp_month`, ...).
pub(super) fn card_error(code: &str, message: &str, param: &str) -> ApiError {
    ApiError::new(402, ErrorType::CardError, message)
        .with_code(code)
        .with_param(param)
}

/// A decline from the card network as Stripe reports it.
pub(super) fn decline_error(d: &Decline) -> ApiError {
    let mut e = ApiError::new(402, ErrorType::CardError, d.message).with_code(d.code);
    e.decline_code = d.decline_code.map(str::to_string);
    match d.param {
        Some(param) => e.with_param(param),
        None => e,
    }
}

/// `display_brand` spells some brands out (`american_express`), unlike `brand`.
pub(super) fn display_brand(brand: &str) -> &str {
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
pub(super) fn preferred_network(available: &[String], wanted: PreferredNetwork) -> String {
    if available.iter().any(|n| n == wanted.as_str()) {
        wanted.as_str().to_string()
    } else {
        "invalid_preference".to_string()
    }
}

/// The expiry of a card, checked against the account's clock.
pub(super) fn check_expiry(
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

pub(super) fn full_year(year: i64) -> i64 {
    if (0..100).contains(&year) {
        2000 + year
    } else {
        year
    }
}

/// Checks a raw card (or resolves a test token) and builds its details; the number
/// itself is not kept, only its fingerprint, last four digits and table row.
pub(super) fn card_details(
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
pub(super) fn civil(t: i64) -> (i64, i64) {
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

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworksUpdateParam {
    #[serde(default)]
    pub preferred: Field<PreferredNetwork>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CardUpdateParam {
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
    pub networks: Option<NetworksUpdateParam>,
}
