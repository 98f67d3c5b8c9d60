//! Every resource payground keeps, one line each, with the facts its object type
//! declares once ([`StripeObject`]): the `object` name, the id prefixes, the
//! fields `expand[]` may name, its JSON schema, and the `payground trigger`
//! fixtures that make its events happen. Lookups by id (`kind_of`), expansion,
//! the OpenAPI document and `trigger` read them from here.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::ctx::{has_any_prefix, StripeObject};
use crate::resources::balance_transaction::BalanceTransaction;
use crate::resources::charge::{self, Charge};
use crate::resources::confirmation_token::{ConfirmationToken, TokenUse};
use crate::resources::customer::{self, Customer};
use crate::resources::customer_session::CustomerSession;
use crate::resources::event::Event;
use crate::resources::payment_intent::{self, PaymentIntent};
use crate::resources::payment_method::{PaymentMethod, SetupRecord};
use crate::resources::price::{self, CatalogNote, Price};
use crate::resources::product::{self, Product};
use crate::resources::refund::{self, Refund};
use crate::resources::setup_attempt::SetupAttempt;
use crate::resources::setup_intent::SetupIntent;
use crate::resources::webhook_endpoint::{Listener, WebhookEndpoint};

/// One resource: what its type declares, gathered where every layer above can
/// find it without naming the type.
pub struct Resource {
    /// The `object` value, also the storage kind.
    pub object: &'static str,
    /// Id prefixes without the `_`; the first is what new ids get.
    pub prefixes: &'static [&'static str],
    /// The fields `expand[]` may name on it (dotted for a nested hash's field).
    pub expandable: &'static [&'static str],
    /// What `payground trigger EVENT` runs for the events of this resource.
    pub fixtures: &'static [Fixture],
    /// payground's own bookkeeping (`payground.setup`, `payground.listener`):
    /// looked up by id like the others, but never expanded into a response and
    /// not described as a Stripe object in the OpenAPI document.
    pub internal: bool,
    /// The name of its schema among the document's components.
    pub schema_name: fn() -> Cow<'static, str>,
    /// Adds its JSON schema to the generator's definitions and answers a `$ref`.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

impl Resource {
    pub const fn of<T: StripeObject>() -> Resource {
        Resource {
            object: T::OBJECT,
            prefixes: T::PREFIXES,
            expandable: T::EXPANDABLE,
            fixtures: &[],
            internal: false,
            schema_name: <T as JsonSchema>::schema_name,
            schema: SchemaGenerator::subschema_for::<T>,
        }
    }

    pub const fn fixtures(self, fixtures: &'static [Fixture]) -> Resource {
        Resource { fixtures, ..self }
    }

    pub const fn internal(self) -> Resource {
        Resource {
            internal: true,
            ..self
        }
    }

    /// Whether `id` is `<prefix>_...` for one of its prefixes.
    pub fn names(&self, id: &str) -> bool {
        has_any_prefix(id, self.prefixes)
    }

    /// Whether `path` (relative to the object, `invoice_settings.default_payment_method`)
    /// may be expanded, or walked through towards a field that may.
    pub fn expands(&self, path: &str) -> bool {
        self.expandable.iter().any(|field| {
            *field == path
                || field
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }
}

/// Every resource. A new one adds its line here.
pub const ALL: &[Resource] = &[
    Resource::of::<Customer>().fixtures(customer::FIXTURES),
    Resource::of::<PaymentMethod>(),
    Resource::of::<PaymentIntent>().fixtures(payment_intent::FIXTURES),
    Resource::of::<Charge>().fixtures(charge::FIXTURES),
    Resource::of::<BalanceTransaction>(),
    Resource::of::<Refund>().fixtures(refund::FIXTURES),
    Resource::of::<Event>(),
    Resource::of::<WebhookEndpoint>(),
    Resource::of::<SetupIntent>(),
    Resource::of::<SetupAttempt>(),
    Resource::of::<ConfirmationToken>(),
    Resource::of::<CustomerSession>(),
    Resource::of::<Product>().fixtures(product::FIXTURES),
    Resource::of::<Price>().fixtures(price::FIXTURES),
    Resource::of::<TokenUse>().internal(),
    Resource::of::<SetupRecord>().internal(),
    Resource::of::<Listener>().internal(),
    Resource::of::<CatalogNote>().internal(),
];

/// The resource an id names, by its prefix.
pub fn resource_of_id(id: &str) -> Option<&'static Resource> {
    ALL.iter().find(|r| r.names(id))
}

/// The object type an id names, by its prefix (`cus_...` is a `customer`).
pub fn kind_of(id: &str) -> Option<&'static str> {
    resource_of_id(id).map(|r| r.object)
}

/// The resource whose objects say `"object": object`.
pub fn resource(object: &str) -> Option<&'static Resource> {
    ALL.iter().find(|r| r.object == object)
}

/// Every fixture `payground trigger` knows, resource by resource.
pub fn fixtures() -> impl Iterator<Item = &'static Fixture> {
    ALL.iter().flat_map(|r| r.fixtures.iter())
}

/// The calls that make an event happen, as `stripe trigger`'s fixtures.
pub struct Fixture {
    pub event: &'static str,
    pub steps: &'static [Step],
}

/// One API call of a fixture. `{name}` in the path or a value is the id a
/// previous step saved under that name.
pub struct Step {
    pub method: &'static str,
    pub path: &'static str,
    pub params: &'static [(&'static str, &'static str)],
    pub save_as: Option<&'static str>,
    /// A step that makes a card decline: its 402 is the expected outcome, and the
    /// object saved is the declined PaymentIntent of the error.
    pub declines: bool,
}

impl Step {
    pub const fn post(
        path: &'static str,
        params: &'static [(&'static str, &'static str)],
        save_as: Option<&'static str>,
    ) -> Step {
        Step {
            method: "POST",
            path,
            params,
            save_as,
            declines: false,
        }
    }

    pub const fn delete(path: &'static str) -> Step {
        Step {
            method: "DELETE",
            ..Step::post(path, &[], None)
        }
    }

    /// This step's card is meant to be declined.
    pub const fn declining(self) -> Step {
        Step {
            declines: true,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn prefixes_are_unique_and_resolve_to_their_resource() {
        let mut seen = BTreeSet::new();
        for r in ALL {
            assert!(!r.prefixes.is_empty(), "{} has no prefix", r.object);
            for prefix in r.prefixes {
                assert!(seen.insert(*prefix), "prefix {prefix} is taken twice");
                let id = format!("{prefix}_1234");
                assert_eq!(kind_of(&id), Some(r.object), "{id}");
            }
        }
        // No prefix is the start of another one's, so an id names one resource.
        for a in &seen {
            for b in &seen {
                assert!(
                    a == b || !b.starts_with(&format!("{a}_")),
                    "{a} and {b} overlap"
                );
            }
        }
        assert_eq!(kind_of("ch_1"), Some("charge"));
        assert_eq!(kind_of("py_1"), Some("charge"));
        assert_eq!(kind_of("pgsu_pm_1"), Some("payground.setup"));
        assert_eq!(kind_of("cus"), None);
        assert_eq!(kind_of("customer_1"), None);
        assert_eq!(kind_of("zzz_1"), None);
    }

    #[test]
    fn objects_are_unique_and_internal_kinds_expand_nothing() {
        let objects: BTreeSet<&str> = ALL.iter().map(|r| r.object).collect();
        assert_eq!(objects.len(), ALL.len());
        for r in ALL {
            assert_eq!(resource(r.object).map(|f| f.object), Some(r.object));
            if r.internal {
                assert!(r.expandable.is_empty(), "{}", r.object);
                assert!(r.object.starts_with("payground."), "{}", r.object);
            }
        }
    }

    #[test]
    fn expandable_paths_walk_through_their_hashes() {
        let customer = resource("customer").expect("customer");
        assert!(customer.expands("invoice_settings"));
        assert!(customer.expands("invoice_settings.default_payment_method"));
        assert!(!customer.expands("invoice"));
        assert!(!customer.expands("name"));
    }

    #[test]
    fn fixtures_are_known_event_types_once_each() {
        let mut events = BTreeSet::new();
        for f in fixtures() {
            assert!(
                crate::resources::event::is_known_type(f.event),
                "{} is not an event type",
                f.event
            );
            assert!(events.insert(f.event), "{} twice", f.event);
            assert!(!f.steps.is_empty(), "{}", f.event);
        }
    }
}
