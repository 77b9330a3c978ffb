//! Clock and latency estimators: small, pure and driven by the caller's clock (time is always
//! an argument), so the tests run them in virtual time.
//!
//! - [`host_clock`]: maps the host's sample counter to session time (a delay-locked loop).
//! - [`clock_filter`]: the direct clock exchange between a Sender and its Receiver (offset,
//!   skew and error bound from NTP-style four-timestamp samples).
//! - [`latency`]: per-peer one-way latency percentiles over a sliding window.
//! - [`jitter`]: RFC 3550 interarrival jitter.
//! - [`playout`]: the common playout delay `D` and the rule that lowers it without squeezing
//!   what is already scheduled.
//! - [`windowed`]: minimum and maximum over a sliding window in constant space.

pub mod clock_filter;
pub mod host_clock;
pub mod jitter;
pub mod latency;
pub mod playout;
pub mod windowed;
