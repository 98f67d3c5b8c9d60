//! Background work: nothing here holds state in memory that a restart would lose.
pub mod delivery;
pub mod settlement;
