//! payground: a self-hosted server that speaks Stripe's API.
pub mod error;
pub mod http;
pub mod ids;
pub mod store;
