//! The alignment pipeline in a simulated world (virtual time, no sockets, no sleeps): Senders
//! with offset and skewed clocks behind paths of different delay, jitter and loss, the clock
//! exchange, the Receiver's latency statistics and common playout delay, and its host's
//! `process()` blocks of varying size. See `sim/world.rs` for the model.

#[path = "sim/alignment.rs"]
mod alignment;
#[path = "sim/recovery.rs"]
mod recovery;
#[path = "sim/world.rs"]
mod world;
