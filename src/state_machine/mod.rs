//! The built-in key-value state machine.
