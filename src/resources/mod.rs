//! One module per Stripe resource: its object type (whose serde form is Stripe's
//! JSON), its params types, and its operations over a [`crate::ctx::Ctx`].

pub mod balance_transaction;
pub mod charge;
pub mod common;
pub mod confirmation_token;
pub mod currency;
pub mod customer;
pub mod customer_session;
pub mod elements_session;
pub mod event;
pub mod payment_intent;
pub mod payment_method;
pub mod price;
pub mod product;
pub mod refund;
pub mod registry;
pub mod search;
pub mod setup_attempt;
pub mod setup_intent;
pub mod webhook_endpoint;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use common::params::{Field, MetadataParam};

pub type Metadata = BTreeMap<String, String>;

const METADATA_MAX_KEYS: usize = 50;
const METADATA_MAX_KEY_LEN: usize = 40;
const METADATA_MAX_VALUE_LEN: usize = 500;

/// Applies a `metadata` parameter: keys set, keys removed (`metadata[k]=`), or all
/// cleared (`metadata=`), within Stripe's limits.
pub fn apply_metadata(current: &mut Metadata, param: MetadataParam) -> Result<(), ApiError> {
    match param {
        Field::Absent => return Ok(()),
        Field::Clear => current.clear(),
        Field::Set(changes) => {
            for (key, value) in changes {
                if key.chars().count() > METADATA_MAX_KEY_LEN {
                    return Err(ApiError::invalid_request(format!(
                        "Metadata keys can have up to {METADATA_MAX_KEY_LEN} characters; `{key}` has more."
                    ))
                    .with_param(format!("metadata[{key}]")));
                }
                match value {
                    Field::Set(v) => {
                        if v.chars().count() > METADATA_MAX_VALUE_LEN {
                            return Err(ApiError::invalid_request(format!(
                                "Metadata values can have up to {METADATA_MAX_VALUE_LEN} characters, but the value of `{key}` has more."
                            ))
                            .with_param(format!("metadata[{key}]")));
                        }
                        current.insert(key, v);
                    }
                    Field::Clear | Field::Absent => {
                        current.remove(&key);
                    }
                }
            }
        }
    }
    if current.len() > METADATA_MAX_KEYS {
        return Err(ApiError::invalid_request(format!(
            "You can have up to {METADATA_MAX_KEYS} metadata keys; this request would leave {}.",
            current.len()
        ))
        .with_param("metadata"));
    }
    Ok(())
}

/// Metadata of a new object.
pub fn new_metadata(param: MetadataParam) -> Result<Metadata, ApiError> {
    let mut metadata = Metadata::new();
    apply_metadata(&mut metadata, param)?;
    Ok(metadata)
}

/// Stripe's `address` object, also its parameter (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Address {
    pub city: Option<String>,
    pub country: Option<String>,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub postal_code: Option<String>,
    pub state: Option<String>,
}

/// Stripe's `shipping` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Shipping {
    pub address: Address,
    pub carrier: Option<String>,
    pub name: String,
    pub phone: Option<String>,
    pub tracking_number: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingParam {
    pub address: Address,
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
}

impl From<ShippingParam> for Shipping {
    fn from(p: ShippingParam) -> Self {
        Shipping {
            address: p.address,
            carrier: None,
            name: p.name,
            phone: p.phone,
            tracking_number: None,
        }
    }
}

/// A loose check, as Stripe's: something@something.
pub fn validate_email(param: &str, email: &str) -> Result<(), ApiError> {
    let ok = email.len() <= 512
        && email.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty() && !domain.is_empty() && !email.contains(char::is_whitespace)
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            param,
            "email_invalid",
            format!("Invalid email address: {email}"),
        ))
    }
}
