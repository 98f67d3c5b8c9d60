//! Property tests: no request body can make the form decoder or any operation's
//! params type panic, and every refusal is a 4xx naming something.

use proptest::prelude::*;
use serde_json::Value;

use payground::http::form;
use payground::resources::common::params;
use payground::resources::{customer, payment_intent, payment_method, refund};

fn key() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
        "amount",
        "currency",
        "confirm",
        "customer",
        "metadata",
        "payment_method",
        "payment_method_data",
        "card",
        "number",
        "exp_month",
        "type",
        "shipping",
        "address",
        "expand",
        "off_session",
        "limit",
        "x",
    ]);
    let suffix = prop::collection::vec(
        prop_oneof![
            Just("[]".to_string()),
            "[0-9]{1,2}".prop_map(|d| format!("[{d}]")),
            prop::sample::select(vec![
                "[card]",
                "[number]",
                "[k]",
                "[address]",
                "[line1]",
                "[type]",
                "[",
                "]"
            ])
            .prop_map(str::to_string),
        ],
        0..5,
    );
    (names, suffix).prop_map(|(n, s)| format!("{n}{}", s.concat()))
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "-?[0-9]{1,25}",
        prop::sample::select(vec![
            "true",
            "false",
            "True",
            "null",
            "NaN",
            "1e309",
            "pm_card_visa",
            "usd",
            "card"
        ])
        .prop_map(str::to_string),
        ".{0,40}",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec((key(), value()), 0..12).prop_map(|pairs| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
                .into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn check<T: serde::de::DeserializeOwned>(tree: &Value) {
    if let Err(e) = params::from_value::<T>(tree) {
        assert!((400..500).contains(&e.status), "{e}");
        assert!(!e.message.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_body_panics_the_decoder_or_any_params_type(raw in body()) {
        match form::decode(&raw) {
            Err(e) => prop_assert!((400..500).contains(&e.status)),
            Ok(tree) => {
                check::<customer::CustomerParams>(&tree);
                check::<payment_intent::CreateParams>(&tree);
                check::<payment_intent::ConfirmParams>(&tree);
                check::<payment_intent::UpdateParams>(&tree);
                check::<payment_intent::CaptureParams>(&tree);
                check::<payment_method::PaymentMethodData>(&tree);
                check::<payment_method::UpdateParams>(&tree);
                check::<refund::CreateParams>(&tree);
            }
        }
    }
}
