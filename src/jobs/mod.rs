//! Background work: nothing here holds state in memory that a restart would lose.
pub mod settlement;
pub mod webhooks;
