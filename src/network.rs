//! The simulated card network: Stripe's test cards as one table, and the one
//! function that decides what happens when a card is charged.
//!
//! Outcomes depend only on the card number (through its table row), on whether the
//! payment is on- or off-session, whether the card was set up for later use, and
//! whether the customer has completed authentication. Numbers not in the table
//! succeed, with the brand their leading digits give.

use std::collections::HashMap;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use sha2::Sha256;

/// What a card does when charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Succeeds,
    /// Declined at charge time with this decline.
    Declines(&'static Decline),
    /// Attaching succeeds; every charge is declined.
    ChargeCustomerFail,
    /// Declined as fraudulent, outcome blocked by Radar.
    RadarBlock,
    /// Needs authentication unless the card was set up and the payment is off-session.
    AuthRequiredUnlessSetUp,
    /// Needs authentication on every payment; off-session ones fail.
    AuthRequiredAlways,
    /// On-session payments need authentication; off-session ones succeed.
    AuthRequiredOnSession,
    /// The first payment needs authentication; once set up, payments are declined (insufficient funds).
    AuthThenInsufficientFunds,
    /// 3-D Secure required; succeeds after authentication.
    ThreeDsRequired,
    /// 3-D Secure required; declined after authentication.
    ThreeDsRequiredThenDecline,
    /// 3-D Secure required; the authentication itself errors.
    ThreeDsRequiredProcessingError,
    /// 3-D Secure supported, not required: only asked for when requested.
    ThreeDsOptional,
    /// 3-D Secure supported; an attempted authentication errors.
    ThreeDsAttemptErrors,
    /// Succeeds; with this check result.
    Check(CheckOutcome),
    /// Succeeds with risk level elevated.
    ElevatedRisk,
    /// Succeeds; refunds stay pending before they succeed.
    RefundPending,
    /// Succeeds; refunds fail.
    RefundFails,
    /// Succeeds; funds are available at once.
    BypassPending,
    /// Succeeds; a dispute follows.
    Disputed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    CvcFails,
    ZipFails,
    Line1Fails,
    AddressFails,
    AddressUnavailable,
}

/// A decline as the card network reports it: Stripe's error `code`, `decline_code`,
/// message, and the `param` it blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decline {
    pub code: &'static str,
    pub decline_code: Option<&'static str>,
    pub message: &'static str,
    pub param: Option<&'static str>,
}

pub const GENERIC_DECLINE: Decline = Decline {
    code: "card_declined",
    decline_code: Some("generic_decline"),
    message: "Your card was declined.",
    param: None,
};
pub const INSUFFICIENT_FUNDS: Decline = Decline {
    code: "card_declined",
    decline_code: Some("insufficient_funds"),
    message: "Your card has insufficient funds.",
    param: None,
};
pub const LOST_CARD: Decline = Decline {
    code: "card_declined",
    decline_code: Some("lost_card"),
    message: "Your card was declined.",
    param: None,
};
pub const STOLEN_CARD: Decline = Decline {
    code: "card_declined",
    decline_code: Some("stolen_card"),
    message: "Your card was declined.",
    param: None,
};
pub const EXPIRED_CARD: Decline = Decline {
    code: "expired_card",
    decline_code: Some("expired_card"),
    message: "Your card has expired.",
    param: Some("exp_month"),
};
pub const INCORRECT_CVC: Decline = Decline {
    code: "incorrect_cvc",
    decline_code: Some("incorrect_cvc"),
    message: "Your card's security code is incorrect.",
    param: Some("cvc"),
};
pub const PROCESSING_ERROR: Decline = Decline {
    code: "processing_error",
    decline_code: Some("processing_error"),
    message: "An error occurred while processing your card. Try again in a little bit.",
    param: None,
};
pub const VELOCITY_EXCEEDED: Decline = Decline {
    code: "card_declined",
    decline_code: Some("card_velocity_exceeded"),
    message: "Your card was declined.",
    param: None,
};
pub const FRAUDULENT: Decline = Decline {
    code: "card_declined",
    decline_code: Some("fraudulent"),
    message: "Your card was declined.",
    param: None,
};
pub const AUTHENTICATION_REQUIRED: Decline = Decline {
    code: "authentication_required",
    decline_code: Some("authentication_required"),
    message: "Your card was declined. This transaction requires authentication.",
    param: None,
};
pub const INCORRECT_NUMBER: Decline = Decline {
    code: "incorrect_number",
    decline_code: None,
    message: "Your card number is incorrect.",
    param: Some("number"),
};

/// One row of the test card table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCard {
    pub number: &'static str,
    pub brand: &'static str,
    pub funding: &'static str,
    pub country: &'static str,
    pub behaviour: Behaviour,
    /// The `pm_card_*` and `tok_*` ids that stand for this number.
    pub aliases: &'static [&'static str],
}

const fn card(
    number: &'static str,
    brand: &'static str,
    funding: &'static str,
    behaviour: Behaviour,
    aliases: &'static [&'static str],
) -> TestCard {
    TestCard {
        number,
        brand,
        funding,
        country: "US",
        behaviour,
        aliases,
    }
}

/// A row whose issuer is outside the US (Stripe's JCB and UnionPay test cards are).
const fn issued_in(country: &'static str, card: TestCard) -> TestCard {
    TestCard { country, ..card }
}

use Behaviour::*;

/// Stripe's test cards (see the test card table in the Stripe docs).
pub const TEST_CARDS: &[TestCard] = &[
    // Succeeding cards by brand.
    card(
        "4242424242424242",
        "visa",
        "credit",
        Succeeds,
        &["pm_card_visa", "tok_visa"],
    ),
    card(
        "4000056655665556",
        "visa",
        "debit",
        Succeeds,
        &["pm_card_visa_debit", "tok_visa_debit"],
    ),
    card(
        "5555555555554444",
        "mastercard",
        "credit",
        Succeeds,
        &["pm_card_mastercard", "tok_mastercard"],
    ),
    card("2223003122003222", "mastercard", "credit", Succeeds, &[]),
    card(
        "5200828282828210",
        "mastercard",
        "debit",
        Succeeds,
        &["pm_card_mastercard_debit", "tok_mastercard_debit"],
    ),
    card(
        "5105105105105100",
        "mastercard",
        "prepaid",
        Succeeds,
        &["pm_card_mastercard_prepaid", "tok_mastercard_prepaid"],
    ),
    card(
        "378282246310005",
        "amex",
        "credit",
        Succeeds,
        &["pm_card_amex", "tok_amex"],
    ),
    card("371449635398431", "amex", "credit", Succeeds, &[]),
    card(
        "6011111111111117",
        "discover",
        "credit",
        Succeeds,
        &["pm_card_discover", "tok_discover"],
    ),
    card("6011000990139424", "discover", "credit", Succeeds, &[]),
    card(
        "3056930009020004",
        "diners",
        "credit",
        Succeeds,
        &["pm_card_diners", "tok_diners"],
    ),
    card("36227206271667", "diners", "credit", Succeeds, &[]),
    issued_in(
        "JP",
        card(
            "3566002020360505",
            "jcb",
            "credit",
            Succeeds,
            &["pm_card_jcb", "tok_jcb"],
        ),
    ),
    issued_in(
        "CN",
        card(
            "6200000000000005",
            "unionpay",
            "credit",
            Succeeds,
            &["pm_card_unionpay", "tok_unionpay"],
        ),
    ),
    // Declines at charge time.
    card(
        "4000000000000002",
        "visa",
        "credit",
        Declines(&GENERIC_DECLINE),
        &[
            "pm_card_chargeDeclined",
            "pm_card_visa_chargeDeclined",
            "tok_chargeDeclined",
            "tok_visa_chargeDeclined",
        ],
    ),
    card(
        "4000000000009995",
        "visa",
        "credit",
        Declines(&INSUFFICIENT_FUNDS),
        &[
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "pm_card_chargeDeclinedInsufficientFunds",
            "tok_chargeDeclinedInsufficientFunds",
            "tok_visa_chargeDeclinedInsufficientFunds",
        ],
    ),
    card(
        "4000000000009987",
        "visa",
        "credit",
        Declines(&LOST_CARD),
        &[
            "pm_card_visa_chargeDeclinedLostCard",
            "pm_card_chargeDeclinedLostCard",
            "tok_chargeDeclinedLostCard",
            "tok_visa_chargeDeclinedLostCard",
        ],
    ),
    card(
        "4000000000009979",
        "visa",
        "credit",
        Declines(&STOLEN_CARD),
        &[
            "pm_card_visa_chargeDeclinedStolenCard",
            "pm_card_chargeDeclinedStolenCard",
            "tok_chargeDeclinedStolenCard",
            "tok_visa_chargeDeclinedStolenCard",
        ],
    ),
    card(
        "4000000000000069",
        "visa",
        "credit",
        Declines(&EXPIRED_CARD),
        &[
            "pm_card_chargeDeclinedExpiredCard",
            "tok_chargeDeclinedExpiredCard",
        ],
    ),
    card(
        "4000000000000127",
        "visa",
        "credit",
        Declines(&INCORRECT_CVC),
        &[
            "pm_card_chargeDeclinedIncorrectCvc",
            "tok_chargeDeclinedIncorrectCvc",
        ],
    ),
    card(
        "4000000000000119",
        "visa",
        "credit",
        Declines(&PROCESSING_ERROR),
        &[
            "pm_card_chargeDeclinedProcessingError",
            "tok_chargeDeclinedProcessingError",
        ],
    ),
    card(
        "4000000000006975",
        "visa",
        "credit",
        Declines(&VELOCITY_EXCEEDED),
        &[
            "pm_card_chargeDeclinedVelocityLimitExceeded",
            "tok_chargeDeclinedVelocityLimitExceeded",
        ],
    ),
    card(
        "4000000000000341",
        "visa",
        "credit",
        ChargeCustomerFail,
        &["pm_card_chargeCustomerFail", "tok_chargeCustomerFail"],
    ),
    card(
        "4100000000000019",
        "visa",
        "credit",
        RadarBlock,
        &["pm_card_radarBlock", "tok_radarBlock"],
    ),
    // Authentication.
    card(
        "4000002500003155",
        "visa",
        "credit",
        AuthRequiredUnlessSetUp,
        &[
            "pm_card_authenticationRequiredOnSetup",
            "tok_authenticationRequiredOnSetup",
        ],
    ),
    card(
        "4000002760003184",
        "visa",
        "credit",
        AuthRequiredAlways,
        &[
            "pm_card_authenticationRequired",
            "tok_authenticationRequired",
        ],
    ),
    card(
        "4000003800000446",
        "visa",
        "credit",
        AuthRequiredOnSession,
        &[
            "pm_card_authenticationRequiredSetupForOffSession",
            "tok_authenticationRequiredSetupForOffSession",
        ],
    ),
    card(
        "4000008260003178",
        "visa",
        "credit",
        AuthThenInsufficientFunds,
        &[
            "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds",
            "tok_authenticationRequiredChargeDeclinedInsufficientFunds",
        ],
    ),
    card(
        "4000000000003220",
        "visa",
        "credit",
        ThreeDsRequired,
        &["pm_card_threeDSecure2Required", "tok_threeDSecure2Required"],
    ),
    card(
        "4000000000003063",
        "visa",
        "credit",
        ThreeDsRequired,
        &["pm_card_threeDSecureRequired", "tok_threeDSecureRequired"],
    ),
    card(
        "4000008400001629",
        "visa",
        "credit",
        ThreeDsRequiredThenDecline,
        &[
            "pm_card_threeDSecureRequiredChargeDeclined",
            "tok_threeDSecureRequiredChargeDeclined",
        ],
    ),
    card(
        "4000008400001280",
        "visa",
        "credit",
        ThreeDsRequiredProcessingError,
        &[
            "pm_card_threeDSecureRequiredProcessingError",
            "tok_threeDSecureRequiredProcessingError",
        ],
    ),
    card(
        "4000000000003055",
        "visa",
        "credit",
        ThreeDsOptional,
        &["pm_card_threeDSecureOptional", "tok_threeDSecureOptional"],
    ),
    card(
        "4000000000003097",
        "visa",
        "credit",
        ThreeDsAttemptErrors,
        &[],
    ),
    // Checks and balances.
    card(
        "4000000000000101",
        "visa",
        "credit",
        Check(CheckOutcome::CvcFails),
        &["pm_card_cvcCheckFail", "tok_cvcCheckFail"],
    ),
    card(
        "4000000000000036",
        "visa",
        "credit",
        Check(CheckOutcome::ZipFails),
        &["pm_card_avsZipFail", "tok_avsZipFail"],
    ),
    card(
        "4000000000000028",
        "visa",
        "credit",
        Check(CheckOutcome::Line1Fails),
        &["pm_card_avsLine1Fail", "tok_avsLine1Fail"],
    ),
    card(
        "4000000000000010",
        "visa",
        "credit",
        Check(CheckOutcome::AddressFails),
        &["pm_card_avsFail", "tok_avsFail"],
    ),
    card(
        "4000000000000044",
        "visa",
        "credit",
        Check(CheckOutcome::AddressUnavailable),
        &["pm_card_avsUnchecked", "tok_avsUnchecked"],
    ),
    card(
        "4000000000000077",
        "visa",
        "credit",
        BypassPending,
        &["pm_card_bypassPending", "tok_bypassPending"],
    ),
    card(
        "4000000000009235",
        "visa",
        "credit",
        ElevatedRisk,
        &["pm_card_riskLevelElevated", "tok_riskLevelElevated"],
    ),
    card(
        "4000000000007726",
        "visa",
        "credit",
        RefundPending,
        &["pm_card_pendingRefund", "tok_pendingRefund"],
    ),
    card(
        "4000000000005126",
        "visa",
        "credit",
        RefundFails,
        &["pm_card_refundFail", "tok_refundFail"],
    ),
    card(
        "4000000000000259",
        "visa",
        "credit",
        Disputed,
        &["pm_card_createDispute", "tok_createDispute"],
    ),
];

/// The number a `pm_card_*` / `tok_*` alias stands for.
pub fn number_for_alias(alias: &str) -> Option<&'static str> {
    TEST_CARDS
        .iter()
        .find(|c| c.aliases.contains(&alias))
        .map(|c| c.number)
}

pub fn luhn_valid(number: &str) -> bool {
    if number.len() < 12 || number.len() > 19 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = (b - b'0') as u32;
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 {
                    dd - 9
                } else {
                    dd
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The brand the leading digits give, for numbers outside the table.
pub fn brand_for_number(number: &str) -> &'static str {
    let prefix = |n: usize| {
        number
            .get(..n)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    match () {
        _ if number.starts_with('4') => "visa",
        _ if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) => "mastercard",
        _ if matches!(prefix(2), 34 | 37) => "amex",
        _ if number.starts_with("6011")
            || number.starts_with("65")
            || (644..=649).contains(&prefix(3)) =>
        {
            "discover"
        }
        _ if matches!(prefix(2), 30 | 36 | 38 | 39) => "diners",
        _ if number.starts_with("35") => "jcb",
        _ if number.starts_with("62") => "unionpay",
        _ => "unknown",
    }
}

/// The table row for a number, or an ordinary succeeding card of its brand.
pub fn card_for_number(number: &str) -> TestCard {
    TEST_CARDS
        .iter()
        .find(|c| c.number == number)
        .copied()
        .unwrap_or(TestCard {
            number: "",
            brand: brand_for_number(number),
            funding: "credit",
            country: "US",
            behaviour: Succeeds,
            aliases: &[],
        })
}

fn hmac_base62(key: &str, message: &str, len: usize) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .take(len)
        .map(|b| ALPHABET[(*b as usize) % 62] as char)
        .collect()
}

/// A card's fingerprint: stable per number within an account, unrelated across accounts.
///
/// Remembered per account and number: every `pm_card_*` payment builds a new
/// PaymentMethod, and its HMAC was 2% of a confirmed payment's instructions.
pub fn fingerprint(account: &str, number: &str) -> String {
    type Fingerprints = HashMap<String, HashMap<String, String>>;
    static CACHE: OnceLock<RwLock<Fingerprints>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| RwLock::new(HashMap::new()));
    if let Some(fp) = cache.read().get(account).and_then(|m| m.get(number)) {
        return fp.clone();
    }
    let fp = hmac_base62(account, number, 16);
    let mut guard = cache.write();
    // Bounded (a few MB): many accounts, or many distinct raw card numbers, start it over.
    if guard.len() > 1_000 || guard.get(account).is_some_and(|m| m.len() > 1_000) {
        guard.clear();
    }
    guard
        .entry(account.to_string())
        .or_default()
        .insert(number.to_string(), fp.clone());
    fp
}

/// Which table row a stored card (known only by its fingerprint) is. PaymentMethods
/// keep no card number; the fingerprint identifies it within the account.
pub fn card_for_fingerprint(account: &str, fingerprint: &str, brand: &str) -> TestCard {
    static CACHE: OnceLock<RwLock<HashMap<String, HashMap<String, usize>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| RwLock::new(HashMap::new()));
    if let Some(map) = cache.read().get(account) {
        return map
            .get(fingerprint)
            .map(|&i| TEST_CARDS[i])
            .unwrap_or_else(|| ordinary(brand));
    }
    let map: HashMap<String, usize> = TEST_CARDS
        .iter()
        .enumerate()
        .map(|(i, c)| (hmac_base62(account, c.number, 16), i))
        .collect();
    let found = map.get(fingerprint).map(|&i| TEST_CARDS[i]);
    let mut guard = cache.write();
    if guard.len() > 10_000 {
        guard.clear();
    }
    guard.insert(account.to_string(), map);
    found.unwrap_or_else(|| ordinary(brand))
}

fn ordinary(brand: &str) -> TestCard {
    let brand = TEST_CARDS
        .iter()
        .map(|c| c.brand)
        .find(|b| *b == brand)
        .unwrap_or("unknown");
    TestCard {
        number: "",
        brand,
        funding: "credit",
        country: "US",
        behaviour: Succeeds,
        aliases: &[],
    }
}

/// `payment_method_options[card][request_three_d_secure]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ThreeDsRequest {
    #[default]
    Automatic,
    Any,
    Challenge,
}

/// The circumstances of one charge attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempt {
    pub off_session: bool,
    /// The card was saved for later use (setup_future_usage or a SetupIntent) before.
    pub set_up: bool,
    pub request_three_d_secure: ThreeDsRequest,
    /// The customer completed 3-D Secure for this attempt.
    pub authenticated: bool,
    pub cvc_provided: bool,
}

/// How risky the network found an approved charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    pub risk_level: &'static str,
    pub risk_score: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve(Approval),
    /// The customer must authenticate (3-D Secure) before the charge can go on.
    RequireAuthentication,
    /// Declined; `blocked` when Radar, not the issuer, refused it.
    Decline {
        decline: Decline,
        blocked: bool,
    },
}

const NORMAL: Decision = Decision::Approve(Approval {
    risk_level: "normal",
    risk_score: 20,
});

fn decline(d: &Decline) -> Decision {
    Decision::Decline {
        decline: *d,
        blocked: false,
    }
}

/// Decides one charge attempt of a card.
pub fn authorize(card: &TestCard, attempt: &Attempt) -> Decision {
    let asked = attempt.request_three_d_secure != ThreeDsRequest::Automatic;
    // Authentication a card needs now, before anything else is decided.
    let needs_auth = match card.behaviour {
        AuthRequiredUnlessSetUp => !(attempt.off_session && attempt.set_up),
        AuthRequiredAlways => true,
        AuthRequiredOnSession => !attempt.off_session,
        AuthThenInsufficientFunds => !attempt.set_up,
        ThreeDsRequired | ThreeDsRequiredThenDecline | ThreeDsRequiredProcessingError => true,
        ThreeDsOptional | ThreeDsAttemptErrors => asked,
        _ => asked && !attempt.off_session,
    };
    if needs_auth && !attempt.authenticated {
        return if attempt.off_session {
            decline(&AUTHENTICATION_REQUIRED)
        } else {
            Decision::RequireAuthentication
        };
    }
    match card.behaviour {
        Declines(d) => decline(d),
        ChargeCustomerFail => decline(&GENERIC_DECLINE),
        RadarBlock => Decision::Decline {
            decline: FRAUDULENT,
            blocked: true,
        },
        AuthThenInsufficientFunds if attempt.set_up => decline(&INSUFFICIENT_FUNDS),
        ThreeDsRequiredThenDecline => decline(&GENERIC_DECLINE),
        ThreeDsRequiredProcessingError | ThreeDsAttemptErrors if attempt.authenticated => {
            decline(&PROCESSING_ERROR)
        }
        Check(CheckOutcome::CvcFails) if attempt.cvc_provided => decline(&INCORRECT_CVC),
        ElevatedRisk => Decision::Approve(Approval {
            risk_level: "elevated",
            risk_score: 65,
        }),
        _ => NORMAL,
    }
}

/// What a card does when it is set up for later use (a SetupIntent's check of
/// the card): what a payment would do, except for 4000000000000341, which sets up
/// and attaches fine and declines only the charges made with it later.
pub fn authorize_setup(card: &TestCard, attempt: &Attempt) -> Decision {
    if card.behaviour == ChargeCustomerFail {
        let as_ordinary = TestCard {
            behaviour: Succeeds,
            ..*card
        };
        return authorize(&as_ordinary, attempt);
    }
    authorize(card, attempt)
}

/// `card.checks` of a new card PaymentMethod, given what was provided with it.
pub fn checks(
    card: &TestCard,
    cvc: bool,
    line1: bool,
    postal_code: bool,
) -> (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
) {
    let (cvc_result, line1_result, zip_result) = match card.behaviour {
        Check(CheckOutcome::CvcFails) => ("fail", "pass", "pass"),
        Check(CheckOutcome::ZipFails) => ("pass", "pass", "fail"),
        Check(CheckOutcome::Line1Fails) => ("pass", "fail", "pass"),
        Check(CheckOutcome::AddressFails) => ("pass", "fail", "fail"),
        Check(CheckOutcome::AddressUnavailable) => ("pass", "unavailable", "unavailable"),
        _ => ("pass", "pass", "pass"),
    };
    (
        line1.then_some(line1_result),
        postal_code.then_some(zip_result),
        cvc.then_some(cvc_result),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_number(n: &str) -> TestCard {
        card_for_number(n)
    }

    #[test]
    fn every_table_number_passes_luhn_and_has_its_brand_prefix() {
        for c in TEST_CARDS {
            assert!(luhn_valid(c.number), "{}", c.number);
            assert_eq!(brand_for_number(c.number), c.brand, "{}", c.number);
        }
        assert!(!luhn_valid("4242424242424241"));
    }

    #[test]
    fn aliases_are_unique() {
        let mut all: Vec<&str> = TEST_CARDS
            .iter()
            .flat_map(|c| c.aliases.iter().copied())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(number_for_alias("pm_card_visa"), Some("4242424242424242"));
        assert_eq!(
            number_for_alias("tok_chargeDeclined"),
            Some("4000000000000002")
        );
    }

    #[test]
    fn declines_and_authentication() {
        let on = Attempt::default();
        let off = Attempt {
            off_session: true,
            ..Default::default()
        };
        let off_set_up = Attempt {
            off_session: true,
            set_up: true,
            ..Default::default()
        };
        let authed = Attempt {
            authenticated: true,
            ..Default::default()
        };
        assert!(matches!(
            authorize(&by_number("4242424242424242"), &on),
            Decision::Approve(_)
        ));
        assert!(
            matches!(authorize(&by_number("4000000000009995"), &on), Decision::Decline { decline, .. } if decline.decline_code == Some("insufficient_funds"))
        );
        let c3155 = by_number("4000002500003155");
        assert_eq!(authorize(&c3155, &on), Decision::RequireAuthentication);
        assert!(
            matches!(authorize(&c3155, &off), Decision::Decline { decline, .. } if decline.code == "authentication_required")
        );
        assert!(matches!(
            authorize(&c3155, &off_set_up),
            Decision::Approve(_)
        ));
        assert!(matches!(authorize(&c3155, &authed), Decision::Approve(_)));
        let c3184 = by_number("4000002760003184");
        assert!(
            matches!(authorize(&c3184, &off_set_up), Decision::Decline { decline, .. } if decline.code == "authentication_required")
        );
        let c3178 = by_number("4000008260003178");
        assert!(matches!(authorize(&c3178, &authed), Decision::Approve(_)));
        assert!(
            matches!(authorize(&c3178, &off_set_up), Decision::Decline { decline, .. } if decline.decline_code == Some("insufficient_funds"))
        );
        let c1629 = by_number("4000008400001629");
        assert!(
            matches!(authorize(&c1629, &authed), Decision::Decline { decline, .. } if decline.code == "card_declined")
        );
        assert!(matches!(
            authorize(&by_number("4100000000000019"), &on),
            Decision::Decline { blocked: true, .. }
        ));
        let any = Attempt {
            request_three_d_secure: ThreeDsRequest::Any,
            ..Default::default()
        };
        assert_eq!(
            authorize(&by_number("4000000000003055"), &any),
            Decision::RequireAuthentication
        );
        assert!(matches!(
            authorize(&by_number("4000000000003055"), &on),
            Decision::Approve(_)
        ));
    }

    #[test]
    fn fingerprints_identify_cards_within_an_account() {
        let fp = fingerprint("acct_1", "4000002500003155");
        assert_eq!(fp.len(), 16);
        assert_ne!(fp, fingerprint("acct_2", "4000002500003155"));
        assert_eq!(
            card_for_fingerprint("acct_1", &fp, "visa").behaviour,
            AuthRequiredUnlessSetUp
        );
        let other = fingerprint("acct_1", "4111111111111111");
        assert_eq!(
            card_for_fingerprint("acct_1", &other, "visa").behaviour,
            Succeeds
        );
    }
}
