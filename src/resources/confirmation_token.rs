//! ConfirmationTokens: the payment details the Payment Element collected, carried
//! from the browser to the merchant's server, which confirms a PaymentIntent or
//! SetupIntent with them (seed 004, "Finalize payments on the server").
//!
//! stripe.js creates one with the publishable key (`POST /v1/confirmation_tokens`),
//! a server test with Stripe's helper (`POST /v1/test_helpers/confirmation_tokens`).
//! A token holds the PaymentMethod it stands for, not yet created: confirming an
//! intent with it creates that PaymentMethod (or uses the existing one it names)
//! and writes the token's `return_url`, `shipping` and `setup_future_usage` onto
//! the intent where the intent has none of its own. A token confirms one intent,
//! once, within 12 hours of the account's clock.
//!
//! Using a token only inserts rows: the use is a record of its own ([`TokenUse`],
//! whose id is derived from the token's, so a second use collides with the first),
//! and the token's `payment_intent`/`setup_intent` are read from it. A payment
//! confirmed with a token thus commits as a plain confirm does, new rows only,
//! which PostgreSQL takes in one statement with the other payments of its group.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ctx::{Answer, Ctx, StripeObject};
use crate::error::ApiError;
use crate::ids;
use crate::resources::common::params::Field;
use crate::resources::payment_method::{self, PaymentMethod, PaymentMethodData};
use crate::resources::{Address, ShippingParam};

/// How long a token can be used after it was made.
pub const LIFETIME_SECS: i64 = 12 * 60 * 60;

/// Stripe's confirmation_token object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ConfirmationToken {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub expires_at: Option<i64>,
    pub livemode: bool,
    pub mandate_data: Option<Value>,
    pub payment_intent: Option<String>,
    pub payment_method_preview: Option<Value>,
    pub return_url: Option<String>,
    pub setup_future_usage: Option<String>,
    pub setup_intent: Option<String>,
    pub shipping: Option<TokenShipping>,
    pub use_stripe_sdk: bool,
}

/// `shipping` as a ConfirmationToken shows it (no carrier or tracking number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenShipping {
    pub address: Address,
    pub name: String,
    pub phone: Option<String>,
}

impl StripeObject for ConfirmationToken {
    const OBJECT: &'static str = "confirmation_token";
    const PREFIXES: &'static [&'static str] = &["ctoken"];
    const EXPANDABLE: &'static [&'static str] = &[];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
}

/// A token as payground stores it: Stripe's object, and beside it the
/// PaymentMethod it stands for (built and checked when the token was made, saved
/// when it is used) or the existing one it names. Stripe keeps this without
/// showing it; answers show [`StoredToken::token`] alone.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StoredToken {
    #[serde(flatten)]
    pub token: ConfirmationToken,
    pub payground_method: TokenMethod,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenMethod {
    pub existing: Option<String>,
    pub new: Option<PaymentMethod>,
}

impl StripeObject for StoredToken {
    const OBJECT: &'static str = "confirmation_token";
    const PREFIXES: &'static [&'static str] = &["ctoken"];
    const EXPANDABLE: &'static [&'static str] = &[];
    fn id(&self) -> &str {
        &self.token.id
    }
    fn created(&self) -> i64 {
        self.token.created
    }
}

/// The use of a token: which intent it confirmed. Its id is the token's with
/// another prefix, so two uses of one token are two inserts of one id, and only
/// one commits.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenUse {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub payment_intent: Option<String>,
    pub setup_intent: Option<String>,
}

impl StripeObject for TokenUse {
    const OBJECT: &'static str = "payground.confirmation_token_use";
    const PREFIXES: &'static [&'static str] = &["pgcu"];
    const EXPANDABLE: &'static [&'static str] = &[];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
}

fn use_id(token: &str) -> String {
    format!("pgcu_{token}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetupFutureUsage {
    OffSession,
    OnSession,
}

impl SetupFutureUsage {
    fn as_str(self) -> &'static str {
        match self {
            SetupFutureUsage::OffSession => "off_session",
            SetupFutureUsage::OnSession => "on_session",
        }
    }
}

/// The body of `POST /v1/confirmation_tokens` (what stripe.js sends) and of
/// Stripe's test helper.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CreateParams {
    pub mandate_data: Option<Value>,
    pub payment_method: Option<String>,
    pub payment_method_data: Option<PaymentMethodData>,
    pub payment_method_options: Option<Value>,
    pub return_url: Option<String>,
    pub setup_future_usage: Option<SetupFutureUsage>,
    pub shipping: Field<ShippingParam>,
    pub use_stripe_sdk: Option<bool>,
}

/// What a PaymentMethod shows in a token's `payment_method_preview`: its details
/// without the fields that only a created PaymentMethod has.
fn preview(pm: &PaymentMethod) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(pm)
        .map_err(|e| ApiError::internal("payment method does not encode", e))?;
    if let Value::Object(map) = &mut value {
        for gone in ["id", "object", "created", "livemode", "metadata"] {
            map.shift_remove(gone);
        }
    }
    Ok(value)
}

pub async fn create(ctx: &mut Ctx, params: &CreateParams) -> Result<Answer, ApiError> {
    let p = params.clone();
    let (existing, new) = match (p.payment_method, p.payment_method_data) {
        (Some(_), Some(_)) => return Err(ApiError::invalid_request(
            "You may only specify one of these parameters: payment_method, payment_method_data.",
        )
        .with_param("payment_method_data")),
        (Some(id), None) => {
            let pm = payment_method::resolve_without_saving(ctx, &id, "payment_method").await?;
            match pm {
                (pm, true) => (None, Some(pm)),
                (pm, false) => (Some(pm), None),
            }
        }
        (None, Some(data)) => (
            None,
            Some(payment_method::build(ctx, data, "payment_method_data")?),
        ),
        (None, None) => return Err(ApiError::missing_param("payment_method_data")),
    };
    let shown = existing
        .as_ref()
        .or(new.as_ref())
        .map(preview)
        .transpose()?;
    let id = ids::new_id("ctoken");
    let token = ConfirmationToken {
        id: id.clone(),
        object: ConfirmationToken::OBJECT.into(),
        created: ctx.now,
        expires_at: Some(ctx.now + LIFETIME_SECS),
        livemode: false,
        mandate_data: p.mandate_data,
        payment_intent: None,
        payment_method_preview: shown,
        return_url: p.return_url,
        setup_future_usage: p.setup_future_usage.map(|s| s.as_str().to_string()),
        setup_intent: None,
        shipping: match p.shipping {
            Field::Set(s) => Some(TokenShipping {
                address: s.address,
                name: s.name,
                phone: s.phone,
            }),
            _ => None,
        },
        use_stripe_sdk: p.use_stripe_sdk.unwrap_or(true),
    };
    let answer = encode(&token)?;
    ctx.save(&StoredToken {
        token,
        payground_method: TokenMethod {
            existing: existing.map(|pm| pm.id),
            new,
        },
    })?;
    Ok(Answer::Tree(answer))
}

fn encode(token: &ConfirmationToken) -> Result<Value, ApiError> {
    serde_json::to_value(token)
        .map_err(|e| ApiError::internal("confirmation token does not encode", e))
}

/// The token as Stripe shows it, with the intent it confirmed once it is used.
pub async fn retrieve(ctx: &mut Ctx, id: &str) -> Result<Answer, ApiError> {
    let Some(stored) = ctx.find::<StoredToken>(id).await? else {
        return Err(ApiError::no_such(ConfirmationToken::OBJECT, id));
    };
    let mut token = stored.token;
    if let Some(used) = ctx.find::<TokenUse>(&use_id(id)).await? {
        token.payment_intent = used.payment_intent;
        token.setup_intent = used.setup_intent;
    }
    Ok(Answer::Tree(encode(&token)?))
}

/// The intent a token is used on.
#[derive(Debug, Clone, Copy)]
pub enum Use<'a> {
    PaymentIntent(&'a str),
    SetupIntent(&'a str),
}

/// What a used token hands the intent it confirms.
#[derive(Debug)]
pub struct Redeemed {
    pub payment_method: PaymentMethod,
    pub setup_future_usage: Option<String>,
    pub return_url: Option<String>,
    pub shipping: Option<TokenShipping>,
    pub mandate_data: Option<Value>,
}

fn refused(message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message).with_param("confirmation_token")
}

/// Uses the token on an intent: once, before it expires. The PaymentMethod it
/// stands for is created now (or the existing one it names is loaded); the token
/// records the intent, in the intent's own transaction, so a confirm that fails
/// without a trace leaves the token unused.
pub async fn redeem(ctx: &mut Ctx, id: &str, on: Use<'_>) -> Result<Redeemed, ApiError> {
    let Some(stored) = ctx.find::<StoredToken>(id).await? else {
        return Err(ApiError::no_such("confirmationtoken", id).referenced_by("confirmation_token"));
    };
    if let Some(used) = ctx.find::<TokenUse>(&use_id(id)).await? {
        return Err(refused(format!(
            "This ConfirmationToken ({id}) has already been used to confirm a {}. Create a new ConfirmationToken with stripe.createConfirmationToken.",
            if used.payment_intent.is_some() { "PaymentIntent" } else { "SetupIntent" }
        ))
        .with_code("confirmation_token_already_used"));
    }
    let token = stored.token;
    if token.expires_at.is_some_and(|at| ctx.now >= at) {
        return Err(refused(format!(
            "This ConfirmationToken ({id}) has expired: tokens can be used for 12 hours after they are created. Create a new ConfirmationToken with stripe.createConfirmationToken."
        ))
        .with_code("confirmation_token_expired"));
    }
    let payment_method = match (
        stored.payground_method.existing,
        stored.payground_method.new,
    ) {
        (Some(existing), _) => ctx
            .fetch::<PaymentMethod>(&existing)
            .await
            .map_err(|_| payment_method::no_such(&existing, "confirmation_token"))?,
        (None, Some(mut new)) => {
            new.created = ctx.now;
            ctx.save(&new)?;
            new
        }
        (None, None) => return Err(ApiError::internal("a ConfirmationToken has no method", id)),
    };
    let (payment_intent, setup_intent) = match on {
        Use::PaymentIntent(pi) => (Some(pi.to_string()), None),
        Use::SetupIntent(si) => (None, Some(si.to_string())),
    };
    ctx.save(&TokenUse {
        id: use_id(id),
        object: TokenUse::OBJECT.into(),
        created: ctx.now,
        payment_intent,
        setup_intent,
    })?;
    Ok(Redeemed {
        payment_method,
        setup_future_usage: token.setup_future_usage,
        return_url: token.return_url,
        shipping: token.shipping,
        mandate_data: token.mandate_data,
    })
}
