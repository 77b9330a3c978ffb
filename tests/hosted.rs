//! Hosted tests: the plugin library that `cargo test` builds, loaded into real hosts in this
//! process (`clack-host` for CLAP, `vst3-host` for VST3), with Senders and Receivers talking
//! over loopback UDP and `process()` driven at real-time pace.
//!
//! - `clap_harness`: the host (load by CLAP id with a saved state, activate, process blocks of
//!   MIDI in and out), real-time pacing, free ports, thread counts.
//! - `loopback`: end to end, Sender to Receiver: every kind of event, order, spacing and
//!   latency; MIDI thru; two Senders; a Receiver whose port is taken.
//! - `lifecycle`: many instances, reactivation, double activation; no leaked thread or port.
//! - `relay`: a seeded UDP impairment relay (delay, jitter, loss, bursts, duplication,
//!   reordering, a cut), one per Sender, measuring the delays it applies.
//! - `session`: a Receiver in a room and Senders behind relays, in one paced loop.
//! - `alignment`: three players over 5, 40 and 120 ms paths line up to the slowest one.
//! - `repair`: loss, duplication, reordering and bursts, a Sender that stops and one that
//!   vanishes: no note is left sounding.
//! - `vst3`: the VST3 build in a `.vst3` bundle made on the fly, hosted by `vst3-host`: both
//!   classes and their parameters, MIDI through each plugin, Sender to Receiver over loopback.
//!
//! Run with `cargo test --test hosted -j2 -- --nocapture` to see the measured spacing errors
//! and latencies.

// A crate root's `mod` resolves next to the root file (`tests/x.rs`), so the submodules in
// `tests/hosted/` are named by path.
#[path = "hosted/alignment.rs"]
mod alignment;
#[path = "hosted/clap_harness.rs"]
mod clap_harness;
#[path = "hosted/lifecycle.rs"]
mod lifecycle;
#[path = "hosted/loopback.rs"]
mod loopback;
#[path = "hosted/relay.rs"]
mod relay;
#[path = "hosted/repair.rs"]
mod repair;
#[path = "hosted/session.rs"]
mod session;
#[path = "hosted/vst3.rs"]
mod vst3;
