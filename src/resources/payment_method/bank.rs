//! Bank debits: US bank accounts (ABA routing checksum, Stripe's test account
//! numbers) and SEPA debits (IBAN check), their details and parameters, and how
//! Stripe's failing test accounts end when they are debited.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SepaDebitDetails {
    pub bank_code: Option<String>,
    pub branch_code: Option<String>,
    pub country: Option<String>,
    pub fingerprint: Option<String>,
    pub generated_from: Option<Value>,
    pub last4: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountHolderType {
    Company,
    Individual,
}

impl AccountHolderType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            AccountHolderType::Company => "company",
            AccountHolderType::Individual => "individual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountType {
    Checking,
    Savings,
}

impl AccountType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            AccountType::Checking => "checking",
            AccountType::Savings => "savings",
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SepaDebitParam {
    pub iban: String,
}

/// ABA routing numbers carry a checksum: 3·d1 + 7·d2 + d3 + 3·d4 ... ≡ 0 (mod 10).
pub(super) fn routing_checksum_ok(routing: &str) -> bool {
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
pub(super) fn us_bank_account_details(
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

pub(super) fn sepa_debit_details(
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
pub(super) fn iban_checksum_ok(iban: &str) -> bool {
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

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UsBankAccountUpdateParam {
    pub account_holder_type: Option<AccountHolderType>,
    pub account_type: Option<AccountType>,
}

/// How a debit from one of Stripe's failing test bank accounts ends: its
/// failure code and message (`None`: the debit succeeds).
pub fn debit_failure(pm: &PaymentMethod) -> Option<(&'static str, &'static str)> {
    if let Some(bank) = &pm.us_bank_account {
        return match bank.last4.as_deref() {
            Some("1116") => Some((
                "insufficient_funds",
                "The customer's account has insufficient funds to cover this payment.",
            )),
            Some("1113") => Some((
                "account_closed",
                "The customer's bank account has been closed.",
            )),
            _ => None,
        };
    }
    if let Some(sepa) = &pm.sepa_debit {
        if sepa.last4.as_deref() == Some("3001") {
            return Some((
                "insufficient_funds",
                "The customer's account has insufficient funds to cover this payment.",
            ));
        }
    }
    None
}
