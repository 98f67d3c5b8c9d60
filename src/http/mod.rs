//! The http layer: Stripe's wire conventions, once, for every resource.
pub mod admin;
pub mod app;
pub mod customers;
pub mod expand;
pub mod form;
pub mod list;
pub mod params;
pub mod router;
