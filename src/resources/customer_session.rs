//! CustomerSessions: a short-lived client secret with which the browser (the
//! Payment Element, with the publishable key) may act for one customer: see the
//! saved payment methods the session's filters allow, offer to save a new one,
//! remove one, as far as the session's `components` enable each.
//!
//! A CustomerSession has no `id` in Stripe's API: its client secret names it, so
//! it is stored under that secret (within its account, so another account's key
//! finds nothing).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ctx::{Answer, Ctx, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::customer::Customer;

/// How long a client secret works, on the account's clock.
pub const LIFETIME_SECS: i64 = 30 * 60;
/// Stripe's default and largest `payment_method_redisplay_limit`.
pub const DEFAULT_REDISPLAY_LIMIT: i64 = 3;
pub const MAX_REDISPLAY_LIMIT: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Toggle {
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Redisplay {
    Always,
    Limited,
    Unspecified,
}

impl Redisplay {
    pub fn as_str(self) -> &'static str {
        match self {
            Redisplay::Always => "always",
            Redisplay::Limited => "limited",
            Redisplay::Unspecified => "unspecified",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SaveUsage {
    OffSession,
    OnSession,
}

/// `components.payment_element.features`, with Stripe's defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Features {
    pub payment_method_allow_redisplay_filters: Vec<Redisplay>,
    pub payment_method_redisplay: Toggle,
    pub payment_method_redisplay_limit: Option<i64>,
    pub payment_method_remove: Toggle,
    pub payment_method_save: Toggle,
    pub payment_method_save_usage: Option<SaveUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentElement {
    pub enabled: bool,
    pub features: Option<Features>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Components {
    pub buy_button: Enabled,
    pub payment_element: PaymentElement,
    pub pricing_table: Enabled,
}

/// Stripe's customer_session object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CustomerSession {
    pub object: String,
    pub client_secret: String,
    pub components: Components,
    pub created: i64,
    pub customer: String,
    pub expires_at: i64,
    pub livemode: bool,
}

impl StripeObject for CustomerSession {
    const OBJECT: &'static str = "customer_session";
    /// A session is named by its client secret, `cuss_secret_...`.
    const PREFIXES: &'static [&'static str] = &["cuss"];
    const EXPANDABLE: &'static [&'static str] = &["customer"];
    fn id(&self) -> &str {
        &self.client_secret
    }
    fn created(&self) -> i64 {
        self.created
    }
}

// ---- parameters -------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnabledParam {
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesParam {
    pub payment_method_allow_redisplay_filters: Option<Vec<Redisplay>>,
    pub payment_method_redisplay: Option<Toggle>,
    pub payment_method_redisplay_limit: Option<i64>,
    pub payment_method_remove: Option<Toggle>,
    pub payment_method_save: Option<Toggle>,
    pub payment_method_save_usage: Option<SaveUsage>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentElementParam {
    pub enabled: bool,
    #[serde(default)]
    pub features: Option<FeaturesParam>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentsParam {
    pub buy_button: Option<EnabledParam>,
    pub payment_element: Option<PaymentElementParam>,
    pub pricing_table: Option<EnabledParam>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    pub customer: String,
    pub components: ComponentsParam,
}

fn features_from(p: Option<FeaturesParam>) -> Result<Features, ApiError> {
    let p = p.unwrap_or_default();
    if let Some(limit) = p.payment_method_redisplay_limit {
        if !(1..=MAX_REDISPLAY_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_param(
                "components[payment_element][features][payment_method_redisplay_limit]",
                "parameter_invalid_integer",
                format!(
                    "payment_method_redisplay_limit must be between 1 and {MAX_REDISPLAY_LIMIT}."
                ),
            ));
        }
    }
    Ok(Features {
        payment_method_allow_redisplay_filters: p
            .payment_method_allow_redisplay_filters
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| vec![Redisplay::Always]),
        payment_method_redisplay: p.payment_method_redisplay.unwrap_or(Toggle::Disabled),
        payment_method_redisplay_limit: Some(
            p.payment_method_redisplay_limit
                .unwrap_or(DEFAULT_REDISPLAY_LIMIT),
        ),
        payment_method_remove: p.payment_method_remove.unwrap_or(Toggle::Disabled),
        payment_method_save: p.payment_method_save.unwrap_or(Toggle::Disabled),
        payment_method_save_usage: p.payment_method_save_usage,
    })
}

pub async fn create(ctx: &mut Ctx, params: &CreateParams) -> Result<Answer, ApiError> {
    let p = params.clone();
    let customer: Customer = ctx
        .fetch(&p.customer)
        .await
        .map_err(|e| e.referenced_by("customer"))?;
    let payment_element = match p.components.payment_element {
        Some(pe) => PaymentElement {
            enabled: pe.enabled,
            features: Some(features_from(pe.features)?),
        },
        None => PaymentElement {
            enabled: false,
            features: None,
        },
    };
    let components = Components {
        buy_button: Enabled {
            enabled: p.components.buy_button.is_some_and(|b| b.enabled),
        },
        payment_element,
        pricing_table: Enabled {
            enabled: p.components.pricing_table.is_some_and(|b| b.enabled),
        },
    };
    let enabled = [
        components.buy_button.enabled,
        components.payment_element.enabled,
        components.pricing_table.enabled,
    ]
    .iter()
    .filter(|e| **e)
    .count();
    if enabled != 1 {
        return Err(ApiError::invalid_request(
            "Exactly 1 component must be enabled: one of components[buy_button][enabled], components[payment_element][enabled] or components[pricing_table][enabled].",
        )
        .with_param("components"));
    }
    let session = CustomerSession {
        object: CustomerSession::OBJECT.into(),
        client_secret: format!("cuss_secret_{}", ids::random_string(48)),
        components,
        created: ctx.now,
        customer: customer.id,
        expires_at: ctx.now + LIFETIME_SECS,
        livemode: false,
    };
    Ok(ctx.save(&session)?.into())
}

/// The live session a client secret names, or Stripe's 401-free refusal: an
/// expired, foreign or wrong secret learns nothing but that it does not work.
pub async fn by_client_secret(
    ctx: &mut Ctx,
    client_secret: &str,
    param: &str,
) -> Result<CustomerSession, ApiError> {
    let refused = || {
        ApiError::invalid_request(
            "The provided customer_session_client_secret does not match any active CustomerSession.",
        )
        .with_code("resource_missing")
        .with_param(param)
    };
    if !client_secret.starts_with("cuss_secret_") {
        return Err(refused());
    }
    match ctx.find::<CustomerSession>(client_secret).await? {
        Some(session) if ctx.now < session.expires_at => Ok(session),
        _ => Err(refused()),
    }
}

impl CustomerSession {
    /// The Payment Element's features, when the session enables the Payment Element.
    pub fn payment_element(&self) -> Option<&Features> {
        let pe = &self.components.payment_element;
        pe.enabled.then_some(pe.features.as_ref()).flatten()
    }

    /// The session as stripe.js is shown it: no client secret echoed back.
    pub fn browser_view(&self) -> Result<Value, ApiError> {
        let mut value = serde_json::to_value(self)
            .map_err(|e| ApiError::internal("customer session does not encode", e))?;
        if let Value::Object(map) = &mut value {
            map.shift_remove("client_secret");
        }
        Ok(value)
    }
}
