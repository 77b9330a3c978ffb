//! What the plugins do on the audio thread, between `process()` and the bridge queues.
//!
//! Everything here runs inside `process()`: no allocation, no lock, no logging, no blocking
//! system call. State is created in `initialize()` (`activate`) with fixed capacity.

pub mod receiver;
pub mod sender;
pub mod voices;
