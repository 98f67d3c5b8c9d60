//! Background work: nothing here holds state in memory that a restart would lose.
//! `scheduler` runs the work due at a time (settlement, through `settlement`'s
//! handler); `webhooks` delivers events.
pub mod scheduler;
pub mod settlement;
pub mod webhooks;
