//! What every resource is made of, below all of them: typed parameters with
//! Stripe's errors ([`params`]), Stripe's list conventions ([`list`]), what
//! PaymentIntents and SetupIntents share ([`intent`]), and the one
//! state-machine mechanism that objects with a `status` move through
//! ([`state_machine`]).
pub mod intent;
pub mod list;
pub mod params;
pub mod state_machine;
