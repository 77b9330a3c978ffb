//! The protocol core: plain Rust with no sockets, no threads and no clock reads.
//!
//! Time is always an argument (`now`, nanoseconds on the caller's timeline) and every output is
//! a returned value, in the style of `quinn-proto`: the network thread drives
//! [`sender::SenderCore`] and [`receiver::ReceiverCore`] with `handle_datagram` /
//! `handle_timeout` and drains them with `poll_transmit` / `poll_event` / `poll_timeout`. That is
//! what lets the tests run whole networks in simulated time.

pub mod event;
pub mod limit;
pub mod peers;
pub mod receiver;
pub mod reject;
pub mod replay;
pub mod room;
pub mod schedule;
pub mod seal;
pub mod seen;
pub mod sender;
pub mod state;
pub mod wire;
