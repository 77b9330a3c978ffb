//! The network shells with real sockets and a real NTP server, below the plugin wrappers:
//! NTP through chrony on loopback, the direct clock exchange between a Sender's and a
//! Receiver's network threads, the Receiver's defences against forged, damaged, replayed
//! and wrong-key datagrams, and a Receiver on a port another program holds.

#[path = "shell/busy_port.rs"]
mod busy_port;
#[path = "shell/chrony.rs"]
mod chrony;
#[path = "shell/exchange.rs"]
mod exchange;
// The hosted tests' impairment relay, used here only to capture a Sender's datagrams: what
// those tests use of it and these do not is not dead code.
#[allow(dead_code)]
#[path = "hosted/relay.rs"]
mod relay;
#[path = "shell/security.rs"]
mod security;
