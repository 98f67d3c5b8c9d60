//! PaymentIntents: the state machine as a table ([`TRANSITIONS`]), and the
//! operations that move through it: create, update, confirm, capture, cancel, the
//! outcome of 3-D Secure, and settlement of delayed methods.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::ctx::{previous_attributes, Answer, Ctx, KeyKind, Saved, StripeObject};
use crate::error::{ApiError, ErrorType};
use crate::ids;
use crate::network::{self, Decision, ThreeDsRequest};
use crate::resources::balance_transaction;
use crate::resources::charge::{self, Charge};
use crate::resources::common::intent::{
    authentication_url, check_types, client_secret_matches, new_client_secret,
    only_one_method_source, three_d_secure_action, KNOWN_TYPES,
};
use crate::resources::common::list::{self, ListParams};
use crate::resources::common::params::{Field, MetadataParam};
use crate::resources::common::state_machine::{
    self as machine, check, transition, Machine, Transition,
};
use crate::resources::confirmation_token::{self, Use};
use crate::resources::currency;
use crate::resources::customer::Customer;
use crate::resources::payment_method::{self, PaymentMethod, PaymentMethodData};
use crate::resources::registry::{Fixture, Step};
use crate::resources::search::{self, FieldKind, SearchField, SearchParams};
use crate::resources::{apply_metadata, new_metadata, validate_email, Address, Metadata, Shipping};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AutomaticPaymentMethods {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_redirects: Option<String>,
    pub enabled: bool,
}

/// Stripe's payment_intent object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PaymentIntent {
    pub id: String,
    pub object: String,
    pub amount: i64,
    pub amount_capturable: i64,
    pub amount_details: Value,
    pub amount_received: i64,
    pub application: Option<String>,
    pub application_fee_amount: Option<i64>,
    pub automatic_payment_methods: Option<AutomaticPaymentMethods>,
    pub canceled_at: Option<i64>,
    pub cancellation_reason: Option<String>,
    pub capture_method: String,
    pub client_secret: Option<String>,
    pub confirmation_method: String,
    pub created: i64,
    pub currency: String,
    pub customer: Option<String>,
    pub description: Option<String>,
    pub invoice: Option<String>,
    pub last_payment_error: Option<Value>,
    pub latest_charge: Option<String>,
    pub livemode: bool,
    pub metadata: Metadata,
    pub next_action: Option<Value>,
    pub on_behalf_of: Option<String>,
    pub payment_method: Option<String>,
    pub payment_method_configuration_details: Option<Value>,
    pub payment_method_options: Option<Value>,
    pub payment_method_types: Vec<String>,
    pub processing: Option<Value>,
    pub receipt_email: Option<String>,
    pub review: Option<String>,
    pub setup_future_usage: Option<String>,
    pub shipping: Option<Shipping>,
    pub source: Option<Value>,
    pub statement_descriptor: Option<String>,
    pub statement_descriptor_suffix: Option<String>,
    pub status: Status,
    pub transfer_data: Option<Value>,
    pub transfer_group: Option<String>,
}

impl StripeObject for PaymentIntent {
    const OBJECT: &'static str = "payment_intent";
    const PREFIXES: &'static [&'static str] = &["pi"];
    const EXPANDABLE: &'static [&'static str] = &[
        "amount_details",
        "application",
        "automatic_payment_methods",
        "customer",
        "invoice",
        "last_payment_error",
        "latest_charge",
        "next_action",
        "on_behalf_of",
        "payment_method",
        "payment_method_configuration_details",
        "payment_method_options",
        "processing",
        "review",
        "shipping",
        "shipping.address",
        "transfer_data",
    ];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        // `status` lets settlement find processing payments without a scan. Only that
        // status is indexed: no list or job asks for another, and every index row is
        // written by the single SQLite writer (a payment that ends `succeeded` saves
        // one B-tree insert, ~2% of a confirm's instructions).
        let mut index = Vec::with_capacity(2);
        if self.status == Status::Processing {
            index.push((
                "status".to_string(),
                Status::Processing.as_str().to_string(),
            ));
        }
        if let Some(c) = &self.customer {
            index.push(("customer".to_string(), c.clone()));
        }
        index
    }
}

/// A PaymentIntent's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
}

impl machine::Status for Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::RequiresPaymentMethod => "requires_payment_method",
            Status::RequiresConfirmation => "requires_confirmation",
            Status::RequiresAction => "requires_action",
            Status::Processing => "processing",
            Status::RequiresCapture => "requires_capture",
            Status::Canceled => "canceled",
            Status::Succeeded => "succeeded",
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        machine::Status::as_str(self)
    }
}

/// What a request (or the hosted page, or a job) asks of a PaymentIntent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Confirm,
    Capture,
    Cancel,
    IncrementAuthorization,
    /// The customer finished (or failed) 3-D Secure on the hosted page.
    Authenticate,
    /// A delayed method (bank debit) settled.
    Settle,
}

impl machine::Action for Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Confirm => "confirm",
            Action::Capture => "capture",
            Action::Cancel => "cancel",
            Action::IncrementAuthorization => "increment the authorization of",
            Action::Authenticate => "authenticate",
            Action::Settle => "settle",
        }
    }

    fn past(self) -> Option<&'static str> {
        match self {
            Action::Confirm => Some("confirmed"),
            Action::Capture => Some("captured"),
            Action::Cancel => Some("canceled"),
            _ => None,
        }
    }
}

use Status::{
    Canceled, Processing, RequiresAction, RequiresCapture, RequiresConfirmation,
    RequiresPaymentMethod, Succeeded,
};

/// Statuses a payment can still be changed in before it is attempted.
const UNCONFIRMED: &[Status] = &[RequiresPaymentMethod, RequiresConfirmation, RequiresAction];
/// Confirm's statuses, in the order Stripe's refusal lists them.
const CONFIRMABLE: &[Status] = &[RequiresConfirmation, RequiresPaymentMethod, RequiresAction];

const fn row(
    from: &'static [Status],
    action: Action,
    to: Status,
    event: Option<&'static str>,
) -> Transition<Status, Action> {
    Transition {
        from,
        action,
        to,
        event,
    }
}

/// The PaymentIntent state machine, as Stripe moves it. A confirm (or the
/// outcome of 3-D Secure) ends in whichever status the network's answer
/// leads to; each such end has its event.
pub const TRANSITIONS: &[Transition<Status, Action>] = &[
    row(
        &[],
        Action::Create,
        RequiresPaymentMethod,
        Some("payment_intent.created"),
    ),
    row(
        &[],
        Action::Create,
        RequiresConfirmation,
        Some("payment_intent.created"),
    ),
    row(UNCONFIRMED, Action::Update, RequiresConfirmation, None),
    row(
        CONFIRMABLE,
        Action::Confirm,
        RequiresAction,
        Some("payment_intent.requires_action"),
    ),
    row(
        CONFIRMABLE,
        Action::Confirm,
        Succeeded,
        Some("payment_intent.succeeded"),
    ),
    row(
        CONFIRMABLE,
        Action::Confirm,
        RequiresCapture,
        Some("payment_intent.amount_capturable_updated"),
    ),
    row(
        CONFIRMABLE,
        Action::Confirm,
        Processing,
        Some("payment_intent.processing"),
    ),
    row(
        CONFIRMABLE,
        Action::Confirm,
        RequiresPaymentMethod,
        Some("payment_intent.payment_failed"),
    ),
    row(
        &[RequiresAction],
        Action::Authenticate,
        Succeeded,
        Some("payment_intent.succeeded"),
    ),
    row(
        &[RequiresAction],
        Action::Authenticate,
        RequiresCapture,
        Some("payment_intent.amount_capturable_updated"),
    ),
    row(
        &[RequiresAction],
        Action::Authenticate,
        RequiresPaymentMethod,
        Some("payment_intent.payment_failed"),
    ),
    row(
        &[RequiresCapture],
        Action::Capture,
        Succeeded,
        Some("payment_intent.succeeded"),
    ),
    row(
        &[RequiresCapture],
        Action::IncrementAuthorization,
        RequiresCapture,
        Some("payment_intent.amount_capturable_updated"),
    ),
    row(
        &[
            RequiresPaymentMethod,
            RequiresCapture,
            RequiresConfirmation,
            RequiresAction,
        ],
        Action::Cancel,
        Canceled,
        Some("payment_intent.canceled"),
    ),
    row(
        &[Processing],
        Action::Settle,
        Succeeded,
        Some("payment_intent.succeeded"),
    ),
    row(
        &[Processing],
        Action::Settle,
        RequiresPaymentMethod,
        Some("payment_intent.payment_failed"),
    ),
];

impl Machine for PaymentIntent {
    type Status = Status;
    type Action = Action;
    const NOUN: &'static str = "PaymentIntent";
    const UNEXPECTED_STATE: &'static str = "payment_intent_unexpected_state";
    const TRANSITIONS: &'static [Transition<Status, Action>] = TRANSITIONS;

    fn status(&self) -> Status {
        self.status
    }

    fn set_status(&mut self, status: Status) {
        self.status = status;
    }

    fn attach_to(&self, error: &mut ApiError) {
        error.payment_intent = serde_json::to_value(self).ok();
    }
}

// ---- parameters -------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMethod {
    Automatic,
    AutomaticAsync,
    Manual,
}

impl CaptureMethod {
    fn as_str(self) -> &'static str {
        match self {
            CaptureMethod::Automatic => "automatic",
            CaptureMethod::AutomaticAsync => "automatic_async",
            CaptureMethod::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationMethod {
    Automatic,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetupFutureUsage {
    OnSession,
    OffSession,
}

impl SetupFutureUsage {
    fn as_str(self) -> &'static str {
        match self {
            SetupFutureUsage::OnSession => "on_session",
            SetupFutureUsage::OffSession => "off_session",
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutomaticPaymentMethodsParam {
    pub enabled: bool,
    #[serde(default)]
    pub allow_redirects: Option<AllowRedirects>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AllowRedirects {
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestThreeDSecure {
    Any,
    Automatic,
    Challenge,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CardOptionsParam {
    pub capture_method: Field<CaptureMethod>,
    pub request_three_d_secure: Option<RequestThreeDSecure>,
    pub require_cvc_recollection: Option<bool>,
    pub setup_future_usage: Field<String>,
    pub request_incremental_authorization: Option<String>,
    pub request_extended_authorization: Option<String>,
    pub request_multicapture: Option<String>,
    pub request_overcapture: Option<String>,
    pub statement_descriptor_suffix_kana: Option<String>,
    pub statement_descriptor_suffix_kanji: Option<String>,
    pub cvc_token: Option<String>,
    pub network: Option<String>,
    pub installments: Option<Value>,
    pub mandate_options: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentMethodOptionsParam {
    pub card: Option<CardOptionsParam>,
    pub us_bank_account: Option<Value>,
    pub sepa_debit: Option<Value>,
    pub link: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiShippingParam {
    pub address: Address,
    #[serde(default)]
    pub carrier: Option<String>,
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub tracking_number: Option<String>,
}

impl From<PiShippingParam> for Shipping {
    fn from(p: PiShippingParam) -> Self {
        Shipping {
            address: p.address,
            carrier: p.carrier,
            name: p.name,
            phone: p.phone,
            tracking_number: p.tracking_number,
        }
    }
}

/// `off_session`: a boolean, or Stripe's `one_off` / `recurring`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffSession(pub bool);

impl JsonSchema for OffSession {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OffSession".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"anyOf": [
            {"type": "boolean"},
            {"type": "string", "enum": ["one_off", "recurring"]},
        ]})
    }
}

impl<'de> Deserialize<'de> for OffSession {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Bool(b) => Ok(OffSession(*b)),
            Value::String(s)
                if s.eq_ignore_ascii_case("true") || s == "one_off" || s == "recurring" =>
            {
                Ok(OffSession(true))
            }
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(OffSession(false)),
            other => Err(serde::de::Error::custom(format!(
                "Invalid off_session: must be a boolean, one_off or recurring (got {other})"
            ))),
        }
    }
}

/// The parameters confirm shares with create (`confirm=true`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConfirmParams {
    pub capture_method: Option<CaptureMethod>,
    pub client_secret: Option<String>,
    pub confirmation_token: Option<String>,
    pub error_on_requires_action: Option<bool>,
    pub mandate: Option<String>,
    pub mandate_data: Option<Value>,
    pub off_session: Option<OffSession>,
    pub payment_method: Option<String>,
    pub payment_method_data: Option<PaymentMethodData>,
    pub payment_method_options: Option<PaymentMethodOptionsParam>,
    pub payment_method_types: Option<Vec<String>>,
    pub radar_options: Option<Value>,
    pub receipt_email: Field<String>,
    pub return_url: Option<String>,
    pub setup_future_usage: Field<SetupFutureUsage>,
    pub shipping: Field<PiShippingParam>,
    pub use_stripe_sdk: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub application_fee_amount: Option<i64>,
    #[serde(default)]
    pub automatic_payment_methods: Option<AutomaticPaymentMethodsParam>,
    #[serde(default)]
    pub capture_method: Option<CaptureMethod>,
    #[serde(default)]
    pub confirm: Option<bool>,
    #[serde(default)]
    pub confirmation_method: Option<ConfirmationMethod>,
    #[serde(default)]
    pub confirmation_token: Option<String>,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub error_on_requires_action: Option<bool>,
    #[serde(default)]
    pub mandate: Option<String>,
    #[serde(default)]
    pub mandate_data: Option<Value>,
    #[serde(default)]
    pub metadata: MetadataParam,
    #[serde(default)]
    pub off_session: Option<OffSession>,
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    #[serde(default)]
    pub payment_method: Option<String>,
    #[serde(default)]
    pub payment_method_configuration: Option<String>,
    #[serde(default)]
    pub payment_method_data: Option<PaymentMethodData>,
    #[serde(default)]
    pub payment_method_options: Option<PaymentMethodOptionsParam>,
    #[serde(default)]
    pub payment_method_types: Option<Vec<String>>,
    #[serde(default)]
    pub radar_options: Option<Value>,
    #[serde(default)]
    pub receipt_email: Option<String>,
    #[serde(default)]
    pub return_url: Option<String>,
    #[serde(default)]
    pub setup_future_usage: Option<SetupFutureUsage>,
    #[serde(default)]
    pub shipping: Option<PiShippingParam>,
    #[serde(default)]
    pub statement_descriptor: Option<String>,
    #[serde(default)]
    pub statement_descriptor_suffix: Option<String>,
    #[serde(default)]
    pub transfer_data: Option<Value>,
    #[serde(default)]
    pub transfer_group: Option<String>,
    #[serde(default)]
    pub use_stripe_sdk: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateParams {
    pub amount: Option<i64>,
    pub application_fee_amount: Field<i64>,
    pub capture_method: Option<CaptureMethod>,
    pub currency: Option<String>,
    pub customer: Option<String>,
    pub description: Field<String>,
    pub metadata: MetadataParam,
    pub payment_method: Option<String>,
    pub payment_method_configuration: Option<String>,
    pub payment_method_data: Option<PaymentMethodData>,
    pub payment_method_options: Option<PaymentMethodOptionsParam>,
    pub payment_method_types: Option<Vec<String>>,
    pub receipt_email: Field<String>,
    pub setup_future_usage: Field<SetupFutureUsage>,
    pub shipping: Field<PiShippingParam>,
    pub statement_descriptor: Field<String>,
    pub statement_descriptor_suffix: Field<String>,
    pub transfer_data: Option<Value>,
    pub transfer_group: Field<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureParams {
    pub amount_to_capture: Option<i64>,
    pub application_fee_amount: Option<i64>,
    pub final_capture: Option<bool>,
    pub metadata: MetadataParam,
    pub statement_descriptor: Option<String>,
    pub statement_descriptor_suffix: Option<String>,
    pub transfer_data: Option<Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancellationReason {
    Abandoned,
    Duplicate,
    Fraudulent,
    RequestedByCustomer,
}

impl CancellationReason {
    fn as_str(self) -> &'static str {
        match self {
            CancellationReason::Abandoned => "abandoned",
            CancellationReason::Duplicate => "duplicate",
            CancellationReason::Fraudulent => "fraudulent",
            CancellationReason::RequestedByCustomer => "requested_by_customer",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CancelParams {
    pub cancellation_reason: Option<CancellationReason>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrementParams {
    pub amount: i64,
    #[serde(default)]
    pub application_fee_amount: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: MetadataParam,
    #[serde(default)]
    pub statement_descriptor: Option<String>,
    #[serde(default)]
    pub transfer_data: Option<Value>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListFilters {
    pub customer: Option<String>,
}

pub const SEARCH_FIELDS: &[SearchField] = &[
    SearchField {
        name: "amount",
        path: &["amount"],
        kind: FieldKind::Number,
    },
    SearchField {
        name: "created",
        path: &["created"],
        kind: FieldKind::Number,
    },
    SearchField {
        name: "currency",
        path: &["currency"],
        kind: FieldKind::Token,
    },
    SearchField {
        name: "customer",
        path: &["customer"],
        kind: FieldKind::Token,
    },
    SearchField {
        name: "status",
        path: &["status"],
        kind: FieldKind::Token,
    },
];

// ---- helpers -----------------------------------------------------------------

fn encode(pi: &PaymentIntent) -> Result<Value, ApiError> {
    serde_json::to_value(pi).map_err(|e| ApiError::internal("payment intent does not encode", e))
}

/// What a publishable key may see of a PaymentIntent (stripe.js's view).
pub fn publishable_view(pi: &Value) -> Value {
    const VISIBLE: &[&str] = &[
        "id",
        "object",
        "amount",
        "amount_details",
        "automatic_payment_methods",
        "canceled_at",
        "cancellation_reason",
        "capture_method",
        "client_secret",
        "confirmation_method",
        "created",
        "currency",
        "description",
        "last_payment_error",
        "livemode",
        "next_action",
        "payment_method",
        "payment_method_configuration_details",
        "payment_method_types",
        "processing",
        "receipt_email",
        "setup_future_usage",
        "shipping",
        "source",
        "status",
    ];
    match pi {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| VISIBLE.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The response for the caller: the whole object for a secret key, stripe.js's view otherwise.
pub fn view_for(ctx: &Ctx, value: Value) -> Value {
    if ctx.request.key_kind == KeyKind::Publishable {
        publishable_view(&value)
    } else {
        value
    }
}

/// [`view_for`] of an intent just saved: its text as saved for a secret key.
fn answer_for(ctx: &Ctx, saved: Saved) -> Answer {
    if ctx.request.key_kind == KeyKind::Publishable {
        Answer::Tree(publishable_view(&saved))
    } else {
        saved.into()
    }
}

fn check_amount(amount: i64, currency: &str, param: &str) -> Result<(), ApiError> {
    let min = currency::minimum_amount(currency);
    if amount < min {
        let shown = if currency::is_zero_decimal(currency) {
            format!("{min} {currency}")
        } else {
            format!("{}.{:02} {currency}", min / 100, min % 100)
        };
        return Err(ApiError::invalid_param(
            param,
            "amount_too_small",
            format!("Amount must be at least {shown}"),
        ));
    }
    if amount > currency::MAXIMUM_AMOUNT {
        return Err(ApiError::invalid_param(
            param,
            "amount_too_large",
            "Amount must be no more than 99999999",
        ));
    }
    Ok(())
}

fn check_currency(raw: &str) -> Result<String, ApiError> {
    currency::check(raw, "currency")
}

fn card_options(pi: &PaymentIntent) -> Map<String, Value> {
    pi.payment_method_options
        .as_ref()
        .and_then(|o| o.get("card"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Merges `payment_method_options` into what the intent shows.
fn apply_options(pi: &mut PaymentIntent, p: &PaymentMethodOptionsParam) {
    let mut options = pi
        .payment_method_options
        .clone()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    if let Some(card) = &p.card {
        let mut c = card_options(pi);
        if let Some(r) = card.request_three_d_secure {
            c.insert(
                "request_three_d_secure".into(),
                json!(match r {
                    RequestThreeDSecure::Any => "any",
                    RequestThreeDSecure::Automatic => "automatic",
                    RequestThreeDSecure::Challenge => "challenge",
                }),
            );
        }
        match card.capture_method {
            Field::Set(m) => {
                c.insert("capture_method".into(), json!(m.as_str()));
            }
            Field::Clear => {
                c.remove("capture_method");
            }
            Field::Absent => {}
        }
        if let Some(r) = card.require_cvc_recollection {
            c.insert("require_cvc_recollection".into(), json!(r));
        }
        match &card.setup_future_usage {
            Field::Set(s) => {
                c.insert("setup_future_usage".into(), json!(s));
            }
            Field::Clear => {
                c.remove("setup_future_usage");
            }
            Field::Absent => {}
        }
        if let Some(r) = &card.request_incremental_authorization {
            c.insert("request_incremental_authorization".into(), json!(r));
        }
        options.insert("card".into(), Value::Object(c));
    }
    for (name, v) in [
        ("us_bank_account", &p.us_bank_account),
        ("sepa_debit", &p.sepa_debit),
        ("link", &p.link),
    ] {
        if let Some(v) = v {
            options.insert(name.into(), v.clone());
        }
    }
    pi.payment_method_options = Some(Value::Object(options));
}

fn default_options(types: &[String]) -> Value {
    let mut options = Map::new();
    for t in types {
        match t.as_str() {
            "card" => {
                options.insert(
                    "card".into(),
                    json!({"installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic"}),
                );
            }
            "us_bank_account" => {
                options.insert(
                    "us_bank_account".into(),
                    json!({"financial_connections": {"permissions": ["payment_method"], "prefetch": []}, "mandate_options": {}, "verification_method": "automatic"}),
                );
            }
            "link" => {
                options.insert("link".into(), json!({"persistent_token": null}));
            }
            _ => {
                options.insert(t.clone(), json!({}));
            }
        }
    }
    Value::Object(options)
}

fn effective_capture_method(pi: &PaymentIntent) -> String {
    card_options(pi)
        .get("capture_method")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| pi.capture_method.clone())
}

// ---- operations --------------------------------------------------------------

pub async fn create(ctx: &mut Ctx, params: &CreateParams) -> Result<Answer, ApiError> {
    let p = params.clone();
    let currency = check_currency(&p.currency)?;
    check_amount(p.amount, &currency, "amount")?;
    if p.confirmation_token.is_some() {
        only_one_method_source(&p.payment_method, &p.payment_method_data)?;
    }
    if let Some(c) = &p.customer {
        let _c: Customer = ctx
            .fetch(c)
            .await
            .map_err(|e| e.referenced_by("customer"))?;
    }
    if let Some(email) = &p.receipt_email {
        validate_email("receipt_email", email)?;
    }
    if p.payment_method.is_some() && p.payment_method_data.is_some() {
        return Err(ApiError::invalid_request(
            "You cannot provide both payment_method and payment_method_data.",
        )
        .with_param("payment_method_data"));
    }
    let (types, automatic) = match (&p.payment_method_types, &p.automatic_payment_methods) {
        (Some(_), Some(apm)) if apm.enabled => {
            return Err(ApiError::invalid_request(
                "You may only specify one of these parameters: automatic_payment_methods, payment_method_types.",
            )
            .with_param("automatic_payment_methods"))
        }
        (Some(types), _) => {
            check_types(types)?;
            (types.clone(), None)
        }
        (None, Some(apm)) if !apm.enabled => (vec!["card".to_string()], None),
        (None, apm) => {
            // Since API version 2023-08-16 intents default to the methods enabled in the Dashboard.
            let redirects = apm.as_ref().and_then(|a| a.allow_redirects).map(|r| match r {
                AllowRedirects::Always => "always",
                AllowRedirects::Never => "never",
            });
            let mut types = vec!["card".to_string()];
            if currency == "usd" {
                types.push("link".to_string());
            }
            (types, Some(AutomaticPaymentMethods { allow_redirects: Some(redirects.unwrap_or("always").to_string()), enabled: true }))
        }
    };
    let id = ids::new_id("pi");
    let mut pi = PaymentIntent {
        client_secret: Some(new_client_secret(&id)),
        id,
        object: "payment_intent".into(),
        amount: p.amount,
        amount_capturable: 0,
        amount_details: json!({"tip": {}}),
        amount_received: 0,
        application: None,
        application_fee_amount: p.application_fee_amount,
        automatic_payment_methods: automatic,
        canceled_at: None,
        cancellation_reason: None,
        capture_method: p
            .capture_method
            .unwrap_or(CaptureMethod::AutomaticAsync)
            .as_str()
            .into(),
        confirmation_method: match p.confirmation_method {
            Some(ConfirmationMethod::Manual) => "manual".into(),
            _ => "automatic".into(),
        },
        created: ctx.now,
        currency,
        customer: p.customer.clone(),
        description: p.description.clone(),
        invoice: None,
        last_payment_error: None,
        latest_charge: None,
        livemode: false,
        metadata: new_metadata(p.metadata.clone())?,
        next_action: None,
        on_behalf_of: None,
        payment_method: None,
        payment_method_configuration_details: None,
        payment_method_options: Some(default_options(&types)),
        payment_method_types: types,
        processing: None,
        receipt_email: p.receipt_email.clone(),
        review: None,
        setup_future_usage: p.setup_future_usage.map(|s| s.as_str().to_string()),
        shipping: p.shipping.clone().map(Shipping::from),
        source: None,
        statement_descriptor: p.statement_descriptor.clone(),
        statement_descriptor_suffix: p.statement_descriptor_suffix.clone(),
        status: RequiresPaymentMethod,
        transfer_data: p.transfer_data.clone(),
        transfer_group: p.transfer_group.clone(),
    };
    if pi.automatic_payment_methods.is_some() {
        pi.payment_method_configuration_details =
            Some(json!({"id": "pmc_payground_default", "parent": null}));
    }
    if let Some(options) = &p.payment_method_options {
        apply_options(&mut pi, options);
    }
    let mut resolved = None;
    if let Some(pm) = &p.payment_method {
        let pm = payment_method::resolve(ctx, pm, "payment_method").await?;
        pi.payment_method = Some(pm.id.clone());
        pi.status = RequiresConfirmation;
        resolved = Some(pm);
    } else if let Some(data) = p.payment_method_data.clone() {
        let pm = payment_method::build(ctx, data, "payment_method_data")?;
        ctx.save(&pm)?;
        pi.payment_method = Some(pm.id.clone());
        pi.status = RequiresConfirmation;
        resolved = Some(pm);
    }
    let value = machine::created(ctx, &pi)?;
    if p.confirm == Some(true) {
        let confirm = ConfirmParams {
            error_on_requires_action: p.error_on_requires_action,
            mandate: p.mandate,
            mandate_data: p.mandate_data,
            off_session: p.off_session,
            return_url: p.return_url,
            use_stripe_sdk: p.use_stripe_sdk,
            radar_options: p.radar_options,
            confirmation_token: p.confirmation_token,
            ..Default::default()
        };
        return run_confirm(ctx, pi, confirm, resolved).await;
    }
    let confirm_only = [
        (p.off_session.is_some(), "off_session"),
        (p.return_url.is_some(), "return_url"),
        (
            p.error_on_requires_action.is_some(),
            "error_on_requires_action",
        ),
        (p.confirmation_token.is_some(), "confirmation_token"),
    ];
    if let Some(&(_, param)) = confirm_only.iter().find(|(given, _)| *given) {
        return Err(ApiError::invalid_request(format!(
            "You can only pass `{param}` when `confirm` is true."
        ))
        .with_param(param));
    }
    Ok(value.into())
}

/// Loads a PaymentIntent, checking the client secret when a publishable key asks.
pub async fn load(
    ctx: &mut Ctx,
    id: &str,
    client_secret: Option<&str>,
) -> Result<PaymentIntent, ApiError> {
    let pi: PaymentIntent = ctx.fetch(id).await?;
    if ctx.request.key_kind == KeyKind::Publishable
        && !client_secret_matches(client_secret, pi.client_secret.as_deref())
    {
        // A wrong secret learns nothing, not even that the intent exists.
        return Err(ApiError::no_such("payment_intent", id));
    }
    Ok(pi)
}

pub async fn retrieve(
    ctx: &mut Ctx,
    id: &str,
    client_secret: Option<&str>,
) -> Result<Answer, ApiError> {
    if ctx.request.key_kind == KeyKind::Publishable {
        let pi = load(ctx, id, client_secret).await?;
        return Ok(Answer::Tree(publishable_view(&encode(&pi)?)));
    }
    ctx.fetch_text::<PaymentIntent>(id).await.map(Answer::Text)
}

pub async fn update(ctx: &mut Ctx, id: &str, params: &UpdateParams) -> Result<Value, ApiError> {
    let p = params.clone();
    let mut pi: PaymentIntent = ctx.fetch(id).await?;
    // Metadata and descriptive fields may change in any status; the payment itself only before it is confirmed.
    let changes_payment = p.amount.is_some()
        || p.currency.is_some()
        || p.payment_method.is_some()
        || p.payment_method_data.is_some()
        || p.payment_method_types.is_some()
        || p.capture_method.is_some()
        || !p.setup_future_usage.is_absent()
        || p.customer.is_some();
    if changes_payment || pi.status == Canceled {
        check(&pi, Action::Update)?;
    }
    // A new payment method makes the intent wait for a confirm again.
    let mut needs_confirmation = false;
    if let Some(c) = &p.currency {
        pi.currency = check_currency(c)?;
    }
    if let Some(a) = p.amount {
        check_amount(a, &pi.currency, "amount")?;
        pi.amount = a;
    }
    p.application_fee_amount
        .apply(&mut pi.application_fee_amount);
    if let Some(m) = p.capture_method {
        pi.capture_method = m.as_str().into();
    }
    if let Some(c) = p.customer {
        if pi.customer.as_deref().is_some_and(|old| old != c) {
            return Err(ApiError::invalid_request(
                "You cannot change the customer of a PaymentIntent once it has one.",
            )
            .with_param("customer"));
        }
        let _c: Customer = ctx
            .fetch(&c)
            .await
            .map_err(|e| e.referenced_by("customer"))?;
        pi.customer = Some(c);
    }
    p.description.apply(&mut pi.description);
    apply_metadata(&mut pi.metadata, p.metadata)?;
    if let Some(types) = &p.payment_method_types {
        check_types(types)?;
        pi.payment_method_types = types.clone();
        pi.automatic_payment_methods = None;
    }
    if let Some(o) = &p.payment_method_options {
        apply_options(&mut pi, o);
    }
    if let Some(pm) = &p.payment_method {
        let pm = payment_method::resolve(ctx, pm, "payment_method").await?;
        pi.payment_method = Some(pm.id);
        needs_confirmation = true;
        pi.next_action = None;
    } else if let Some(data) = p.payment_method_data {
        let pm = payment_method::build(ctx, data, "payment_method_data")?;
        ctx.save(&pm)?;
        pi.payment_method = Some(pm.id);
        needs_confirmation = true;
        pi.next_action = None;
    }
    if let Field::Set(email) = &p.receipt_email {
        validate_email("receipt_email", email)?;
    }
    p.receipt_email.apply(&mut pi.receipt_email);
    p.setup_future_usage
        .map_set(|s| s.as_str().to_string())
        .apply(&mut pi.setup_future_usage);
    p.shipping.map_set(Shipping::from).apply(&mut pi.shipping);
    p.statement_descriptor.apply(&mut pi.statement_descriptor);
    p.statement_descriptor_suffix
        .apply(&mut pi.statement_descriptor_suffix);
    if let Some(t) = p.transfer_data {
        pi.transfer_data = Some(t);
    }
    p.transfer_group.apply(&mut pi.transfer_group);
    let after = if needs_confirmation {
        transition(ctx, &mut pi, Action::Update, RequiresConfirmation)?
    } else {
        ctx.save(&pi)?
    };
    Ok(view_for(ctx, after.into()))
}

pub async fn confirm(ctx: &mut Ctx, id: &str, params: &ConfirmParams) -> Result<Answer, ApiError> {
    let p = params.clone();
    let pi = load(ctx, id, p.client_secret.as_deref()).await?;
    if ctx.request.key_kind == KeyKind::Publishable && pi.confirmation_method == "manual" {
        return Err(ApiError::invalid_request(
            "This PaymentIntent's confirmation_method is manual: it can only be confirmed with your secret key.",
        )
        .with_code("payment_intent_unexpected_state"));
    }
    if ctx.request.key_kind == KeyKind::Publishable && p.off_session.is_some() {
        return Err(
            ApiError::invalid_request("off_session cannot be set with a publishable key.")
                .with_param("off_session"),
        );
    }
    run_confirm(ctx, pi, p, None).await
}

/// Applies confirm-time parameters and makes one payment attempt.
/// `resolved`: the PaymentMethod the creating request has just resolved or built,
/// if it has, so that it is not decoded again from the text it was saved as (a
/// tenth of a confirm's JSON decoding).
async fn run_confirm(
    ctx: &mut Ctx,
    mut pi: PaymentIntent,
    p: ConfirmParams,
    resolved: Option<PaymentMethod>,
) -> Result<Answer, ApiError> {
    check(&pi, Action::Confirm)?;
    if let Some(m) = p.capture_method {
        pi.capture_method = m.as_str().into();
    }
    if let Some(types) = &p.payment_method_types {
        check_types(types)?;
        pi.payment_method_types = types.clone();
        pi.automatic_payment_methods = None;
    }
    if let Some(o) = &p.payment_method_options {
        apply_options(&mut pi, o);
    }
    if let Field::Set(email) = &p.receipt_email {
        validate_email("receipt_email", email)?;
    }
    p.receipt_email.apply(&mut pi.receipt_email);
    p.setup_future_usage
        .map_set(|s| s.as_str().to_string())
        .apply(&mut pi.setup_future_usage);
    p.shipping.map_set(Shipping::from).apply(&mut pi.shipping);
    if p.payment_method.is_some() && p.payment_method_data.is_some() {
        return Err(ApiError::invalid_request(
            "You cannot provide both payment_method and payment_method_data.",
        )
        .with_param("payment_method_data"));
    }
    let mut return_url = p.return_url.clone();
    let mut resolved = resolved;
    if let Some(token) = &p.confirmation_token {
        only_one_method_source(&p.payment_method, &p.payment_method_data)?;
        let used = confirmation_token::redeem(ctx, token, Use::PaymentIntent(&pi.id)).await?;
        pi.payment_method = Some(used.payment_method.id.clone());
        // What the intent says for itself wins over what the token carries.
        if pi.setup_future_usage.is_none() {
            pi.setup_future_usage = used.setup_future_usage;
        }
        if return_url.is_none() {
            return_url = used.return_url;
        }
        if pi.shipping.is_none() {
            pi.shipping = used.shipping.map(|s| Shipping {
                address: s.address,
                carrier: None,
                name: s.name,
                phone: s.phone,
                tracking_number: None,
            });
        }
        resolved = Some(used.payment_method);
    } else if let Some(id) = &p.payment_method {
        let pm = payment_method::resolve(ctx, id, "payment_method").await?;
        pi.payment_method = Some(pm.id);
    } else if let Some(data) = p.payment_method_data.clone() {
        let pm = payment_method::build(ctx, data, "payment_method_data")?;
        ctx.save(&pm)?;
        pi.payment_method = Some(pm.id);
    }
    let Some(pm_id) = pi.payment_method.clone() else {
        let mut err = ApiError::invalid_request(
            "You cannot confirm this PaymentIntent because it's missing a payment method. To confirm the PaymentIntent, specify a payment method with `payment_method` or `payment_method_data`.",
        )
        .with_code("payment_intent_unexpected_state");
        err.payment_intent = Some(view_for(ctx, encode(&pi)?));
        return Err(err);
    };
    let pm: PaymentMethod = match resolved {
        Some(pm) if pm.id == pm_id && !pm.is_deleted() => pm,
        _ => ctx
            .fetch(&pm_id)
            .await
            .map_err(|_| payment_method::no_such(&pm_id, "payment_method"))?,
    };
    if let Some(owner) = &pm.customer {
        if pi.customer.as_deref() != Some(owner.as_str()) {
            return Err(ApiError::invalid_request(format!(
                "The provided PaymentMethod ({}) is attached to a Customer; you must also provide that Customer ({owner}) to use it.",
                pm.id
            ))
            .with_param("payment_method"));
        }
    }
    let allowed = pi.payment_method_types.contains(&pm.kind)
        || (pi
            .automatic_payment_methods
            .as_ref()
            .is_some_and(|a| a.enabled)
            && KNOWN_TYPES.contains(&pm.kind.as_str()));
    if !allowed {
        return Err(ApiError::invalid_request(format!(
            "The PaymentMethod provided ({}) is not allowed for this PaymentIntent. Please attach a PaymentMethod of one of the following types: {}. Alternatively update the allowed payment_method_types for this PaymentIntent to include \"{}\".",
            pm.kind,
            pi.payment_method_types.join(", "),
            pm.kind
        ))
        .with_code("payment_intent_incompatible_payment_method")
        .with_param("payment_method"));
    }
    if !pi.payment_method_types.contains(&pm.kind) {
        pi.payment_method_types.push(pm.kind.clone());
    }
    let off_session = p.off_session.is_some_and(|o| o.0);
    let attempt = AttemptContext {
        action: Action::Confirm,
        off_session,
        return_url,
        error_on_requires_action: p.error_on_requires_action.unwrap_or(false),
        authenticated: false,
    };
    attempt_payment(ctx, pi, pm, attempt).await
}

struct AttemptContext {
    /// Confirm, or the second half of a confirm after 3-D Secure.
    action: Action,
    off_session: bool,
    return_url: Option<String>,
    error_on_requires_action: bool,
    authenticated: bool,
}

/// One attempt to pay: asks the network, then records the charge and the new status.
async fn attempt_payment(
    ctx: &mut Ctx,
    mut pi: PaymentIntent,
    pm: PaymentMethod,
    attempt: AttemptContext,
) -> Result<Answer, ApiError> {
    pi.next_action = None;
    pi.last_payment_error = None;
    match pm.kind.as_str() {
        "us_bank_account" | "sepa_debit" => {
            return start_delayed(ctx, pi, pm, attempt.action).await
        }
        "card" => {}
        other => {
            return Err(ApiError::invalid_request(format!(
                "payground cannot process {other} payments yet."
            ))
            .with_param("payment_method"))
        }
    }
    let test_card = pm
        .test_card(ctx.account_id())
        .unwrap_or_else(|| network::card_for_number(""));
    let request_three_d_secure = match card_options(&pi)
        .get("request_three_d_secure")
        .and_then(Value::as_str)
    {
        Some("any") => ThreeDsRequest::Any,
        Some("challenge") => ThreeDsRequest::Challenge,
        _ => ThreeDsRequest::Automatic,
    };
    let set_up = payment_method::is_set_up(ctx, &pm.id).await?;
    let cvc_provided = pm
        .card
        .as_ref()
        .and_then(|c| c.checks.as_ref())
        .is_some_and(|c| c.cvc_check.is_some());
    let decision = network::authorize(
        &test_card,
        &network::Attempt {
            off_session: attempt.off_session,
            set_up,
            request_three_d_secure,
            authenticated: attempt.authenticated,
            cvc_provided,
        },
    );
    match decision {
        Decision::RequireAuthentication if attempt.error_on_requires_action => {
            decline(
                ctx,
                pi,
                &pm,
                &network::AUTHENTICATION_REQUIRED,
                false,
                &attempt,
            )
            .await
        }
        Decision::RequireAuthentication => {
            let url = authentication_url(ctx, &pi.id, pi.client_secret.as_deref());
            pi.next_action = Some(three_d_secure_action(
                &url,
                attempt.return_url.as_deref(),
                &pm.id,
            ));
            let value = transition(ctx, &mut pi, attempt.action, RequiresAction)?;
            Ok(answer_for(ctx, value))
        }
        Decision::Decline {
            decline: d,
            blocked,
        } => decline(ctx, pi, &pm, &d, blocked, &attempt).await,
        Decision::Approve(approval) => {
            let manual = effective_capture_method(&pi) == "manual";
            let available_now = test_card.behaviour == network::Behaviour::BypassPending;
            let mut charge = new_charge(ctx, &pi, &pm, attempt.authenticated)?;
            charge.outcome = Some(charge::approved_outcome(
                approval.risk_level,
                approval.risk_score,
            ));
            charge.paid = true;
            charge.status = "succeeded".into();
            charge.captured = !manual;
            if !manual {
                charge.amount_captured = pi.amount;
                charge.balance_transaction = Some(balance_transaction::for_charge(
                    ctx,
                    &charge.id,
                    pi.amount,
                    &pi.currency,
                    available_now,
                    pi.description.clone(),
                )?);
            }
            let charge_value = ctx.save(&charge)?;
            pi.latest_charge = Some(charge.id.clone());
            if manual {
                pi.amount_capturable = pi.amount;
            } else {
                pi.amount_received = pi.amount;
            }
            save_for_future_use(ctx, &pi, &pm).await?;
            ctx.emit("charge.succeeded", &charge_value, None);
            let to = if manual { RequiresCapture } else { Succeeded };
            let value = transition(ctx, &mut pi, attempt.action, to)?;
            Ok(answer_for(ctx, value))
        }
    }
}

/// `setup_future_usage`: on success the card is attached to the customer and set up for later.
async fn save_for_future_use(
    ctx: &mut Ctx,
    pi: &PaymentIntent,
    pm: &PaymentMethod,
) -> Result<(), ApiError> {
    let usage = pi
        .setup_future_usage
        .clone()
        .or_else(|| {
            card_options(pi)
                .get("setup_future_usage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|u| u != "none");
    let Some(usage) = usage else { return Ok(()) };
    if let Some(customer) = &pi.customer {
        let mut pm = pm.clone();
        if pm.customer.is_none() {
            payment_method::attach(ctx, &mut pm, customer, "payment_method").await?;
        }
    }
    payment_method::mark_set_up(ctx, &pm.id, &usage).await
}

fn new_charge(
    ctx: &Ctx,
    pi: &PaymentIntent,
    pm: &PaymentMethod,
    authenticated: bool,
) -> Result<Charge, ApiError> {
    let prefix = if pm.kind == "card" { "ch" } else { "py" };
    let id = ids::new_id(prefix);
    Ok(Charge {
        receipt_url: Some(format!("{}/payground/receipts/{}", ctx.public_url, id)),
        id,
        object: "charge".into(),
        amount: pi.amount,
        amount_captured: 0,
        amount_refunded: 0,
        application: None,
        application_fee: None,
        application_fee_amount: pi.application_fee_amount,
        balance_transaction: None,
        billing_details: pm.billing_details.clone(),
        calculated_statement_descriptor: Some(
            pi.statement_descriptor
                .clone()
                .unwrap_or_else(|| "PAYGROUND".to_string())
                .to_uppercase(),
        ),
        captured: false,
        created: ctx.now,
        currency: pi.currency.clone(),
        customer: pi.customer.clone(),
        description: pi.description.clone(),
        destination: None,
        dispute: None,
        disputed: false,
        failure_balance_transaction: None,
        failure_code: None,
        failure_message: None,
        fraud_details: json!({}),
        invoice: None,
        livemode: false,
        metadata: Metadata::new(),
        on_behalf_of: None,
        order: None,
        outcome: None,
        paid: false,
        payment_intent: Some(pi.id.clone()),
        payment_method: Some(pm.id.clone()),
        payment_method_details: Some(charge::payment_method_details(
            ctx,
            pi.amount,
            pm,
            authenticated,
        )?),
        radar_options: json!({}),
        receipt_email: pi.receipt_email.clone(),
        receipt_number: None,
        refunded: false,
        review: None,
        shipping: pi.shipping.clone(),
        source: None,
        source_transfer: None,
        statement_descriptor: pi.statement_descriptor.clone(),
        statement_descriptor_suffix: pi.statement_descriptor_suffix.clone(),
        status: "pending".into(),
        transfer_data: pi.transfer_data.clone(),
        transfer_group: pi.transfer_group.clone(),
    })
}

/// A declined attempt: a failed charge, the intent back to `requires_payment_method`
/// with `last_payment_error`, and a 402 carrying the whole intent.
async fn decline(
    ctx: &mut Ctx,
    mut pi: PaymentIntent,
    pm: &PaymentMethod,
    d: &network::Decline,
    blocked: bool,
    attempt: &AttemptContext,
) -> Result<Answer, ApiError> {
    let mut charge = new_charge(ctx, &pi, pm, attempt.authenticated)?;
    charge.status = "failed".into();
    charge.failure_code = Some(d.code.to_string());
    charge.failure_message = Some(d.message.to_string());
    charge.outcome = Some(charge::declined_outcome(d.decline_code, blocked));
    let charge_value = ctx.save(&charge)?;
    let pm_value = serde_json::to_value(pm).map_err(|e| ApiError::internal("encode", e))?;
    let mut error = ApiError::new(402, ErrorType::CardError, d.message).with_code(d.code);
    error.decline_code = d.decline_code.map(str::to_string);
    error.param = d.param.map(str::to_string);
    error.charge = Some(charge.id.clone());
    error.payment_method = Some(pm_value);
    pi.last_payment_error =
        Some(serde_json::to_value(&error).map_err(|e| ApiError::internal("encode", e))?);
    pi.latest_charge = Some(charge.id.clone());
    pi.payment_method = None;
    pi.next_action = None;
    ctx.emit("charge.failed", &charge_value, None);
    let value = transition(ctx, &mut pi, attempt.action, RequiresPaymentMethod)?;
    error.payment_intent = Some(view_for(ctx, value.into()));
    // Stripe keeps a declined attempt: its charge, the intent's error, their events.
    ctx.commit_with_error();
    Err(error)
}

/// Bank debits: the charge is pending and the intent `processing` until it settles.
async fn start_delayed(
    ctx: &mut Ctx,
    mut pi: PaymentIntent,
    pm: PaymentMethod,
    action: Action,
) -> Result<Answer, ApiError> {
    let mut charge = new_charge(ctx, &pi, &pm, false)?;
    charge.status = "pending".into();
    charge.outcome = Some(charge::Outcome {
        network_status: Some("approved_by_network".into()),
        reason: None,
        risk_level: "not_assessed".into(),
        risk_score: 0,
        rule: None,
        seller_message: Some("Payment complete.".into()),
        kind: "authorized".into(),
    });
    let charge_value = ctx.save(&charge)?;
    pi.latest_charge = Some(charge.id.clone());
    pi.processing = None;
    save_for_future_use(ctx, &pi, &pm).await?;
    ctx.emit("charge.pending", &charge_value, None);
    let value = transition(ctx, &mut pi, action, Processing)?;
    let delay = i64::try_from(ctx.settings.settlement_delay.as_secs()).unwrap_or(i64::MAX);
    ctx.schedule(SETTLE_JOB, &pi.id, ctx.now.saturating_add(delay));
    Ok(answer_for(ctx, value))
}

/// The outcome of the hosted 3-D Secure page.
pub async fn authenticate(
    ctx: &mut Ctx,
    id: &str,
    client_secret: &str,
    completed: bool,
) -> Result<PaymentIntent, ApiError> {
    let pi: PaymentIntent = ctx.fetch(id).await?;
    if !pi
        .client_secret
        .as_deref()
        .is_some_and(|s| crate::crypto::constant_time_eq(s.as_bytes(), client_secret.as_bytes()))
    {
        return Err(ApiError::no_such("payment_intent", id));
    }
    check(&pi, Action::Authenticate)?;
    let pm_id = pi.payment_method.clone().unwrap_or_default();
    let pm: PaymentMethod = ctx.fetch(&pm_id).await?;
    if !completed {
        let mut pi = pi;
        let pm_value = serde_json::to_value(&pm).map_err(|e| ApiError::internal("encode", e))?;
        let mut error = ApiError::invalid_request(
            "The latest attempt to authenticate the payment method failed. Please choose a different payment method and try again.",
        )
        .with_code("payment_intent_authentication_failure");
        error.payment_method = Some(pm_value);
        pi.last_payment_error =
            Some(serde_json::to_value(&error).map_err(|e| ApiError::internal("encode", e))?);
        pi.payment_method = None;
        pi.next_action = None;
        transition(ctx, &mut pi, Action::Authenticate, RequiresPaymentMethod)?;
        return Ok(pi);
    }
    let attempt = AttemptContext {
        action: Action::Authenticate,
        off_session: false,
        return_url: None,
        error_on_requires_action: false,
        authenticated: true,
    };
    // A decline after authentication is recorded on the intent; the page reports it through the redirect.
    let _ = attempt_payment(ctx, pi, pm, attempt).await;
    ctx.fetch(id).await
}

pub async fn capture(ctx: &mut Ctx, id: &str, params: &CaptureParams) -> Result<Value, ApiError> {
    let p = params.clone();
    let mut pi: PaymentIntent = ctx.fetch(id).await?;
    check(&pi, Action::Capture)?;
    let amount = p.amount_to_capture.unwrap_or(pi.amount_capturable);
    if amount <= 0 || amount > pi.amount_capturable {
        return Err(ApiError::invalid_param(
            "amount_to_capture",
            "amount_too_large",
            format!("The amount to capture ({amount}) must be greater than zero and at most the amount capturable ({}).", pi.amount_capturable),
        ));
    }
    let charge_id = pi.latest_charge.clone().unwrap_or_default();
    let mut charge: Charge = ctx.fetch(&charge_id).await?;
    let charge_before =
        serde_json::to_value(&charge).map_err(|e| ApiError::internal("encode", e))?;
    charge.captured = true;
    charge.amount_captured = amount;
    // What is not captured is released, which Stripe shows as refunded.
    charge.amount_refunded = pi.amount - amount;
    charge.balance_transaction = Some(balance_transaction::for_charge(
        ctx,
        &charge.id,
        amount,
        &pi.currency,
        false,
        pi.description.clone(),
    )?);
    if let Some(fee) = p.application_fee_amount {
        pi.application_fee_amount = Some(fee);
    }
    apply_metadata(&mut pi.metadata, p.metadata)?;
    if let Some(s) = p.statement_descriptor {
        pi.statement_descriptor = Some(s);
    }
    if let Some(s) = p.statement_descriptor_suffix {
        pi.statement_descriptor_suffix = Some(s);
    }
    let charge_value = ctx.save(&charge)?;
    ctx.emit(
        "charge.captured",
        &charge_value,
        previous_attributes(
            &charge_before,
            &serde_json::to_value(&charge).unwrap_or_default(),
        ),
    );
    pi.amount_received = amount;
    pi.amount_capturable = 0;
    let value = transition(ctx, &mut pi, Action::Capture, Succeeded)?;
    Ok(value.into())
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChargeCapture {
    pub amount: Option<i64>,
    pub application_fee_amount: Option<i64>,
    pub receipt_email: Option<String>,
    pub statement_descriptor: Option<String>,
    pub statement_descriptor_suffix: Option<String>,
    pub transfer_group: Option<String>,
}

/// `POST /v1/charges/{id}/capture`: the older way to capture a PaymentIntent,
/// through its charge; answers with the charge.
pub async fn capture_charge(
    ctx: &mut Ctx,
    id: &str,
    p: &ChargeCapture,
) -> Result<Answer, ApiError> {
    let charge: Charge = ctx.fetch(id).await?;
    let Some(pi) = charge.payment_intent.clone() else {
        return Err(ApiError::invalid_request(format!(
            "Charge {id} has no PaymentIntent to capture."
        )));
    };
    if charge.captured {
        return Err(
            ApiError::invalid_request(format!("Charge {id} has already been captured."))
                .with_code("charge_already_captured"),
        );
    }
    let params = CaptureParams {
        amount_to_capture: p.amount,
        application_fee_amount: p.application_fee_amount,
        statement_descriptor: p.statement_descriptor.clone(),
        statement_descriptor_suffix: p.statement_descriptor_suffix.clone(),
        ..Default::default()
    };
    capture(ctx, &pi, &params).await.map_err(|mut e| {
        // This route takes the amount as `amount`, and its refusals name it so.
        if e.param.as_deref() == Some("amount_to_capture") {
            e.param = Some("amount".to_string());
        }
        e
    })?;
    charge::retrieve(ctx, id).await
}

pub async fn cancel(ctx: &mut Ctx, id: &str, params: &CancelParams) -> Result<Value, ApiError> {
    let mut pi: PaymentIntent = ctx.fetch(id).await?;
    check(&pi, Action::Cancel)?;
    if pi.status == RequiresCapture {
        if let Some(charge_id) = pi.latest_charge.clone() {
            let mut charge: Charge = ctx.fetch(&charge_id).await?;
            charge.amount_refunded = charge.amount;
            charge.refunded = true;
            let v = ctx.save(&charge)?;
            ctx.emit(
                "charge.refunded",
                &v,
                Some(json!({"amount_refunded": 0, "refunded": false})),
            );
        }
    }
    pi.canceled_at = Some(ctx.now);
    pi.cancellation_reason = params.cancellation_reason.map(|r| r.as_str().to_string());
    pi.amount_capturable = 0;
    pi.next_action = None;
    let value = transition(ctx, &mut pi, Action::Cancel, Canceled)?;
    Ok(value.into())
}

pub async fn increment_authorization(
    ctx: &mut Ctx,
    id: &str,
    params: &IncrementParams,
) -> Result<Value, ApiError> {
    let p = params.clone();
    let mut pi: PaymentIntent = ctx.fetch(id).await?;
    check(&pi, Action::IncrementAuthorization)?;
    let requested = card_options(&pi)
        .get("request_incremental_authorization")
        .and_then(Value::as_str)
        == Some("if_available");
    if !requested {
        return Err(ApiError::invalid_request(
            "This PaymentIntent is not eligible for incremental authorization: confirm it with payment_method_options[card][request_incremental_authorization]=if_available.",
        )
        .with_code("payment_intent_unexpected_state"));
    }
    if p.amount <= pi.amount {
        return Err(ApiError::invalid_param(
            "amount",
            "amount_too_small",
            "The new amount must be greater than the current amount.",
        ));
    }
    check_amount(p.amount, &pi.currency, "amount")?;
    let charge_id = pi.latest_charge.clone().unwrap_or_default();
    let mut charge: Charge = ctx.fetch(&charge_id).await?;
    charge.amount = p.amount;
    ctx.save(&charge)?;
    pi.amount = p.amount;
    pi.amount_capturable = p.amount;
    if let Some(d) = p.description {
        pi.description = Some(d);
    }
    apply_metadata(&mut pi.metadata, p.metadata)?;
    let value = transition(
        ctx,
        &mut pi,
        Action::IncrementAuthorization,
        RequiresCapture,
    )?;
    Ok(value.into())
}

/// The scheduled job that settles a processing bank debit when its delay is over.
pub const SETTLE_JOB: &str = "payment_intent.settle";

/// Settles a processing bank debit by its test account numbers.
pub async fn settle(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    let mut pi: PaymentIntent = ctx.fetch(id).await?;
    check(&pi, Action::Settle)?;
    // Settled now, the debit's scheduled settlement goes with this change.
    ctx.unschedule(SETTLE_JOB, &pi.id);
    let charge_id = pi.latest_charge.clone().unwrap_or_default();
    let mut charge: Charge = ctx.fetch(&charge_id).await?;
    let pm_id = charge.payment_method.clone().unwrap_or_default();
    let pm: PaymentMethod = ctx.fetch(&pm_id).await?;
    let failure = payment_method::debit_failure(&pm);
    match failure {
        None => {
            charge.status = "succeeded".into();
            charge.paid = true;
            charge.captured = true;
            charge.amount_captured = charge.amount;
            charge.balance_transaction = Some(balance_transaction::for_charge(
                ctx,
                &charge.id,
                charge.amount,
                &charge.currency,
                false,
                charge.description.clone(),
            )?);
            let cv = ctx.save(&charge)?;
            ctx.emit("charge.succeeded", &cv, None);
            pi.amount_received = pi.amount;
            let value = transition(ctx, &mut pi, Action::Settle, Succeeded)?;
            Ok(value.into())
        }
        Some((code, message)) => {
            charge.status = "failed".into();
            charge.failure_code = Some(code.into());
            charge.failure_message = Some(message.into());
            charge.outcome = Some(charge::declined_outcome(None, false));
            let cv = ctx.save(&charge)?;
            ctx.emit("charge.failed", &cv, None);
            let pm_value =
                serde_json::to_value(&pm).map_err(|e| ApiError::internal("encode", e))?;
            let mut error = ApiError::invalid_request(message).with_code(code);
            error.payment_method = Some(pm_value);
            error.charge = Some(charge.id.clone());
            pi.last_payment_error =
                Some(serde_json::to_value(&error).map_err(|e| ApiError::internal("encode", e))?);
            pi.payment_method = None;
            let value = transition(ctx, &mut pi, Action::Settle, RequiresPaymentMethod)?;
            Ok(value.into())
        }
    }
}

pub async fn list(
    ctx: &mut Ctx,
    filters: &ListFilters,
    params: &ListParams,
) -> Result<Answer, ApiError> {
    let filter = filters
        .customer
        .as_ref()
        .map(|c| ("customer".to_string(), c.clone()));
    list::page(
        ctx,
        PaymentIntent::OBJECT,
        filter,
        params,
        "/v1/payment_intents",
    )
    .await
}

pub async fn search(ctx: &mut Ctx, params: &SearchParams) -> Result<Value, ApiError> {
    search::run(
        ctx,
        PaymentIntent::OBJECT,
        SEARCH_FIELDS,
        params,
        "/v1/payment_intents/search",
    )
    .await
}

// ---- payground trigger ---------------------------------------------------------

/// The params of a `payground trigger` card payment, with `$extra` pairs.
macro_rules! card_payment {
    ($($extra:expr),*) => {
        &[
            ("amount", "2000"),
            ("currency", "usd"),
            ("payment_method_types[]", "card"),
            ("description", "(created by payground trigger)"),
            $($extra),*
        ]
    };
}

/// A confirmed card payment, saved as `{payment_intent}`.
pub const CARD_PAYMENT: Step = Step::post(
    "/v1/payment_intents",
    card_payment!(("payment_method", "pm_card_visa"), ("confirm", "true")),
    Some("payment_intent"),
);

/// A card payment authorized for a later capture.
pub const AUTHORIZATION: Step = Step::post(
    "/v1/payment_intents",
    card_payment!(
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("capture_method", "manual")
    ),
    Some("payment_intent"),
);

const UNCONFIRMED_PAYMENT: Step = Step::post(
    "/v1/payment_intents",
    card_payment!(),
    Some("payment_intent"),
);

/// A card payment the card declines.
pub const DECLINED_PAYMENT: Step = Step::post(
    "/v1/payment_intents",
    card_payment!(
        ("payment_method", "pm_card_chargeDeclined"),
        ("confirm", "true")
    ),
    Some("payment_intent"),
)
.declining();

pub const CAPTURE: Step = Step::post("/v1/payment_intents/{payment_intent}/capture", &[], None);

pub const FIXTURES: &[Fixture] = &[
    Fixture {
        event: "payment_intent.created",
        steps: &[UNCONFIRMED_PAYMENT],
    },
    Fixture {
        event: "payment_intent.succeeded",
        steps: &[CARD_PAYMENT],
    },
    Fixture {
        event: "payment_intent.canceled",
        steps: &[
            UNCONFIRMED_PAYMENT,
            Step::post("/v1/payment_intents/{payment_intent}/cancel", &[], None),
        ],
    },
    Fixture {
        event: "payment_intent.amount_capturable_updated",
        steps: &[AUTHORIZATION],
    },
    Fixture {
        event: "payment_intent.payment_failed",
        steps: &[DECLINED_PAYMENT],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Status] = &[
        RequiresPaymentMethod,
        RequiresConfirmation,
        RequiresAction,
        Processing,
        RequiresCapture,
        Canceled,
        Succeeded,
    ];

    fn intent(status: Status) -> PaymentIntent {
        let text = serde_json::json!({
            "id": "pi_1", "object": "payment_intent", "amount": 1000, "amount_capturable": 0,
            "amount_details": {}, "amount_received": 0, "application": null,
            "application_fee_amount": null, "automatic_payment_methods": null,
            "canceled_at": null, "cancellation_reason": null, "capture_method": "automatic",
            "client_secret": null, "confirmation_method": "automatic", "created": 1,
            "currency": "usd", "customer": null, "description": null, "invoice": null,
            "last_payment_error": null, "latest_charge": null, "livemode": false,
            "metadata": {}, "next_action": null, "on_behalf_of": null, "payment_method": null,
            "payment_method_configuration_details": null, "payment_method_options": null,
            "payment_method_types": ["card"], "processing": null, "receipt_email": null,
            "review": null, "setup_future_usage": null, "shipping": null, "source": null,
            "statement_descriptor": null, "statement_descriptor_suffix": null,
            "status": status.as_str(), "transfer_data": null, "transfer_group": null,
        });
        serde_json::from_value(text).expect("a PaymentIntent")
    }

    #[test]
    fn the_table_is_whole() {
        machine::check_table::<PaymentIntent>(ALL, &[Canceled, Succeeded]);
    }

    /// Which statuses admit which actions, as Stripe documents the lifecycle.
    #[test]
    fn actions_are_allowed_from_exactly_these_statuses() {
        use Action::*;
        let expect: &[(Action, &[Status])] = &[
            (
                Update,
                &[RequiresPaymentMethod, RequiresConfirmation, RequiresAction],
            ),
            (
                Confirm,
                &[RequiresConfirmation, RequiresPaymentMethod, RequiresAction],
            ),
            (Authenticate, &[RequiresAction]),
            (Capture, &[RequiresCapture]),
            (IncrementAuthorization, &[RequiresCapture]),
            (
                Cancel,
                &[
                    RequiresPaymentMethod,
                    RequiresCapture,
                    RequiresConfirmation,
                    RequiresAction,
                ],
            ),
            (Settle, &[Processing]),
        ];
        for (action, allowed) in expect {
            assert_eq!(
                machine::statuses_allowing::<PaymentIntent>(*action),
                allowed.to_vec(),
                "{action:?}"
            );
            for status in ALL {
                let outcome = check(&intent(*status), *action);
                assert_eq!(
                    outcome.is_ok(),
                    allowed.contains(status),
                    "{action:?} from {status:?}"
                );
            }
        }
    }

    #[test]
    fn refusals_say_what_stripe_says() {
        let err = check(&intent(Succeeded), Action::Confirm).expect_err("refused");
        assert_eq!(
            err.message,
            "You cannot confirm this PaymentIntent because it has a status of succeeded. Only a PaymentIntent with one of the following statuses may be confirmed: requires_confirmation, requires_payment_method, requires_action."
        );
        assert_eq!(err.code.as_deref(), Some("payment_intent_unexpected_state"));
        assert_eq!(
            err.payment_intent.as_ref().map(|p| p["id"].clone()),
            Some(serde_json::json!("pi_1"))
        );
        let err = check(&intent(Canceled), Action::Cancel).expect_err("refused");
        assert!(err.message.ends_with("may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action."), "{}", err.message);
        let err = check(&intent(Succeeded), Action::Capture).expect_err("refused");
        assert!(
            err.message.ends_with("may be captured: requires_capture."),
            "{}",
            err.message
        );
        let err = check(&intent(Succeeded), Action::Settle).expect_err("refused");
        assert_eq!(
            err.message,
            "You cannot settle this PaymentIntent because it has a status of succeeded."
        );
    }

    /// Each end of a confirm announces itself with Stripe's event.
    #[test]
    fn confirm_outcomes_have_their_events() {
        let event = |to: Status| {
            TRANSITIONS
                .iter()
                .find(|t| t.action == Action::Confirm && t.to == to)
                .and_then(|t| t.event)
        };
        assert_eq!(event(Succeeded), Some("payment_intent.succeeded"));
        assert_eq!(
            event(RequiresAction),
            Some("payment_intent.requires_action")
        );
        assert_eq!(
            event(RequiresCapture),
            Some("payment_intent.amount_capturable_updated")
        );
        assert_eq!(event(Processing), Some("payment_intent.processing"));
        assert_eq!(
            event(RequiresPaymentMethod),
            Some("payment_intent.payment_failed")
        );
        assert_eq!(event(Canceled), None);
    }
}
