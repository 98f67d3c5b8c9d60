//! Currencies: which Stripe accepts, which have no minor unit, and the smallest
//! amount it charges in each.

use crate::error::ApiError;

/// Currencies whose amounts are in whole units (`amount=500` is ¥500).
pub const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// ISO 4217 codes Stripe settles or presents (lowercase).
pub const SUPPORTED: &[&str] = &[
    "usd", "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd",
    "bdt", "bgn", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf",
    "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "etb",
    "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg",
    "huf", "idr", "ils", "inr", "isk", "jmd", "jpy", "kes", "kgs", "khr", "kmf", "krw", "kyd",
    "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd", "mmk", "mnt", "mop",
    "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr", "nzd", "pab",
    "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub", "rwf", "sar", "sbd",
    "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl", "thb", "tjs", "top", "try",
    "ttd", "twd", "tzs", "uah", "ugx", "uyu", "uzs", "vnd", "vuv", "wst", "xaf", "xcd", "xof",
    "xpf", "yer", "zar", "zmw",
];

pub fn is_supported(currency: &str) -> bool {
    SUPPORTED.contains(&currency)
}

/// A `currency` parameter as Stripe reads it: any case, one of its currencies;
/// the lowercase code, or Stripe's 400 naming `param`.
pub fn check(raw: &str, param: &str) -> Result<String, ApiError> {
    let c = raw.to_ascii_lowercase();
    if is_supported(&c) {
        Ok(c)
    } else {
        Err(ApiError::invalid_param(
            param,
            "parameter_invalid_string",
            format!("Invalid currency: {raw}. Stripe currently supports these currencies: usd, eur, gbp, jpy, ..."),
        ))
    }
}

pub fn is_zero_decimal(currency: &str) -> bool {
    ZERO_DECIMAL.contains(&currency)
}

/// The smallest chargeable amount, in the currency's smallest unit (Stripe's
/// published minimums, about US$0.50).
pub fn minimum_amount(currency: &str) -> i64 {
    match currency {
        "aed" | "myr" | "pln" | "ron" => 200,
        "bgn" => 100,
        "czk" => 1500,
        "dkk" => 250,
        "gbp" => 30,
        "hkd" => 400,
        "huf" => 17500,
        "jpy" => 50,
        "mxn" | "thb" => 1000,
        "nok" | "sek" => 300,
        c if is_zero_decimal(c) => 1,
        _ => 50,
    }
}

/// The largest amount Stripe accepts for one charge.
pub const MAXIMUM_AMOUNT: i64 = 99_999_999;
