//! SetupIntents: saving a payment method for later payments without charging it.
//! The state machine is a table ([`TRANSITIONS`]) beside the PaymentIntent's, and
//! the operations move through it: create (with `confirm=true`), update, confirm,
//! the outcome of 3-D Secure on the hosted page, cancel, and the settlement of
//! bank debits. Every confirm makes a [`SetupAttempt`].
//!
//! A setup that succeeds attaches its PaymentMethod to the customer and marks it
//! set up, so the test cards then behave as Stripe documents for off-session
//! payments: 4000002500003155 charges without authentication, 4000002760003184
//! still needs it, 4000008260003178 declines for insufficient funds, and
//! 4000000000000341 sets up and then declines every charge.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::ctx::{Answer, Ctx, KeyKind, Saved, StripeObject};
use crate::error::{ApiError, ErrorType};
use crate::ids;
use crate::network::{self, Decision, ThreeDsRequest};
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
use crate::resources::customer::Customer;
use crate::resources::payment_method::{self, PaymentMethod, PaymentMethodData};
use crate::resources::setup_attempt::{self, SetupAttempt};
use crate::resources::{apply_metadata, new_metadata, Metadata};

/// `automatic_payment_methods` of a SetupIntent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AutomaticPaymentMethods {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_redirects: Option<String>,
    pub enabled: Option<bool>,
}

/// Stripe's setup_intent object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SetupIntent {
    pub id: String,
    pub object: String,
    pub application: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_to_self: Option<bool>,
    pub automatic_payment_methods: Option<AutomaticPaymentMethods>,
    pub cancellation_reason: Option<String>,
    pub client_secret: Option<String>,
    pub created: i64,
    pub customer: Option<String>,
    pub description: Option<String>,
    pub flow_directions: Option<Vec<String>>,
    pub last_setup_error: Option<Value>,
    pub latest_attempt: Option<String>,
    pub livemode: bool,
    pub mandate: Option<String>,
    pub metadata: Metadata,
    pub next_action: Option<Value>,
    pub on_behalf_of: Option<String>,
    pub payment_method: Option<String>,
    pub payment_method_configuration_details: Option<Value>,
    pub payment_method_options: Option<Value>,
    pub payment_method_types: Vec<String>,
    pub single_use_mandate: Option<String>,
    pub status: Status,
    pub usage: String,
}

/// A list filtered by both customer and PaymentMethod reads one index entry of
/// its own (values joined by `|`, which no id contains), as every list page is
/// one keyset scan.
const BY_CUSTOMER_PAYMENT_METHOD: &str = "customer_payment_method";

impl StripeObject for SetupIntent {
    const OBJECT: &'static str = "setup_intent";
    const PREFIXES: &'static [&'static str] = &["seti"];
    const EXPANDABLE: &'static [&'static str] = &[
        "application",
        "customer",
        "latest_attempt",
        "mandate",
        "on_behalf_of",
        "payment_method",
        "single_use_mandate",
    ];
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn index(&self) -> Vec<(String, String)> {
        let mut index = Vec::with_capacity(4);
        if let Some(c) = &self.customer {
            index.push(("customer".to_string(), c.clone()));
        }
        if let Some(pm) = &self.payment_method {
            index.push(("payment_method".to_string(), pm.clone()));
            if let Some(c) = &self.customer {
                index.push((BY_CUSTOMER_PAYMENT_METHOD.to_string(), format!("{c}|{pm}")));
            }
        }
        // Settlement finds the bank debits still waiting without a scan.
        if self.status == Status::Processing {
            index.push((
                "status".to_string(),
                Status::Processing.as_str().to_string(),
            ));
        }
        index
    }
}

// ---- the state machine ---------------------------------------------------------

/// A SetupIntent's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
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

/// What a request (or the hosted page, or a job) asks of a SetupIntent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Confirm,
    /// The customer finished (or failed) 3-D Secure on the hosted page.
    Authenticate,
    Cancel,
    /// A bank debit's mandate was accepted (or refused) by the bank.
    Settle,
}

impl machine::Action for Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Confirm => "confirm",
            Action::Authenticate => "authenticate",
            Action::Cancel => "cancel",
            Action::Settle => "settle",
        }
    }

    fn past(self) -> Option<&'static str> {
        match self {
            Action::Confirm => Some("confirmed"),
            Action::Cancel => Some("canceled"),
            Action::Update => Some("updated"),
            _ => None,
        }
    }
}

use Status::{
    Canceled, Processing, RequiresAction, RequiresConfirmation, RequiresPaymentMethod, Succeeded,
};

/// The statuses a setup can still be changed, confirmed or canceled in.
const OPEN: &[Status] = &[RequiresPaymentMethod, RequiresConfirmation, RequiresAction];

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

/// The SetupIntent state machine, as Stripe moves it. Stripe has no event for a
/// setup that starts processing; it announces how it ends.
pub const TRANSITIONS: &[Transition<Status, Action>] = &[
    row(
        &[],
        Action::Create,
        RequiresPaymentMethod,
        Some("setup_intent.created"),
    ),
    row(
        &[],
        Action::Create,
        RequiresConfirmation,
        Some("setup_intent.created"),
    ),
    row(OPEN, Action::Update, RequiresConfirmation, None),
    row(OPEN, Action::Update, RequiresPaymentMethod, None),
    row(
        OPEN,
        Action::Confirm,
        RequiresAction,
        Some("setup_intent.requires_action"),
    ),
    row(OPEN, Action::Confirm, Processing, None),
    row(
        OPEN,
        Action::Confirm,
        Succeeded,
        Some("setup_intent.succeeded"),
    ),
    row(
        OPEN,
        Action::Confirm,
        RequiresPaymentMethod,
        Some("setup_intent.setup_failed"),
    ),
    row(
        &[RequiresAction],
        Action::Authenticate,
        Succeeded,
        Some("setup_intent.succeeded"),
    ),
    row(
        &[RequiresAction],
        Action::Authenticate,
        RequiresPaymentMethod,
        Some("setup_intent.setup_failed"),
    ),
    row(
        OPEN,
        Action::Cancel,
        Canceled,
        Some("setup_intent.canceled"),
    ),
    row(
        &[Processing],
        Action::Settle,
        Succeeded,
        Some("setup_intent.succeeded"),
    ),
    row(
        &[Processing],
        Action::Settle,
        RequiresPaymentMethod,
        Some("setup_intent.setup_failed"),
    ),
];

impl Machine for SetupIntent {
    type Status = Status;
    type Action = Action;
    const NOUN: &'static str = "SetupIntent";
    const UNEXPECTED_STATE: &'static str = "setup_intent_unexpected_state";
    const TRANSITIONS: &'static [Transition<Status, Action>] = TRANSITIONS;

    fn status(&self) -> Status {
        self.status
    }

    fn set_status(&mut self, status: Status) {
        self.status = status;
    }

    fn attach_to(&self, error: &mut ApiError) {
        error.setup_intent = serde_json::to_value(self).ok();
    }
}

// ---- parameters -------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Usage {
    OffSession,
    OnSession,
}

impl Usage {
    fn as_str(self) -> &'static str {
        match self {
            Usage::OffSession => "off_session",
            Usage::OnSession => "on_session",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlowDirection {
    Inbound,
    Outbound,
}

impl FlowDirection {
    fn as_str(self) -> &'static str {
        match self {
            FlowDirection::Inbound => "inbound",
            FlowDirection::Outbound => "outbound",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AllowRedirects {
    Always,
    Never,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutomaticPaymentMethodsParam {
    pub enabled: bool,
    #[serde(default)]
    pub allow_redirects: Option<AllowRedirects>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestThreeDSecure {
    Any,
    Automatic,
    Challenge,
}

impl RequestThreeDSecure {
    fn as_str(self) -> &'static str {
        match self {
            RequestThreeDSecure::Any => "any",
            RequestThreeDSecure::Automatic => "automatic",
            RequestThreeDSecure::Challenge => "challenge",
        }
    }
}

/// `payment_method_options[card]` of a SetupIntent.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CardOptionsParam {
    pub request_three_d_secure: Option<RequestThreeDSecure>,
    pub mandate_options: Option<Value>,
    pub network: Option<String>,
    pub moto: Option<bool>,
    pub three_d_secure: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentMethodOptionsParam {
    pub card: Option<CardOptionsParam>,
    pub us_bank_account: Option<Value>,
    pub sepa_debit: Option<Value>,
    pub link: Option<Value>,
}

/// The parameters confirm shares with create (`confirm=true`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConfirmParams {
    pub client_secret: Option<String>,
    pub confirmation_token: Option<String>,
    pub mandate_data: Option<Value>,
    pub payment_method: Option<String>,
    pub payment_method_data: Option<PaymentMethodData>,
    pub payment_method_options: Option<PaymentMethodOptionsParam>,
    pub return_url: Option<String>,
    pub use_stripe_sdk: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CreateParams {
    pub attach_to_self: Option<bool>,
    pub automatic_payment_methods: Option<AutomaticPaymentMethodsParam>,
    pub confirm: Option<bool>,
    pub confirmation_token: Option<String>,
    pub customer: Option<String>,
    pub description: Option<String>,
    pub flow_directions: Option<Vec<FlowDirection>>,
    pub mandate_data: Option<Value>,
    pub metadata: MetadataParam,
    pub on_behalf_of: Option<String>,
    pub payment_method: Option<String>,
    pub payment_method_configuration: Option<String>,
    pub payment_method_data: Option<PaymentMethodData>,
    pub payment_method_options: Option<PaymentMethodOptionsParam>,
    pub payment_method_types: Option<Vec<String>>,
    pub return_url: Option<String>,
    pub single_use: Option<Value>,
    pub usage: Option<Usage>,
    pub use_stripe_sdk: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateParams {
    pub attach_to_self: Option<bool>,
    pub customer: Option<String>,
    pub description: Field<String>,
    pub flow_directions: Field<Vec<FlowDirection>>,
    pub metadata: MetadataParam,
    pub payment_method: Option<String>,
    pub payment_method_configuration: Option<String>,
    pub payment_method_data: Option<PaymentMethodData>,
    pub payment_method_options: Option<PaymentMethodOptionsParam>,
    pub payment_method_types: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancellationReason {
    Abandoned,
    Duplicate,
    RequestedByCustomer,
}

impl CancellationReason {
    fn as_str(self) -> &'static str {
        match self {
            CancellationReason::Abandoned => "abandoned",
            CancellationReason::Duplicate => "duplicate",
            CancellationReason::RequestedByCustomer => "requested_by_customer",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CancelParams {
    pub cancellation_reason: Option<CancellationReason>,
}

/// `GET /v1/setup_intents` filters.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListFilters {
    pub customer: Option<String>,
    pub payment_method: Option<String>,
}

/// What the retrieve of a publishable key may add.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetrieveParams {
    pub client_secret: Option<String>,
}

// ---- views --------------------------------------------------------------------

/// What a publishable key may see of a SetupIntent (stripe.js's view).
pub fn publishable_view(si: &Value) -> Value {
    const VISIBLE: &[&str] = &[
        "id",
        "object",
        "automatic_payment_methods",
        "cancellation_reason",
        "client_secret",
        "created",
        "description",
        "last_setup_error",
        "livemode",
        "next_action",
        "payment_method",
        "payment_method_configuration_details",
        "payment_method_types",
        "status",
        "usage",
    ];
    match si {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| VISIBLE.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn encode(si: &SetupIntent) -> Result<Value, ApiError> {
    serde_json::to_value(si).map_err(|e| ApiError::internal("setup intent does not encode", e))
}

/// The answer for the caller: the whole object for a secret key, stripe.js's view otherwise.
fn answer_for(ctx: &Ctx, saved: Saved) -> Answer {
    if ctx.request.key_kind == KeyKind::Publishable {
        Answer::Tree(publishable_view(&saved))
    } else {
        saved.into()
    }
}

fn view_for(ctx: &Ctx, value: Value) -> Value {
    if ctx.request.key_kind == KeyKind::Publishable {
        publishable_view(&value)
    } else {
        value
    }
}

fn default_options(types: &[String]) -> Value {
    let mut options = Map::new();
    for t in types {
        match t.as_str() {
            "card" => {
                options.insert(
                    "card".into(),
                    json!({"mandate_options": null, "network": null, "request_three_d_secure": "automatic"}),
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
            other => {
                options.insert(other.to_string(), json!({}));
            }
        }
    }
    Value::Object(options)
}

/// Merges `payment_method_options` into what the intent shows.
fn apply_options(si: &mut SetupIntent, p: &PaymentMethodOptionsParam) {
    let mut options = si
        .payment_method_options
        .clone()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    if let Some(card) = &p.card {
        let mut c = options
            .get("card")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(r) = card.request_three_d_secure {
            c.insert("request_three_d_secure".into(), json!(r.as_str()));
        }
        if let Some(m) = &card.mandate_options {
            c.insert("mandate_options".into(), m.clone());
        }
        if let Some(n) = &card.network {
            c.insert("network".into(), json!(n));
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
    si.payment_method_options = Some(Value::Object(options));
}

fn requested_three_d_secure(si: &SetupIntent) -> ThreeDsRequest {
    match si
        .payment_method_options
        .as_ref()
        .and_then(|o| o.get("card"))
        .and_then(|c| c.get("request_three_d_secure"))
        .and_then(Value::as_str)
    {
        Some("any") => ThreeDsRequest::Any,
        Some("challenge") => ThreeDsRequest::Challenge,
        _ => ThreeDsRequest::Automatic,
    }
}

// ---- operations --------------------------------------------------------------

pub async fn create(ctx: &mut Ctx, params: &CreateParams) -> Result<Answer, ApiError> {
    let p = params.clone();
    if p.confirmation_token.is_some() {
        only_one_method_source(&p.payment_method, &p.payment_method_data)?;
    }
    if let Some(c) = &p.customer {
        let _c: Customer = ctx
            .fetch(c)
            .await
            .map_err(|e| e.referenced_by("customer"))?;
    }
    if p.payment_method.is_some() && p.payment_method_data.is_some() {
        return Err(ApiError::invalid_request(
            "You cannot provide both payment_method and payment_method_data.",
        )
        .with_param("payment_method_data"));
    }
    if p.confirm != Some(true) {
        for (given, param) in [
            (p.return_url.is_some(), "return_url"),
            (p.mandate_data.is_some(), "mandate_data"),
            (p.use_stripe_sdk.is_some(), "use_stripe_sdk"),
            (p.confirmation_token.is_some(), "confirmation_token"),
        ] {
            if given {
                return Err(ApiError::invalid_request(format!(
                    "You can only pass `{param}` when `confirm` is true."
                ))
                .with_param(param));
            }
        }
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
            (
                vec!["card".to_string(), "link".to_string()],
                Some(AutomaticPaymentMethods {
                    allow_redirects: Some(redirects.unwrap_or("always").to_string()),
                    enabled: Some(true),
                }),
            )
        }
    };
    let id = ids::new_id("seti");
    let mut si = SetupIntent {
        client_secret: Some(new_client_secret(&id)),
        id,
        object: SetupIntent::OBJECT.into(),
        application: None,
        attach_to_self: p.attach_to_self,
        payment_method_configuration_details: automatic
            .is_some()
            .then(|| json!({"id": "pmc_payground_default", "parent": null})),
        automatic_payment_methods: automatic,
        cancellation_reason: None,
        created: ctx.now,
        customer: p.customer.clone(),
        description: p.description.clone(),
        flow_directions: p
            .flow_directions
            .as_ref()
            .map(|d| d.iter().map(|f| f.as_str().to_string()).collect()),
        last_setup_error: None,
        latest_attempt: None,
        livemode: false,
        mandate: None,
        metadata: new_metadata(p.metadata.clone())?,
        next_action: None,
        on_behalf_of: None,
        payment_method: None,
        payment_method_options: Some(default_options(&types)),
        payment_method_types: types,
        single_use_mandate: None,
        status: RequiresPaymentMethod,
        usage: p.usage.unwrap_or(Usage::OffSession).as_str().into(),
    };
    if let Some(options) = &p.payment_method_options {
        apply_options(&mut si, options);
    }
    let mut resolved = None;
    if let Some(pm) = &p.payment_method {
        let pm = payment_method::resolve(ctx, pm, "payment_method").await?;
        si.payment_method = Some(pm.id.clone());
        si.status = RequiresConfirmation;
        resolved = Some(pm);
    } else if let Some(data) = p.payment_method_data.clone() {
        let pm = payment_method::build(ctx, data, "payment_method_data")?;
        ctx.save(&pm)?;
        si.payment_method = Some(pm.id.clone());
        si.status = RequiresConfirmation;
        resolved = Some(pm);
    }
    let value = machine::created(ctx, &si)?;
    if p.confirm == Some(true) {
        let confirm = ConfirmParams {
            mandate_data: p.mandate_data,
            return_url: p.return_url,
            use_stripe_sdk: p.use_stripe_sdk,
            confirmation_token: p.confirmation_token,
            ..Default::default()
        };
        return run_confirm(ctx, si, confirm, resolved).await;
    }
    Ok(value.into())
}

/// Loads a SetupIntent, checking the client secret when a publishable key asks.
pub async fn load(
    ctx: &mut Ctx,
    id: &str,
    client_secret: Option<&str>,
) -> Result<SetupIntent, ApiError> {
    let si: SetupIntent = ctx.fetch(id).await?;
    if ctx.request.key_kind == KeyKind::Publishable
        && !client_secret_matches(client_secret, si.client_secret.as_deref())
    {
        // A wrong secret learns nothing, not even that the intent exists.
        return Err(ApiError::no_such(SetupIntent::OBJECT, id));
    }
    Ok(si)
}

pub async fn retrieve(
    ctx: &mut Ctx,
    id: &str,
    params: &RetrieveParams,
) -> Result<Answer, ApiError> {
    if ctx.request.key_kind == KeyKind::Publishable {
        let si = load(ctx, id, params.client_secret.as_deref()).await?;
        return Ok(Answer::Tree(publishable_view(&encode(&si)?)));
    }
    ctx.fetch_text::<SetupIntent>(id).await.map(Answer::Text)
}

pub async fn update(ctx: &mut Ctx, id: &str, params: &UpdateParams) -> Result<Value, ApiError> {
    let p = params.clone();
    let mut si: SetupIntent = ctx.fetch(id).await?;
    check(&si, Action::Update)?;
    if let Some(c) = p.customer {
        if si.customer.as_deref().is_some_and(|old| old != c) {
            return Err(ApiError::invalid_request(
                "You cannot change the customer of a SetupIntent once it has one.",
            )
            .with_param("customer"));
        }
        let _c: Customer = ctx
            .fetch(&c)
            .await
            .map_err(|e| e.referenced_by("customer"))?;
        si.customer = Some(c);
    }
    if p.attach_to_self.is_some() {
        si.attach_to_self = p.attach_to_self;
    }
    p.description.apply(&mut si.description);
    p.flow_directions
        .map_set(|d| d.iter().map(|f| f.as_str().to_string()).collect())
        .apply(&mut si.flow_directions);
    apply_metadata(&mut si.metadata, p.metadata)?;
    if let Some(types) = &p.payment_method_types {
        check_types(types)?;
        si.payment_method_types = types.clone();
        si.automatic_payment_methods = None;
    }
    if let Some(o) = &p.payment_method_options {
        apply_options(&mut si, o);
    }
    if p.payment_method.is_some() && p.payment_method_data.is_some() {
        return Err(ApiError::invalid_request(
            "You cannot provide both payment_method and payment_method_data.",
        )
        .with_param("payment_method_data"));
    }
    let mut new_method = None;
    if let Some(pm) = &p.payment_method {
        let pm = payment_method::resolve(ctx, pm, "payment_method").await?;
        new_method = Some(pm.id);
    } else if let Some(data) = p.payment_method_data {
        let pm = payment_method::build(ctx, data, "payment_method_data")?;
        ctx.save(&pm)?;
        new_method = Some(pm.id);
    }
    let after = match new_method {
        Some(pm) => {
            si.payment_method = Some(pm);
            si.next_action = None;
            transition(ctx, &mut si, Action::Update, RequiresConfirmation)?
        }
        None => ctx.save(&si)?,
    };
    Ok(after.into())
}

pub async fn confirm(ctx: &mut Ctx, id: &str, params: &ConfirmParams) -> Result<Answer, ApiError> {
    let p = params.clone();
    let si = load(ctx, id, p.client_secret.as_deref()).await?;
    run_confirm(ctx, si, p, None).await
}

/// Applies confirm-time parameters and makes one setup attempt. `resolved`: the
/// PaymentMethod the creating request has just resolved or built, if it has.
async fn run_confirm(
    ctx: &mut Ctx,
    mut si: SetupIntent,
    p: ConfirmParams,
    resolved: Option<PaymentMethod>,
) -> Result<Answer, ApiError> {
    check(&si, Action::Confirm)?;
    if let Some(o) = &p.payment_method_options {
        apply_options(&mut si, o);
    }
    if p.payment_method.is_some() && p.payment_method_data.is_some() {
        return Err(ApiError::invalid_request(
            "You cannot provide both payment_method and payment_method_data.",
        )
        .with_param("payment_method_data"));
    }
    let mut resolved = resolved;
    let mut return_url = p.return_url.clone();
    if let Some(token) = &p.confirmation_token {
        only_one_method_source(&p.payment_method, &p.payment_method_data)?;
        let used = confirmation_token::redeem(ctx, token, Use::SetupIntent(&si.id)).await?;
        si.payment_method = Some(used.payment_method.id.clone());
        if return_url.is_none() {
            return_url = used.return_url;
        }
        resolved = Some(used.payment_method);
    } else if let Some(id) = &p.payment_method {
        let pm = payment_method::resolve(ctx, id, "payment_method").await?;
        si.payment_method = Some(pm.id.clone());
        resolved = Some(pm);
    } else if let Some(data) = p.payment_method_data.clone() {
        let pm = payment_method::build(ctx, data, "payment_method_data")?;
        ctx.save(&pm)?;
        si.payment_method = Some(pm.id.clone());
        resolved = Some(pm);
    }
    let Some(pm_id) = si.payment_method.clone() else {
        let mut err = ApiError::invalid_request(
            "You cannot confirm this SetupIntent because it's missing a payment method. Update the SetupIntent with a payment method and then confirm it again.",
        )
        .with_code("setup_intent_unexpected_state");
        err.setup_intent = Some(view_for(ctx, encode(&si)?));
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
        if si.customer.as_deref() != Some(owner.as_str()) {
            return Err(ApiError::invalid_request(format!(
                "The provided PaymentMethod ({}) is attached to a Customer; you must also provide that Customer ({owner}) to use it.",
                pm.id
            ))
            .with_param("payment_method"));
        }
    }
    let allowed = si.payment_method_types.contains(&pm.kind)
        || (si
            .automatic_payment_methods
            .as_ref()
            .is_some_and(|a| a.enabled == Some(true))
            && KNOWN_TYPES.contains(&pm.kind.as_str()));
    if !allowed {
        return Err(ApiError::invalid_request(format!(
            "The PaymentMethod provided ({}) is not allowed for this SetupIntent. Please attach a PaymentMethod of one of the following types: {}. Alternatively update the allowed payment_method_types for this SetupIntent to include \"{}\".",
            pm.kind,
            si.payment_method_types.join(", "),
            pm.kind
        ))
        .with_code("setup_intent_incompatible_payment_method")
        .with_param("payment_method"));
    }
    if !si.payment_method_types.contains(&pm.kind) {
        si.payment_method_types.push(pm.kind.clone());
    }
    let attempt = setup_attempt::start(ctx, &si, &pm)?;
    si.latest_attempt = Some(attempt.id.clone());
    attempt_setup(
        ctx,
        si,
        pm,
        attempt,
        Action::Confirm,
        return_url.as_deref(),
        false,
    )
    .await
}

/// One attempt to set a payment method up: asks the network, then records the
/// attempt and the intent's new status.
async fn attempt_setup(
    ctx: &mut Ctx,
    mut si: SetupIntent,
    pm: PaymentMethod,
    mut attempt: SetupAttempt,
    action: Action,
    return_url: Option<&str>,
    authenticated: bool,
) -> Result<Answer, ApiError> {
    si.next_action = None;
    si.last_setup_error = None;
    match pm.kind.as_str() {
        "us_bank_account" | "sepa_debit" => {
            attempt.status = setup_attempt::Status::Processing;
            ctx.save(&attempt)?;
            let value = transition(ctx, &mut si, action, Processing)?;
            // The bank answers after the settlement delay, as it does for a debit.
            let delay = i64::try_from(ctx.settings.settlement_delay.as_secs()).unwrap_or(i64::MAX);
            ctx.schedule(SETTLE_JOB, &si.id, ctx.now.saturating_add(delay));
            return Ok(answer_for(ctx, value));
        }
        "card" => {}
        other => {
            return Err(ApiError::invalid_request(format!(
                "payground cannot set up {other} payment methods yet."
            ))
            .with_param("payment_method"))
        }
    }
    let test_card = pm
        .test_card(ctx.account_id())
        .unwrap_or_else(|| network::card_for_number(""));
    let cvc_provided = pm
        .card
        .as_ref()
        .and_then(|c| c.checks.as_ref())
        .is_some_and(|c| c.cvc_check.is_some());
    let decision = network::authorize_setup(
        &test_card,
        &network::Attempt {
            off_session: false,
            set_up: false,
            request_three_d_secure: requested_three_d_secure(&si),
            authenticated,
            cvc_provided,
        },
    );
    match decision {
        Decision::RequireAuthentication => {
            let url = authentication_url(ctx, &si.id, si.client_secret.as_deref());
            si.next_action = Some(three_d_secure_action(&url, return_url, &pm.id));
            attempt.status = setup_attempt::Status::RequiresAction;
            ctx.save(&attempt)?;
            let value = transition(ctx, &mut si, action, RequiresAction)?;
            Ok(answer_for(ctx, value))
        }
        Decision::Decline { decline: d, .. } => {
            let mut error = ApiError::new(402, ErrorType::CardError, d.message).with_code(d.code);
            error.decline_code = d.decline_code.map(str::to_string);
            error.param = d.param.map(str::to_string);
            error.payment_method =
                Some(serde_json::to_value(&pm).map_err(|e| ApiError::internal("encode", e))?);
            fail(ctx, si, attempt, action, error, authenticated).await
        }
        Decision::Approve(_) => {
            attempt.status = setup_attempt::Status::Succeeded;
            attempt.payment_method_details =
                setup_attempt::payment_method_details(ctx, &pm, authenticated);
            ctx.save(&attempt)?;
            set_up(ctx, &si, pm).await?;
            let value = transition(ctx, &mut si, action, Succeeded)?;
            Ok(answer_for(ctx, value))
        }
    }
}

/// A setup that succeeded: the PaymentMethod is attached to the customer (when
/// the intent has one) and set up for the intent's usage.
async fn set_up(ctx: &mut Ctx, si: &SetupIntent, mut pm: PaymentMethod) -> Result<(), ApiError> {
    if let Some(customer) = &si.customer {
        if pm.customer.is_none() {
            payment_method::attach(ctx, &mut pm, customer, "payment_method").await?;
        }
    }
    payment_method::mark_set_up(ctx, &pm.id, &si.usage).await
}

/// A setup attempt that failed: the attempt records its error, the intent goes back
/// to `requires_payment_method` with `last_setup_error`, and the answer carries
/// the intent. Stripe keeps a failed attempt, so it commits with its error.
async fn fail(
    ctx: &mut Ctx,
    mut si: SetupIntent,
    mut attempt: SetupAttempt,
    action: Action,
    mut error: ApiError,
    authenticated: bool,
) -> Result<Answer, ApiError> {
    let error_value = serde_json::to_value(&error).map_err(|e| ApiError::internal("encode", e))?;
    attempt.status = setup_attempt::Status::Failed;
    attempt.setup_error = Some(error_value.clone());
    if let Some(pm) = si.payment_method.clone() {
        if let Some(pm) = ctx.find::<PaymentMethod>(&pm).await? {
            attempt.payment_method_details =
                setup_attempt::payment_method_details(ctx, &pm, authenticated);
        }
    }
    ctx.save(&attempt)?;
    si.last_setup_error = Some(error_value);
    si.payment_method = None;
    si.next_action = None;
    let value = transition(ctx, &mut si, action, RequiresPaymentMethod)?;
    error.setup_intent = Some(view_for(ctx, value.into()));
    ctx.commit_with_error();
    Err(error)
}

/// The outcome of the hosted 3-D Secure page for a SetupIntent.
pub async fn authenticate(
    ctx: &mut Ctx,
    id: &str,
    client_secret: &str,
    completed: bool,
) -> Result<SetupIntent, ApiError> {
    let si: SetupIntent = ctx.fetch(id).await?;
    if !client_secret_matches(Some(client_secret), si.client_secret.as_deref()) {
        return Err(ApiError::no_such(SetupIntent::OBJECT, id));
    }
    check(&si, Action::Authenticate)?;
    let pm_id = si.payment_method.clone().unwrap_or_default();
    let pm: PaymentMethod = ctx.fetch(&pm_id).await?;
    let attempt_id = si.latest_attempt.clone().unwrap_or_default();
    let attempt: SetupAttempt = ctx.fetch(&attempt_id).await?;
    if !completed {
        let mut error = ApiError::invalid_request(
            "The latest attempt to set up the payment method has failed because authentication failed.",
        )
        .with_code("setup_intent_authentication_failure");
        error.payment_method =
            Some(serde_json::to_value(&pm).map_err(|e| ApiError::internal("encode", e))?);
        // The page reports the failure through the redirect; the intent keeps it.
        let _ = fail(ctx, si, attempt, Action::Authenticate, error, false).await;
        return ctx.fetch(id).await;
    }
    // A decline after authentication is recorded on the intent; the page reports it.
    let _ = attempt_setup(ctx, si, pm, attempt, Action::Authenticate, None, true).await;
    ctx.fetch(id).await
}

pub async fn cancel(ctx: &mut Ctx, id: &str, params: &CancelParams) -> Result<Value, ApiError> {
    let mut si: SetupIntent = ctx.fetch(id).await?;
    check(&si, Action::Cancel)?;
    if let Some(attempt_id) = si.latest_attempt.clone() {
        if let Some(mut attempt) = ctx.find::<SetupAttempt>(&attempt_id).await? {
            if attempt.status == setup_attempt::Status::RequiresAction {
                attempt.status = setup_attempt::Status::Abandoned;
                ctx.save(&attempt)?;
            }
        }
    }
    si.cancellation_reason = params.cancellation_reason.map(|r| r.as_str().to_string());
    si.next_action = None;
    let value = transition(ctx, &mut si, Action::Cancel, Canceled)?;
    Ok(value.into())
}

/// The scheduled job that settles a processing bank-debit setup when the
/// settlement delay is over.
pub const SETTLE_JOB: &str = "setup_intent.settle";

/// Settles a processing bank-debit setup by Stripe's test account numbers: the
/// mandate is accepted, or the account fails as a debit from it would.
pub async fn settle(ctx: &mut Ctx, id: &str) -> Result<Value, ApiError> {
    let mut si: SetupIntent = ctx.fetch(id).await?;
    check(&si, Action::Settle)?;
    // Settled now (the test helper), the scheduled settlement goes with it.
    ctx.unschedule(SETTLE_JOB, &si.id);
    let pm_id = si.payment_method.clone().unwrap_or_default();
    let pm: PaymentMethod = ctx.fetch(&pm_id).await?;
    let attempt_id = si.latest_attempt.clone().unwrap_or_default();
    let mut attempt: SetupAttempt = ctx.fetch(&attempt_id).await?;
    match payment_method::debit_failure(&pm) {
        None => {
            attempt.status = setup_attempt::Status::Succeeded;
            ctx.save(&attempt)?;
            set_up(ctx, &si, pm).await?;
            let value = transition(ctx, &mut si, Action::Settle, Succeeded)?;
            Ok(value.into())
        }
        Some((code, message)) => {
            let mut error = ApiError::invalid_request(message).with_code(code);
            error.payment_method =
                Some(serde_json::to_value(&pm).map_err(|e| ApiError::internal("encode", e))?);
            let error_value =
                serde_json::to_value(&error).map_err(|e| ApiError::internal("encode", e))?;
            attempt.status = setup_attempt::Status::Failed;
            attempt.setup_error = Some(error_value.clone());
            ctx.save(&attempt)?;
            si.last_setup_error = Some(error_value);
            si.payment_method = None;
            let value = transition(ctx, &mut si, Action::Settle, RequiresPaymentMethod)?;
            Ok(value.into())
        }
    }
}

pub async fn list(
    ctx: &mut Ctx,
    filters: &ListFilters,
    params: &ListParams,
) -> Result<Answer, ApiError> {
    let filter = match (&filters.customer, &filters.payment_method) {
        (Some(c), Some(pm)) => Some((BY_CUSTOMER_PAYMENT_METHOD.to_string(), format!("{c}|{pm}"))),
        (Some(c), None) => Some(("customer".to_string(), c.clone())),
        (None, Some(pm)) => Some(("payment_method".to_string(), pm.clone())),
        (None, None) => None,
    };
    list::page(
        ctx,
        SetupIntent::OBJECT,
        filter,
        params,
        "/v1/setup_intents",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Status] = &[
        RequiresPaymentMethod,
        RequiresConfirmation,
        RequiresAction,
        Processing,
        Canceled,
        Succeeded,
    ];

    fn intent(status: Status) -> SetupIntent {
        serde_json::from_value(json!({
            "id": "seti_1", "object": "setup_intent", "application": null,
            "automatic_payment_methods": null, "cancellation_reason": null,
            "client_secret": null, "created": 1, "customer": null, "description": null,
            "flow_directions": null, "last_setup_error": null, "latest_attempt": null,
            "livemode": false, "mandate": null, "metadata": {}, "next_action": null,
            "on_behalf_of": null, "payment_method": null,
            "payment_method_configuration_details": null, "payment_method_options": null,
            "payment_method_types": ["card"], "single_use_mandate": null,
            "status": status.as_str(), "usage": "off_session",
        }))
        .expect("a SetupIntent")
    }

    #[test]
    fn the_table_is_whole() {
        machine::check_table::<SetupIntent>(ALL, &[Canceled, Succeeded]);
    }

    #[test]
    fn actions_are_allowed_from_exactly_these_statuses() {
        use Action::*;
        let expect: &[(Action, &[Status])] = &[
            (Update, OPEN),
            (Confirm, OPEN),
            (Cancel, OPEN),
            (Authenticate, &[RequiresAction]),
            (Settle, &[Processing]),
        ];
        for (action, allowed) in expect {
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
            "You cannot confirm this SetupIntent because it has a status of succeeded. Only a SetupIntent with one of the following statuses may be confirmed: requires_payment_method, requires_confirmation, requires_action."
        );
        assert_eq!(err.code.as_deref(), Some("setup_intent_unexpected_state"));
        assert!(err.setup_intent.is_some());
        let err = check(&intent(Canceled), Action::Cancel).expect_err("refused");
        assert!(err.message.ends_with(
            "may be canceled: requires_payment_method, requires_confirmation, requires_action."
        ));
    }

    #[test]
    fn processing_has_no_event_of_its_own() {
        let row = TRANSITIONS
            .iter()
            .find(|t| t.action == Action::Confirm && t.to == Processing)
            .expect("a row");
        assert_eq!(row.event, None);
    }
}
