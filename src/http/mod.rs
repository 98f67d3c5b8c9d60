//! The http layer: Stripe's wire conventions, once, for every resource.

pub mod admin;
pub mod app;
pub mod assets;
pub mod authenticate;
pub mod balance_transactions;
pub mod charges;
pub mod confirmation_tokens;
pub mod cors;
pub mod customer_sessions;
pub mod customers;
pub mod endpoints;
pub mod events;
pub mod expand;
pub mod form;
pub mod openapi;
pub mod payment_intents;
pub mod payment_methods;
pub mod prices;
pub mod products;
pub mod rate_limit;
pub mod refunds;
pub mod router;
pub mod setup_intents;
pub mod webhook_endpoints;
