//! payground: a self-hosted server that speaks Stripe's API.
//!
//! Layers, top calls down: `http` (wire conventions) → `resources` (Stripe objects
//! and their operations, over a `ctx::Ctx` unit of work) → `store` (SQLite or
//! PostgreSQL). See `docs/architecture.md`.
pub mod accounts;
pub mod cli;
pub mod clock;
pub mod crypto;
pub mod ctx;
pub mod engine;
pub mod error;
pub mod http;
pub mod ids;
pub mod jobs;
pub mod network;
pub mod resources;
pub mod server;
pub mod store;
