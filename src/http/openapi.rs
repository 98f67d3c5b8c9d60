//! payground's own OpenAPI 3 document, served at `GET /payground/openapi.json`:
//! every `/v1` route it implements, with the parameters its params types accept
//! (Stripe's names and wire types), bearer auth with the secret key, and the
//! object or the error envelope each answers with. Built from small tables here;
//! a test keeps it in step with the routes of every handler file.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::ctx::API_VERSION;
use crate::resources::payment_method::LISTABLE_TYPES;

/// Where the document is served (routed in `admin.rs` with payground's own routes).
pub const PATH: &str = "/payground/openapi.json";

pub async fn serve() -> Response {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| document().to_string());
    let mut response = text.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

// ---- schemas ------------------------------------------------------------------

type Fields = Vec<(&'static str, Value)>;

fn string() -> Value {
    json!({"type": "string"})
}

fn integer() -> Value {
    json!({"type": "integer"})
}

fn int_range(min: i64, max: i64) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max})
}

fn boolean() -> Value {
    json!({"type": "boolean"})
}

fn one_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

fn strings() -> Value {
    array(string())
}

/// A hash payground takes whole without looking inside (`mandate_data`, ...).
fn hash() -> Value {
    json!({"type": "object"})
}

fn object(fields: Fields) -> Value {
    object_req(&[], fields)
}

fn object_req(required: &[&str], fields: Fields) -> Value {
    let mut schema = json!({"type": "object", "additionalProperties": false});
    let properties: Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    schema["properties"] = Value::Object(properties);
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// An update's optional field that `""` clears, as in Stripe's spec.
fn clearable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "string", "enum": [""]}]})
}

fn metadata() -> Value {
    clearable(json!({"type": "object", "additionalProperties": {"type": "string"}}))
}

fn address() -> Value {
    object(
        ["city", "country", "line1", "line2", "postal_code", "state"]
            .into_iter()
            .map(|k| (k, string()))
            .collect(),
    )
}

fn shipping(extra: &[&'static str]) -> Value {
    let mut fields = vec![
        ("address", address()),
        ("name", string()),
        ("phone", string()),
    ];
    fields.extend(extra.iter().map(|k| (*k, string())));
    object_req(&["address", "name"], fields)
}

fn capture_method() -> Value {
    one_of(&["automatic", "automatic_async", "manual"])
}

fn setup_future_usage() -> Value {
    one_of(&["off_session", "on_session"])
}

fn allow_redisplay() -> Value {
    one_of(&["always", "limited", "unspecified"])
}

fn preferred_network() -> Value {
    object(vec![(
        "preferred",
        clearable(one_of(&["cartes_bancaires", "mastercard", "visa"])),
    )])
}

fn holder_and_account_type() -> Fields {
    vec![
        ("account_holder_type", one_of(&["company", "individual"])),
        ("account_type", one_of(&["checking", "savings"])),
    ]
}

fn billing_details() -> Value {
    object(vec![
        ("address", clearable(address())),
        ("email", string()),
        ("name", string()),
        ("phone", string()),
    ])
}

/// `payment_method_data` of an intent; also the body of PaymentMethod create.
fn payment_method_data() -> Fields {
    let mut bank = holder_and_account_type();
    bank.extend([
        ("account_number", string()),
        ("financial_connections_account", string()),
        ("routing_number", string()),
    ]);
    vec![
        ("type", one_of(&["card", "sepa_debit", "us_bank_account"])),
        ("allow_redisplay", allow_redisplay()),
        ("billing_details", billing_details()),
        (
            "card",
            object(vec![
                ("number", string()),
                ("exp_month", integer()),
                ("exp_year", integer()),
                ("cvc", string()),
                ("token", string()),
                ("networks", preferred_network()),
            ]),
        ),
        ("metadata", metadata()),
        ("us_bank_account", object(bank)),
        (
            "sepa_debit",
            object_req(&["iban"], vec![("iban", string())]),
        ),
        ("radar_options", hash()),
    ]
}

fn payment_method_options() -> Value {
    let mut card: Fields = vec![
        ("capture_method", clearable(capture_method())),
        (
            "request_three_d_secure",
            one_of(&["any", "automatic", "challenge"]),
        ),
        ("require_cvc_recollection", boolean()),
    ];
    card.extend(
        [
            "setup_future_usage",
            "request_incremental_authorization",
            "request_extended_authorization",
            "request_multicapture",
            "request_overcapture",
            "statement_descriptor_suffix_kana",
            "statement_descriptor_suffix_kanji",
            "cvc_token",
            "network",
        ]
        .into_iter()
        .map(|k| (k, string())),
    );
    card.extend([("installments", hash()), ("mandate_options", hash())]);
    object(vec![
        ("card", object(card)),
        ("us_bank_account", hash()),
        ("sepa_debit", hash()),
        ("link", hash()),
    ])
}

/// `off_session`: a boolean, or `one_off` / `recurring`.
fn off_session() -> Value {
    json!({"anyOf": [boolean(), one_of(&["one_off", "recurring"])]})
}

fn strs(names: &[&'static str]) -> Fields {
    names.iter().map(|k| (*k, string())).collect()
}

// ---- request fields of each operation -------------------------------------------

fn customer_fields() -> Fields {
    let invoice_settings = object(vec![
        (
            "custom_fields",
            clearable(array(object_req(
                &["name", "value"],
                strs(&["name", "value"]),
            ))),
        ),
        ("default_payment_method", string()),
        ("footer", string()),
        (
            "rendering_options",
            clearable(object(vec![(
                "amount_tax_display",
                clearable(one_of(&["exclude_tax", "include_inclusive_tax"])),
            )])),
        ),
    ]);
    vec![
        ("address", clearable(address())),
        ("balance", integer()),
        ("cash_balance", hash()),
        ("coupon", string()),
        ("default_source", string()),
        ("description", string()),
        ("email", string()),
        ("invoice_prefix", string()),
        ("invoice_settings", invoice_settings),
        ("metadata", metadata()),
        ("name", string()),
        ("next_invoice_sequence", integer()),
        ("payment_method", string()),
        ("phone", string()),
        ("preferred_locales", clearable(strings())),
        ("promotion_code", string()),
        ("shipping", clearable(shipping(&[]))),
        ("source", string()),
        ("tax", object(strs(&["ip_address", "validate_location"]))),
        (
            "tax_exempt",
            clearable(one_of(&["exempt", "none", "reverse"])),
        ),
        ("tax_id_data", array(hash())),
        ("test_clock", string()),
    ]
}

/// What confirm takes, and create with `confirm=true`.
fn confirm_fields() -> Fields {
    vec![
        ("capture_method", capture_method()),
        ("confirmation_token", string()),
        ("error_on_requires_action", boolean()),
        ("mandate", string()),
        ("mandate_data", hash()),
        ("off_session", off_session()),
        ("payment_method", string()),
        ("payment_method_data", object(payment_method_data())),
        ("payment_method_options", payment_method_options()),
        ("payment_method_types", strings()),
        ("radar_options", hash()),
        ("receipt_email", string()),
        ("return_url", string()),
        ("setup_future_usage", clearable(setup_future_usage())),
        (
            "shipping",
            clearable(shipping(&["carrier", "tracking_number"])),
        ),
        ("use_stripe_sdk", boolean()),
    ]
}

fn payment_intent_create() -> Fields {
    let mut fields = vec![
        ("amount", integer()),
        ("currency", string()),
        ("application_fee_amount", integer()),
        (
            "automatic_payment_methods",
            object_req(
                &["enabled"],
                vec![
                    ("enabled", boolean()),
                    ("allow_redirects", one_of(&["always", "never"])),
                ],
            ),
        ),
        ("confirm", boolean()),
        ("confirmation_method", one_of(&["automatic", "manual"])),
        ("customer", string()),
        ("description", string()),
        ("metadata", metadata()),
        ("on_behalf_of", string()),
        ("payment_method_configuration", string()),
        ("statement_descriptor", string()),
        ("statement_descriptor_suffix", string()),
        ("transfer_data", hash()),
        ("transfer_group", string()),
    ];
    fields.extend(confirm_fields());
    fields
}

fn payment_intent_update() -> Fields {
    let mut fields = vec![
        ("amount", integer()),
        ("application_fee_amount", clearable(integer())),
        ("capture_method", capture_method()),
        ("metadata", metadata()),
        ("payment_method_data", object(payment_method_data())),
        ("payment_method_options", payment_method_options()),
        ("payment_method_types", strings()),
        ("setup_future_usage", clearable(setup_future_usage())),
        (
            "shipping",
            clearable(shipping(&["carrier", "tracking_number"])),
        ),
        ("transfer_data", hash()),
    ];
    fields.extend(strs(&[
        "currency",
        "customer",
        "description",
        "payment_method",
        "payment_method_configuration",
        "receipt_email",
        "statement_descriptor",
        "statement_descriptor_suffix",
        "transfer_group",
    ]));
    fields
}

fn customer_session_fields() -> Fields {
    let enabled = || object_req(&["enabled"], vec![("enabled", boolean())]);
    let toggle = || one_of(&["disabled", "enabled"]);
    let features = object(vec![
        (
            "payment_method_allow_redisplay_filters",
            array(one_of(&["always", "limited", "unspecified"])),
        ),
        ("payment_method_redisplay", toggle()),
        ("payment_method_redisplay_limit", int_range(1, 10)),
        ("payment_method_remove", toggle()),
        ("payment_method_save", toggle()),
        ("payment_method_save_usage", setup_future_usage()),
    ]);
    vec![
        (
            "components",
            object(vec![
                ("buy_button", enabled()),
                (
                    "payment_element",
                    object_req(
                        &["enabled"],
                        vec![("enabled", boolean()), ("features", features)],
                    ),
                ),
                ("pricing_table", enabled()),
            ]),
        ),
        ("customer", string()),
    ]
}

fn confirmation_token_fields() -> Fields {
    vec![
        ("mandate_data", hash()),
        ("payment_method", string()),
        ("payment_method_data", object(payment_method_data())),
        ("payment_method_options", hash()),
        ("return_url", string()),
        ("setup_future_usage", setup_future_usage()),
        ("shipping", clearable(shipping(&[]))),
        ("use_stripe_sdk", boolean()),
    ]
}

fn setup_payment_method_options() -> Value {
    object(vec![
        (
            "card",
            object(vec![
                (
                    "request_three_d_secure",
                    one_of(&["any", "automatic", "challenge"]),
                ),
                ("mandate_options", hash()),
                ("network", string()),
                ("moto", boolean()),
                ("three_d_secure", hash()),
            ]),
        ),
        ("us_bank_account", hash()),
        ("sepa_debit", hash()),
        ("link", hash()),
    ])
}

fn flow_directions() -> Value {
    array(one_of(&["inbound", "outbound"]))
}

fn setup_confirm_fields() -> Fields {
    vec![
        ("confirmation_token", string()),
        ("mandate_data", hash()),
        ("payment_method", string()),
        ("payment_method_data", object(payment_method_data())),
        ("payment_method_options", setup_payment_method_options()),
        ("return_url", string()),
        ("use_stripe_sdk", boolean()),
    ]
}

fn setup_intent_create() -> Fields {
    let mut fields = setup_confirm_fields();
    fields.extend([
        ("attach_to_self", boolean()),
        (
            "automatic_payment_methods",
            object_req(
                &["enabled"],
                vec![
                    ("enabled", boolean()),
                    ("allow_redirects", one_of(&["always", "never"])),
                ],
            ),
        ),
        ("confirm", boolean()),
        ("customer", string()),
        ("description", string()),
        ("flow_directions", flow_directions()),
        ("metadata", metadata()),
        ("on_behalf_of", string()),
        ("payment_method_configuration", string()),
        ("payment_method_types", strings()),
        ("single_use", hash()),
        ("usage", one_of(&["off_session", "on_session"])),
    ]);
    fields
}

fn setup_intent_update() -> Fields {
    vec![
        ("attach_to_self", boolean()),
        ("customer", string()),
        ("description", clearable(string())),
        ("flow_directions", clearable(flow_directions())),
        ("metadata", metadata()),
        ("payment_method", string()),
        ("payment_method_configuration", string()),
        ("payment_method_data", object(payment_method_data())),
        ("payment_method_options", setup_payment_method_options()),
        ("payment_method_types", strings()),
    ]
}

fn payment_method_update() -> Fields {
    vec![
        ("allow_redisplay", allow_redisplay()),
        ("billing_details", billing_details()),
        (
            "card",
            object(vec![
                ("exp_month", integer()),
                ("exp_year", integer()),
                ("networks", preferred_network()),
            ]),
        ),
        ("metadata", metadata()),
        ("us_bank_account", object(holder_and_account_type())),
        ("link", hash()),
    ]
}

fn refund_create() -> Fields {
    let mut fields = vec![
        ("amount", integer()),
        ("metadata", metadata()),
        (
            "reason",
            one_of(&["duplicate", "fraudulent", "requested_by_customer"]),
        ),
        ("refund_application_fee", boolean()),
        ("reverse_transfer", boolean()),
    ];
    fields.extend(strs(&[
        "charge",
        "currency",
        "customer",
        "instructions_email",
        "origin",
        "payment_intent",
    ]));
    fields
}

fn webhook_endpoint_fields(create: bool) -> Fields {
    let mut fields = vec![
        ("url", string()),
        ("enabled_events", strings()),
        ("description", string()),
        ("metadata", metadata()),
    ];
    if create {
        fields.extend([("api_version", string()), ("connect", boolean())]);
    } else {
        fields.push(("disabled", boolean()));
    }
    fields
}

// ---- operations -------------------------------------------------------------------

/// What an operation takes besides its path parameters.
enum Input {
    /// Query parameters (a retrieve takes `expand[]` besides these).
    Query(Fields),
    /// A list: `limit`, `starting_after`, `ending_before`, `created` (when the
    /// list has it) and its filters.
    List { created: bool, filters: Fields },
    /// A search: `query`, `limit`, `page`.
    Search,
    /// A form body with these fields, the `required` ones first.
    Body {
        required: &'static [&'static str],
        fields: Fields,
    },
}

/// What an operation answers with on success.
enum Output {
    Object(&'static str),
    Deleted(&'static str),
    List,
    Search,
}

pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    id: &'static str,
    summary: &'static str,
    input: Input,
    output: Output,
    /// Needs no key (the document itself, the health check).
    public: bool,
}

fn op(
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        id,
        summary,
        input: if method == "post" {
            Input::Body {
                required: &[],
                fields: Vec::new(),
            }
        } else {
            Input::Query(Vec::new())
        },
        output: Output::Object(""),
        public: false,
    }
}

impl Operation {
    fn returns(mut self, object: &'static str) -> Self {
        self.output = Output::Object(object);
        self
    }

    fn deletes(mut self, object: &'static str) -> Self {
        self.output = Output::Deleted(object);
        self
    }

    fn query(mut self, fields: Fields) -> Self {
        self.input = Input::Query(fields);
        self
    }

    fn body(mut self, required: &'static [&'static str], fields: Fields) -> Self {
        self.input = Input::Body { required, fields };
        self
    }

    fn list(mut self, created: bool, filters: Fields) -> Self {
        self.input = Input::List { created, filters };
        self.output = Output::List;
        self
    }

    /// Answers with a list, whatever it takes.
    fn lists(mut self) -> Self {
        self.output = Output::List;
        self
    }

    fn search(mut self) -> Self {
        self.input = Input::Search;
        self.output = Output::Search;
        self
    }
}

/// Every operation the document describes.
pub fn operations() -> Vec<Operation> {
    let cus = "customer";
    let pi = "payment_intent";
    let si = "setup_intent";
    let ct = "confirmation_token";
    let pm = "payment_method";
    let ch = "charge";
    let re = "refund";
    let we = "webhook_endpoint";
    let ev = "event";
    let listener = "payground.listener";
    let mut all = vec![
        op("get", "/healthz", "health", "Liveness check").returns(""),
        op("get", PATH, "openapi", "This document").returns(""),
        // Customers
        op("get", "/v1/customers", "customers.list", "List customers")
            .list(true, strs(&["email", "test_clock"])),
        op(
            "post",
            "/v1/customers",
            "customers.create",
            "Create a customer",
        )
        .body(&[], customer_fields())
        .returns(cus),
        op(
            "get",
            "/v1/customers/search",
            "customers.search",
            "Search customers",
        )
        .search(),
        op(
            "get",
            "/v1/customers/{id}",
            "customers.retrieve",
            "Retrieve a customer",
        )
        .returns(cus),
        op(
            "post",
            "/v1/customers/{id}",
            "customers.update",
            "Update a customer",
        )
        .body(&[], customer_fields())
        .returns(cus),
        op(
            "delete",
            "/v1/customers/{id}",
            "customers.delete",
            "Delete a customer",
        )
        .deletes(cus),
        op(
            "get",
            "/v1/customers/{id}/payment_methods",
            "customers.payment_methods.list",
            "List a customer's PaymentMethods",
        )
        .list(
            false,
            vec![
                ("type", one_of(LISTABLE_TYPES)),
                ("allow_redisplay", allow_redisplay()),
            ],
        ),
        op(
            "get",
            "/v1/customers/{id}/payment_methods/{payment_method}",
            "customers.payment_methods.retrieve",
            "Retrieve a customer's PaymentMethod",
        )
        .returns(pm),
        // PaymentMethods
        op(
            "get",
            "/v1/payment_methods",
            "payment_methods.list",
            "List PaymentMethods",
        )
        .list(
            false,
            vec![("customer", string()), ("type", one_of(LISTABLE_TYPES))],
        ),
        op(
            "post",
            "/v1/payment_methods",
            "payment_methods.create",
            "Create a PaymentMethod (publishable key too)",
        )
        .body(&[], {
            let mut fields = payment_method_data();
            fields.extend(strs(&["customer", "payment_method"]));
            fields
        })
        .returns(pm),
        op(
            "get",
            "/v1/payment_methods/{id}",
            "payment_methods.retrieve",
            "Retrieve a PaymentMethod (or make one from a pm_card_* id)",
        )
        .returns(pm),
        op(
            "post",
            "/v1/payment_methods/{id}",
            "payment_methods.update",
            "Update a PaymentMethod",
        )
        .body(&[], payment_method_update())
        .returns(pm),
        op(
            "post",
            "/v1/payment_methods/{id}/attach",
            "payment_methods.attach",
            "Attach a PaymentMethod to a customer",
        )
        .body(&["customer"], strs(&["customer"]))
        .returns(pm),
        op(
            "post",
            "/v1/payment_methods/{id}/detach",
            "payment_methods.detach",
            "Detach a PaymentMethod",
        )
        .returns(pm),
        // PaymentIntents
        op(
            "get",
            "/v1/payment_intents",
            "payment_intents.list",
            "List PaymentIntents",
        )
        .list(true, strs(&["customer"])),
        op(
            "post",
            "/v1/payment_intents",
            "payment_intents.create",
            "Create a PaymentIntent",
        )
        .body(&["amount", "currency"], payment_intent_create())
        .returns(pi),
        op(
            "get",
            "/v1/payment_intents/search",
            "payment_intents.search",
            "Search PaymentIntents",
        )
        .search(),
        op(
            "get",
            "/v1/payment_intents/{id}",
            "payment_intents.retrieve",
            "Retrieve a PaymentIntent (publishable key with client_secret too)",
        )
        .query(strs(&["client_secret"]))
        .returns(pi),
        op(
            "post",
            "/v1/payment_intents/{id}",
            "payment_intents.update",
            "Update a PaymentIntent",
        )
        .body(&[], payment_intent_update())
        .returns(pi),
        op(
            "post",
            "/v1/payment_intents/{id}/confirm",
            "payment_intents.confirm",
            "Confirm a PaymentIntent (publishable key with client_secret too)",
        )
        .body(&[], {
            let mut fields = confirm_fields();
            fields.push(("client_secret", string()));
            fields
        })
        .returns(pi),
        op(
            "post",
            "/v1/payment_intents/{id}/capture",
            "payment_intents.capture",
            "Capture a PaymentIntent",
        )
        .body(
            &[],
            vec![
                ("amount_to_capture", integer()),
                ("application_fee_amount", integer()),
                ("final_capture", boolean()),
                ("metadata", metadata()),
                ("statement_descriptor", string()),
                ("statement_descriptor_suffix", string()),
                ("transfer_data", hash()),
            ],
        )
        .returns(pi),
        op(
            "post",
            "/v1/payment_intents/{id}/cancel",
            "payment_intents.cancel",
            "Cancel a PaymentIntent",
        )
        .body(
            &[],
            vec![(
                "cancellation_reason",
                one_of(&[
                    "abandoned",
                    "duplicate",
                    "fraudulent",
                    "requested_by_customer",
                ]),
            )],
        )
        .returns(pi),
        op(
            "post",
            "/v1/payment_intents/{id}/increment_authorization",
            "payment_intents.increment_authorization",
            "Increment an authorization",
        )
        .body(
            &["amount"],
            vec![
                ("amount", integer()),
                ("application_fee_amount", integer()),
                ("description", string()),
                ("metadata", metadata()),
                ("statement_descriptor", string()),
                ("transfer_data", hash()),
            ],
        )
        .returns(pi),
        op(
            "post",
            "/v1/test_helpers/payment_intents/{id}/settle",
            "test_helpers.payment_intents.settle",
            "Settle a processing bank debit now (payground)",
        )
        .returns(pi),
        // CustomerSessions, and what the Payment Element asks with them
        op(
            "post",
            "/v1/customer_sessions",
            "customer_sessions.create",
            "Create a CustomerSession",
        )
        .body(&["components", "customer"], customer_session_fields())
        .returns("customer_session"),
        op(
            "get",
            "/v1/elements/sessions",
            "elements.sessions.retrieve",
            "What the Payment Element renders: payment method types, amount, a customer's saved methods (publishable key; payground's answer to stripe.js's call)",
        )
        .query(vec![
            ("type", one_of(&["payment_intent", "setup_intent", "deferred_intent"])),
            ("client_secret", string()),
            ("customer_session_client_secret", string()),
            (
                "deferred_intent",
                object_req(
                    &["mode"],
                    vec![
                        ("mode", one_of(&["payment", "setup", "subscription"])),
                        ("amount", integer()),
                        ("currency", string()),
                        ("setup_future_usage", setup_future_usage()),
                        ("capture_method", capture_method()),
                        ("payment_method_types", strings()),
                        ("on_behalf_of", string()),
                        ("payment_method_configuration", string()),
                    ],
                ),
            ),
            ("locale", string()),
        ]),
        op(
            "post",
            "/v1/elements/payment_methods/{id}/detach",
            "elements.payment_methods.detach",
            "Remove a saved payment method with a CustomerSession that allows it (publishable key)",
        )
        .body(
            &["customer_session_client_secret"],
            strs(&["customer_session_client_secret"]),
        )
        .returns(pm),
        // ConfirmationTokens
        op(
            "post",
            "/v1/confirmation_tokens",
            "confirmation_tokens.create",
            "Create a ConfirmationToken (what stripe.js does, with the publishable key)",
        )
        .body(&[], confirmation_token_fields())
        .returns(ct),
        op(
            "get",
            "/v1/confirmation_tokens/{id}",
            "confirmation_tokens.retrieve",
            "Retrieve a ConfirmationToken",
        )
        .returns(ct),
        op(
            "post",
            "/v1/test_helpers/confirmation_tokens",
            "test_helpers.confirmation_tokens.create",
            "Create a ConfirmationToken for a server test",
        )
        .body(&[], confirmation_token_fields())
        .returns(ct),
        // SetupIntents and their attempts
        op(
            "get",
            "/v1/setup_intents",
            "setup_intents.list",
            "List SetupIntents",
        )
        .list(true, strs(&["customer", "payment_method"])),
        op(
            "post",
            "/v1/setup_intents",
            "setup_intents.create",
            "Create a SetupIntent",
        )
        .body(&[], setup_intent_create())
        .returns(si),
        op(
            "get",
            "/v1/setup_intents/{id}",
            "setup_intents.retrieve",
            "Retrieve a SetupIntent (publishable key with client_secret too)",
        )
        .query(strs(&["client_secret"]))
        .returns(si),
        op(
            "post",
            "/v1/setup_intents/{id}",
            "setup_intents.update",
            "Update a SetupIntent",
        )
        .body(&[], setup_intent_update())
        .returns(si),
        op(
            "post",
            "/v1/setup_intents/{id}/confirm",
            "setup_intents.confirm",
            "Confirm a SetupIntent (publishable key with client_secret too)",
        )
        .body(&[], {
            let mut fields = setup_confirm_fields();
            fields.push(("client_secret", string()));
            fields
        })
        .returns(si),
        op(
            "post",
            "/v1/setup_intents/{id}/cancel",
            "setup_intents.cancel",
            "Cancel a SetupIntent",
        )
        .body(
            &[],
            vec![(
                "cancellation_reason",
                one_of(&["abandoned", "duplicate", "requested_by_customer"]),
            )],
        )
        .returns(si),
        op(
            "post",
            "/v1/test_helpers/setup_intents/{id}/settle",
            "test_helpers.setup_intents.settle",
            "Settle a processing bank-debit setup now (payground)",
        )
        .returns(si),
        op(
            "get",
            "/v1/setup_attempts",
            "setup_attempts.list",
            "List a SetupIntent's attempts",
        )
        .list(true, strs(&["setup_intent"])),
        // Charges and balance transactions
        op("get", "/v1/charges", "charges.list", "List charges").list(
            true,
            strs(&["customer", "payment_intent", "transfer_group"]),
        ),
        op(
            "get",
            "/v1/charges/{id}",
            "charges.retrieve",
            "Retrieve a charge",
        )
        .returns(ch),
        op(
            "post",
            "/v1/charges/{id}",
            "charges.update",
            "Update a charge",
        )
        .body(
            &[],
            vec![
                ("customer", string()),
                ("description", string()),
                ("fraud_details", hash()),
                ("metadata", metadata()),
                ("receipt_email", string()),
                ("shipping", clearable(shipping(&[]))),
                ("transfer_group", string()),
            ],
        )
        .returns(ch),
        op(
            "post",
            "/v1/charges/{id}/capture",
            "charges.capture",
            "Capture a charge",
        )
        .body(&[], {
            let mut fields = vec![("amount", integer()), ("application_fee_amount", integer())];
            fields.extend(strs(&[
                "receipt_email",
                "statement_descriptor",
                "statement_descriptor_suffix",
                "transfer_group",
            ]));
            fields
        })
        .returns(ch),
        op(
            "get",
            "/v1/balance_transactions",
            "balance_transactions.list",
            "List balance transactions",
        )
        .list(true, strs(&["currency", "payout", "source", "type"])),
        op(
            "get",
            "/v1/balance_transactions/{id}",
            "balance_transactions.retrieve",
            "Retrieve a balance transaction",
        )
        .returns("balance_transaction"),
        // Refunds
        op("get", "/v1/refunds", "refunds.list", "List refunds")
            .list(true, strs(&["charge", "payment_intent"])),
        op("post", "/v1/refunds", "refunds.create", "Create a refund")
            .body(&[], refund_create())
            .returns(re),
        op(
            "get",
            "/v1/refunds/{id}",
            "refunds.retrieve",
            "Retrieve a refund",
        )
        .returns(re),
        op(
            "post",
            "/v1/refunds/{id}",
            "refunds.update",
            "Update a refund",
        )
        .body(&[], vec![("metadata", metadata())])
        .returns(re),
        op(
            "post",
            "/v1/refunds/{id}/cancel",
            "refunds.cancel",
            "Cancel a refund",
        )
        .returns(re),
        // Events
        op("get", "/v1/events", "events.list", "List events").list(
            true,
            vec![
                ("type", string()),
                ("types[]", strings()),
                ("delivery_success", boolean()),
            ],
        ),
        op(
            "get",
            "/v1/events/{id}",
            "events.retrieve",
            "Retrieve an event",
        )
        .returns(ev),
        op(
            "post",
            "/v1/events/{id}/resend",
            "events.resend",
            "Deliver an event to a webhook endpoint again",
        )
        .body(&["webhook_endpoint"], strs(&["webhook_endpoint"]))
        .returns(ev),
        op(
            "get",
            "/v1/events/{id}/attempts",
            "events.attempts",
            "An event's delivery attempts (payground)",
        )
        .query(attempt_filters("webhook_endpoint"))
        .lists(),
        // Webhook endpoints
        op(
            "get",
            "/v1/webhook_endpoints",
            "webhook_endpoints.list",
            "List webhook endpoints",
        )
        .list(true, Vec::new()),
        op(
            "post",
            "/v1/webhook_endpoints",
            "webhook_endpoints.create",
            "Create a webhook endpoint",
        )
        .body(&["url", "enabled_events"], webhook_endpoint_fields(true))
        .returns(we),
        op(
            "get",
            "/v1/webhook_endpoints/{id}",
            "webhook_endpoints.retrieve",
            "Retrieve a webhook endpoint",
        )
        .returns(we),
        op(
            "post",
            "/v1/webhook_endpoints/{id}",
            "webhook_endpoints.update",
            "Update a webhook endpoint",
        )
        .body(&[], webhook_endpoint_fields(false))
        .returns(we),
        op(
            "delete",
            "/v1/webhook_endpoints/{id}",
            "webhook_endpoints.delete",
            "Delete a webhook endpoint",
        )
        .deletes(we),
        op(
            "get",
            "/v1/webhook_endpoints/{id}/attempts",
            "webhook_endpoints.attempts",
            "A webhook endpoint's delivery attempts (payground)",
        )
        .query(attempt_filters("event"))
        .lists(),
        // payground listen
        op(
            "post",
            "/v1/payground/listeners",
            "listeners.create",
            "Register a `payground listen` listener",
        )
        .body(
            &["forward_to"],
            vec![("forward_to", string()), ("events", strings())],
        )
        .returns(listener),
        op(
            "delete",
            "/v1/payground/listeners/{id}",
            "listeners.delete",
            "Remove a listener",
        )
        .deletes(listener),
        op(
            "post",
            "/v1/payground/listeners/{id}/poll",
            "listeners.poll",
            "Lease a listener's due deliveries, waiting up to `wait` seconds",
        )
        .body(
            &[],
            vec![
                (
                    "wait",
                    json!({"type": "number", "minimum": 0, "maximum": 30}),
                ),
                ("limit", int_range(1, 100)),
            ],
        )
        .lists(),
        op(
            "post",
            "/v1/payground/listeners/{id}/ack",
            "listeners.ack",
            "Report the outcome of one forwarded delivery",
        )
        .body(
            &["event", "lease"],
            vec![
                ("event", string()),
                ("lease", string()),
                ("status_code", int_range(0, 65535)),
                ("latency_ms", integer()),
                ("error", string()),
                ("response_body", string()),
            ],
        )
        .returns("payground.delivery_report"),
        // The account's clock
        op(
            "get",
            "/v1/test_helpers/clock",
            "test_helpers.clock.retrieve",
            "The account's clock (payground)",
        )
        .returns("payground.clock"),
        op(
            "post",
            "/v1/test_helpers/clock/advance",
            "test_helpers.clock.advance",
            "Move the account's clock forward (payground)",
        )
        .body(
            &["seconds"],
            vec![("seconds", int_range(1, 10 * 365 * 24 * 3600))],
        )
        .returns("payground.clock"),
    ];
    for o in &mut all {
        o.public = !o.path.starts_with("/v1/");
    }
    all
}

/// Attempt lists page by `starting_after` only, and filter by the other side.
fn attempt_filters(other: &'static str) -> Fields {
    vec![
        ("limit", int_range(1, 100)),
        ("starting_after", string()),
        (other, string()),
    ]
}

// ---- the document -----------------------------------------------------------------

fn query_param(name: &str, schema: Value, required: bool) -> Value {
    let mut p = json!({"name": name, "in": "query", "required": required, "schema": schema});
    if schema_type(&p["schema"]) == Some("object") {
        p["style"] = json!("deepObject");
        p["explode"] = json!(true);
    }
    p
}

fn schema_type(schema: &Value) -> Option<&str> {
    schema.get("type").and_then(Value::as_str)
}

fn parameters(o: &Operation) -> Vec<Value> {
    let mut out: Vec<Value> = o
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": string()}))
        .collect();
    let expand = || query_param("expand[]", strings(), false);
    match &o.input {
        Input::Query(fields) => {
            out.extend(fields.iter().map(|(k, v)| query_param(k, v.clone(), false)));
            if !o.public && o.method == "get" {
                out.push(expand());
            }
        }
        Input::List { created, filters } => {
            out.push(query_param("limit", int_range(1, 100), false));
            out.push(query_param("starting_after", string(), false));
            out.push(query_param("ending_before", string(), false));
            if *created {
                let range = object(["gt", "gte", "lt", "lte"].map(|k| (k, integer())).to_vec());
                out.push(query_param(
                    "created",
                    json!({"anyOf": [integer(), range]}),
                    false,
                ));
            }
            out.extend(
                filters
                    .iter()
                    .map(|(k, v)| query_param(k, v.clone(), false)),
            );
            out.push(expand());
        }
        Input::Search => {
            out.push(query_param("query", string(), true));
            out.push(query_param("limit", int_range(1, 100), false));
            out.push(query_param("page", string(), false));
            out.push(expand());
        }
        Input::Body { .. } => {}
    }
    if o.method == "post" {
        out.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "schema": {"type": "string", "maxLength": 255},
        }));
    }
    out
}

fn request_body(o: &Operation) -> Option<Value> {
    let Input::Body { required, fields } = &o.input else {
        return None;
    };
    let mut fields = fields.clone();
    fields.push(("expand", strings()));
    // Nested values travel in Stripe's bracket notation: `card[number]=...`.
    let encoding: Map<String, Value> = fields
        .iter()
        .filter(|(_, v)| {
            !matches!(
                schema_type(v),
                Some("string" | "integer" | "number" | "boolean")
            )
        })
        .map(|(k, _)| {
            (
                k.to_string(),
                json!({"style": "deepObject", "explode": true}),
            )
        })
        .collect();
    let schema = object_req(required, fields);
    Some(json!({
        "required": !required.is_empty(),
        "content": {"application/x-www-form-urlencoded": {"schema": schema, "encoding": encoding}},
    }))
}

fn success(o: &Operation) -> Value {
    let schema = match o.output {
        Output::List => json!({"$ref": "#/components/schemas/list"}),
        Output::Search => json!({"$ref": "#/components/schemas/search_result"}),
        Output::Object("") => json!({"type": "object"}),
        Output::Object(name) => json!({
            "type": "object", "required": ["object"],
            "properties": {"id": string(), "object": one_of(&[name])},
        }),
        Output::Deleted(name) => json!({
            "type": "object", "required": ["id", "object", "deleted"],
            "properties": {"id": string(), "object": one_of(&[name]), "deleted": {"type": "boolean", "enum": [true]}},
        }),
    };
    json!({"description": "Success", "content": {"application/json": {"schema": schema}}})
}

fn operation(o: &Operation) -> Value {
    let mut v = json!({
        "operationId": o.id,
        "summary": o.summary,
        "parameters": parameters(o),
        "responses": {
            "200": success(o),
            "default": {
                "description": "Stripe's error envelope",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/error"}}},
            },
        },
    });
    if let Some(body) = request_body(o) {
        v["requestBody"] = body;
    }
    if o.public {
        v["security"] = json!([]);
    }
    v
}

fn components() -> Value {
    let error = object_req(
        &["type", "message"],
        vec![
            (
                "type",
                one_of(&[
                    "api_error",
                    "card_error",
                    "idempotency_error",
                    "invalid_request_error",
                ]),
            ),
            ("message", string()),
            ("code", string()),
            ("decline_code", string()),
            ("param", string()),
            ("doc_url", string()),
            ("charge", string()),
            ("request_log_url", string()),
            ("payment_intent", hash()),
            ("payment_method", hash()),
            ("setup_intent", hash()),
        ],
    );
    json!({
        "securitySchemes": {
            "secret_key": {
                "type": "http", "scheme": "bearer",
                "description": "The account's secret key, sk_test_... (Basic auth with the key as the user works too).",
            },
        },
        "schemas": {
            "error": {
                "type": "object", "required": ["error"],
                "properties": {"error": error},
            },
            "list": {
                "type": "object", "required": ["object", "data", "has_more", "url"],
                "properties": {
                    "object": one_of(&["list"]),
                    "data": array(hash()),
                    "has_more": boolean(),
                    "url": string(),
                },
            },
            "search_result": {
                "type": "object", "required": ["object", "data", "has_more", "next_page", "url"],
                "properties": {
                    "object": one_of(&["search_result"]),
                    "data": array(hash()),
                    "has_more": boolean(),
                    "next_page": {"type": ["string", "null"]},
                    "url": string(),
                },
            },
        },
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in operations() {
        let item = paths.entry(o.path.to_string()).or_insert_with(|| json!({}));
        item[o.method] = operation(&o);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "payground",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "The routes payground implements of Stripe's API (version {API_VERSION}), and its own. \
                 Bodies are form-encoded in Stripe's bracket notation (JSON bodies are accepted too)."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"secret_key": []}],
        "paths": paths,
        "components": components(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The handler files whose `routes()` the router merges.
    const ROUTE_SOURCES: &[&str] = &[
        include_str!("admin.rs"),
        include_str!("assets.rs"),
        include_str!("authenticate.rs"),
        include_str!("balance_transactions.rs"),
        include_str!("charges.rs"),
        include_str!("confirmation_tokens.rs"),
        include_str!("customer_sessions.rs"),
        include_str!("customers.rs"),
        include_str!("events.rs"),
        include_str!("payment_intents.rs"),
        include_str!("payment_methods.rs"),
        include_str!("refunds.rs"),
        include_str!("setup_intents.rs"),
        include_str!("webhook_endpoints.rs"),
    ];

    /// Routes that are not part of the API: the admin token's, HTML pages and their files.
    const NOT_API: &[&str] = &[
        "/admin/accounts",
        "/payground/assets/{name}",
        "/payground/authenticate/{account}/{id}",
    ];

    /// `(method, path)` of every `.route("...", ...)` call in `source`.
    fn routes_in(source: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut rest = source;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's text, up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap_or(rest.len());
            let call = &rest[..end];
            let path = match call.trim_start().strip_prefix('"') {
                Some(p) => p.split('"').next().unwrap_or_default().to_string(),
                None => panic!("a route whose path is not a literal: {call}"),
            };
            let after_path = call.split_once(',').map(|(_, m)| m).unwrap_or_default();
            for method in ["get", "post", "delete", "put", "patch"] {
                let token = format!("{method}(");
                let hit = after_path.match_indices(&token).any(|(i, _)| {
                    i == 0 || !after_path[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    found.push((method.to_string(), path.clone()));
                }
            }
        }
        found
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = document();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.insert((method.clone(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let routed: BTreeSet<(String, String)> = ROUTE_SOURCES
            .iter()
            .flat_map(|s| routes_in(s))
            .filter(|(_, path)| !NOT_API.contains(&path.as_str()))
            .collect();
        assert!(
            routed.len() > 40,
            "the route scan found too few: {routed:?}"
        );
        let documented = documented();
        let missing: Vec<_> = routed.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the OpenAPI document: {missing:?}"
        );
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            extra.is_empty(),
            "documented operations with no route: {extra:?}"
        );
    }

    #[test]
    fn the_route_sources_are_the_ones_the_router_merges() {
        let router = include_str!("router.rs");
        for module in [
            "admin",
            "assets",
            "authenticate",
            "balance_transactions",
            "charges",
            "confirmation_tokens",
            "customer_sessions",
            "customers",
            "events",
            "payment_intents",
            "payment_methods",
            "refunds",
            "setup_intents",
            "webhook_endpoints",
        ] {
            assert!(router.contains(&format!("{module}::routes()")), "{module}");
        }
        assert_eq!(router.matches("::routes()").count(), ROUTE_SOURCES.len());
        assert_eq!(
            router.matches(".route(").count(),
            0,
            "router.rs routes nothing itself"
        );
    }

    #[test]
    fn the_document_is_json_with_the_expected_shape() {
        let text = document().to_string();
        let doc: Value = serde_json::from_str(&text).expect("valid JSON");
        for key in [
            "openapi",
            "info",
            "servers",
            "security",
            "paths",
            "components",
        ] {
            assert!(doc.get(key).is_some(), "missing {key}");
        }
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        assert!(doc["components"]["securitySchemes"]["secret_key"].is_object());
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, o) in item.as_object().expect("path item") {
                let id = o["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
                assert!(o["responses"]["200"].is_object(), "{method} {path}");
                assert!(o["responses"]["default"].is_object(), "{method} {path}");
                let declared: Vec<&str> = o["parameters"]
                    .as_array()
                    .expect("parameters")
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                let in_path = path.matches('{').count();
                assert_eq!(declared.len(), in_path, "{method} {path}");
                if method == "post" {
                    let body = &o["requestBody"]["content"]["application/x-www-form-urlencoded"];
                    assert_eq!(body["schema"]["type"], "object", "{method} {path}");
                    assert!(body["schema"]["properties"]["expand"].is_object());
                }
            }
        }
        let create = &doc["paths"]["/v1/payment_intents"]["post"]["requestBody"]["content"]
            ["application/x-www-form-urlencoded"];
        assert_eq!(create["schema"]["required"], json!(["amount", "currency"]));
        assert_eq!(
            create["encoding"]["metadata"]["style"], "deepObject",
            "nested values are in bracket notation"
        );
    }
}
