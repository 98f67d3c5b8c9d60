//! The suite every Store implementation must pass (being written).
