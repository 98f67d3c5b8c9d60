//! Stripe's objects with a `status` (PaymentIntents, and SetupIntents, Checkout
//! Sessions, Subscriptions and Invoices as they come) move through a state
//! machine. Each one is a table of [`Transition`] rows, (from, action, to,
//! event), read by one mechanism:
//!
//! - [`check`]: may this action start from the object's status? Operations ask
//!   before they do any work, and the refusal's message is made from the table
//!   ("Only a PaymentIntent with one of the following statuses may be
//!   confirmed: ...").
//! - [`transition`]: the move the operation decided on: checked against the
//!   table, the status set, the object saved and the row's event emitted.
//! - [`created`]: a new object's first status and its `*.created` event.
//!
//! A status change made any other way is a bug the table test of each
//! resource would not see, so statuses are private to this mechanism in
//! spirit: set them only through [`transition`] and [`created`].

use std::fmt::Debug;

use crate::ctx::{Ctx, Saved, StripeObject};
use crate::error::ApiError;

/// A status: Stripe's word for it on the wire.
pub trait Status: Copy + Eq + Debug + 'static {
    fn as_str(self) -> &'static str;
}

/// An action a request (or a job) asks of an object.
pub trait Action: Copy + Eq + Debug + 'static {
    /// As in "You cannot *confirm* this PaymentIntent".
    fn verb(self) -> &'static str;
    /// As in "may be *confirmed*", for the actions whose refusal Stripe explains
    /// with the statuses that allow them.
    fn past(self) -> Option<&'static str> {
        None
    }
}

/// One row of a state machine: from any of `from`, `action` may lead to `to`,
/// announced by `event`. Rows with an empty `from` are creation.
#[derive(Debug)]
pub struct Transition<S: 'static, A: 'static> {
    pub from: &'static [S],
    pub action: A,
    pub to: S,
    pub event: Option<&'static str>,
}

/// An object that moves through a table of [`Transition`]s.
pub trait Machine: StripeObject {
    type Status: Status;
    type Action: Action;
    /// Stripe's name for the object in messages: "PaymentIntent".
    const NOUN: &'static str;
    /// The code of a refusal: `payment_intent_unexpected_state`.
    const UNEXPECTED_STATE: &'static str;
    const TRANSITIONS: &'static [Transition<Self::Status, Self::Action>];

    fn status(&self) -> Self::Status;
    fn set_status(&mut self, status: Self::Status);

    /// Puts the object where Stripe's error carries it (`error.payment_intent`).
    fn attach_to(&self, error: &mut ApiError);
}

/// The statuses `action` may start from, in the table's order.
pub fn statuses_allowing<M: Machine>(action: M::Action) -> Vec<M::Status> {
    let mut out: Vec<M::Status> = Vec::new();
    for row in M::TRANSITIONS.iter().filter(|t| t.action == action) {
        for s in row.from {
            if !out.contains(s) {
                out.push(*s);
            }
        }
    }
    out
}

/// Whether `action` may start from the object's status; Stripe's refusal if not.
pub fn check<M: Machine>(object: &M, action: M::Action) -> Result<(), ApiError> {
    let status = object.status();
    let allowed = M::TRANSITIONS
        .iter()
        .any(|t| t.action == action && t.from.contains(&status));
    if allowed {
        Ok(())
    } else {
        Err(refusal(object, action))
    }
}

/// Stripe's error for an action the object's status does not admit.
pub fn refusal<M: Machine>(object: &M, action: M::Action) -> ApiError {
    let mut message = format!(
        "You cannot {} this {} because it has a status of {}.",
        action.verb(),
        M::NOUN,
        object.status().as_str()
    );
    if let Some(past) = action.past() {
        let allowed: Vec<&str> = statuses_allowing::<M>(action)
            .into_iter()
            .map(Status::as_str)
            .collect();
        message.push_str(&format!(
            " Only a {} with one of the following statuses may be {past}: {}.",
            M::NOUN,
            allowed.join(", ")
        ));
    }
    let mut error = ApiError::invalid_request(message).with_code(M::UNEXPECTED_STATE);
    object.attach_to(&mut error);
    error
}

/// Moves the object by `action` to `to`: checks the move against the table, sets
/// the status, saves the object and emits the row's event.
pub fn transition<M: Machine>(
    ctx: &mut Ctx,
    object: &mut M,
    action: M::Action,
    to: M::Status,
) -> Result<Saved, ApiError> {
    let from = object.status();
    let Some(row) = M::TRANSITIONS
        .iter()
        .find(|t| t.action == action && t.to == to && t.from.contains(&from))
    else {
        // The operation chose a move its table does not have: a bug, said as
        // the refusal a client can act on rather than a 500.
        tracing::error!(
            ?from,
            ?action,
            ?to,
            object = M::NOUN,
            "transition not in the table"
        );
        return Err(refusal(object, action));
    };
    object.set_status(to);
    let saved = ctx.save(object)?;
    if let Some(event) = row.event {
        ctx.emit(event, &saved, None);
    }
    Ok(saved)
}

/// Saves a new object in its first status and emits its creation event.
pub fn created<M: Machine>(ctx: &mut Ctx, object: &M) -> Result<Saved, ApiError> {
    let status = object.status();
    let row = M::TRANSITIONS
        .iter()
        .find(|t| t.from.is_empty() && t.to == status);
    let saved = ctx.save(object)?;
    match row {
        Some(row) => {
            if let Some(event) = row.event {
                ctx.emit(event, &saved, None);
            }
            Ok(saved)
        }
        None => Err(ApiError::internal(
            "an object was created in a status its table does not start in",
            format!("{} {:?}", M::NOUN, status),
        )),
    }
}

/// Checks a table against itself, for each resource's table test: every row's
/// event is one payground knows, every status but the first is reached by some
/// row, and `terminal` statuses start nothing.
#[cfg(test)]
pub fn check_table<M: Machine>(all: &[M::Status], terminal: &[M::Status]) {
    let creation: Vec<_> = M::TRANSITIONS
        .iter()
        .filter(|t| t.from.is_empty())
        .collect();
    assert!(!creation.is_empty(), "{}: no creation row", M::NOUN);
    for row in M::TRANSITIONS {
        if let Some(event) = row.event {
            assert!(
                crate::resources::event::is_known_type(event),
                "{}: {event} is not a known event type",
                M::NOUN
            );
        }
        for s in row.from {
            assert!(
                !terminal.contains(s),
                "{}: {:?} is terminal but starts {:?}",
                M::NOUN,
                s,
                row.action
            );
        }
    }
    for s in all {
        let reached = M::TRANSITIONS.iter().any(|t| t.to == *s);
        assert!(reached, "{}: nothing reaches {:?}", M::NOUN, s);
    }
}
