//! The network shells with real sockets and a real NTP server, below the plugin wrappers:
//! NTP through chrony on loopback, and the direct clock exchange between a Sender's and a
//! Receiver's network threads.

#[path = "shell/chrony.rs"]
mod chrony;
#[path = "shell/exchange.rs"]
mod exchange;
