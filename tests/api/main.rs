//! Route tests: the real app built in-process on a fresh store, reached over
//! HTTP as a client reaches it. `harness` starts it; `no_trace` checks that every
//! refused request leaves the database as it was; `wire` and
//! `payment_intent_states` check Stripe's conventions and the PaymentIntent
//! lifecycle through the routes.

mod harness;
mod no_trace;
mod openapi;
mod payment_intent_states;
mod wire;
