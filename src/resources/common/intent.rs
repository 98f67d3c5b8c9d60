//! What PaymentIntents and SetupIntents share: the payment method types they
//! accept, the client secret a publishable key proves itself with, and the
//! hosted 3-D Secure page their `next_action` sends the customer to.

use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::ids;

/// The payment method types an intent may name.
pub const KNOWN_TYPES: &[&str] = &["card", "us_bank_account", "sepa_debit", "link"];

/// `payment_method_types` as given: not empty, every entry a type payground knows.
pub fn check_types(types: &[String]) -> Result<(), ApiError> {
    if types.is_empty() {
        return Err(ApiError::invalid_param(
            "payment_method_types",
            "parameter_invalid_empty",
            "payment_method_types must not be empty.",
        ));
    }
    for (i, t) in types.iter().enumerate() {
        if !KNOWN_TYPES.contains(&t.as_str()) {
            return Err(ApiError::invalid_param(
                &format!("payment_method_types[{i}]"),
                "payment_method_invalid_parameter",
                format!("The payment method type \"{t}\" is invalid. Please ensure the provided type is activated in your dashboard (https://dashboard.stripe.com/account/payments/settings) and your account is enabled for any preview features that you are trying to use."),
            ));
        }
    }
    Ok(())
}

/// A ConfirmationToken carries the payment method: naming one besides it is a
/// contradiction Stripe refuses.
pub fn only_one_method_source(
    payment_method: &Option<String>,
    payment_method_data: &Option<crate::resources::payment_method::PaymentMethodData>,
) -> Result<(), ApiError> {
    let other = if payment_method.is_some() {
        "payment_method"
    } else if payment_method_data.is_some() {
        "payment_method_data"
    } else {
        return Ok(());
    };
    Err(ApiError::invalid_request(format!(
        "You may only specify one of these parameters: confirmation_token, {other}."
    ))
    .with_param(other))
}

/// A new intent's client secret: its id, `_secret_`, and 24 random characters.
pub fn new_client_secret(id: &str) -> String {
    format!("{id}_secret_{}", ids::random_string(24))
}

/// Whether the client secret a publishable-key request gave is the intent's.
pub fn client_secret_matches(given: Option<&str>, real: Option<&str>) -> bool {
    match (given, real) {
        (Some(given), Some(real)) => {
            crate::crypto::constant_time_eq(given.as_bytes(), real.as_bytes())
        }
        _ => false,
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The hosted 3-D Secure page for an intent (`pi_` or `seti_`).
pub fn authentication_url(ctx: &Ctx, intent_id: &str, client_secret: Option<&str>) -> String {
    format!(
        "{}/payground/authenticate/{}/{}?client_secret={}",
        ctx.public_url,
        ctx.account_id(),
        intent_id,
        urlencode(client_secret.unwrap_or_default())
    )
}

/// The `next_action` that sends the customer through 3-D Secure: a redirect when
/// the confirm gave a `return_url`, otherwise the page stripe.js opens itself.
pub fn three_d_secure_action(url: &str, return_url: Option<&str>, payment_method: &str) -> Value {
    match return_url {
        Some(return_url) => json!({
            "type": "redirect_to_url",
            "redirect_to_url": {
                "return_url": return_url,
                "url": format!("{url}&return_url={}", urlencode(return_url)),
            },
        }),
        None => json!({
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {
                "type": "three_d_secure_redirect",
                "stripe_js": url,
                "source": payment_method,
            },
        }),
    }
}
