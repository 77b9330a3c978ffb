//! Settings saved with the project (`#[persist]` fields): where a Sender sends, which port a
//! Receiver listens on. They are not parameters because automating an address makes no sense.
//!
//! The plugin's params struct holds them in an `Arc<RwLock<_>>`; the network thread reads a
//! copy when it starts and whenever [`Settings::generation`] tells it something changed. The
//! audio thread never touches them.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// The UDP port a Receiver listens on and a Sender sends to unless told otherwise.
pub const DEFAULT_PORT: u16 = 47800;

/// Where a Sender sends, and the name it shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SenderSettings {
    /// Receiver's host name, IPv4 or IPv6 address.
    pub host: String,
    /// Receiver's UDP port.
    pub port: u16,
    /// Name shown to the Receiver (at most 64 bytes are sent).
    pub name: String,
    /// NTP server (`host` or `host:port`); empty switches NTP off.
    pub ntp_server: String,
    /// The Receiver's room code, as typed. Empty: use the code of a Receiver on this machine
    /// when the destination is a loopback address (see `docs/protocol.md`, "Rooms").
    pub room: String,
    /// Batches of events each datagram repeats (0 to 8): more survives more loss, at the cost
    /// of bandwidth.
    pub redundancy: u8,
}

impl Default for SenderSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            name: String::new(),
            ntp_server: crate::net::ntp::DEFAULT_SERVER.into(),
            room: String::new(),
            redundancy: crate::proto::sender::DEFAULT_REDUNDANCY as u8,
        }
    }
}

/// Which port a Receiver listens on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReceiverSettings {
    /// UDP port, on IPv4 and IPv6.
    pub port: u16,
    /// NTP server (`host` or `host:port`); empty switches NTP off.
    pub ntp_server: String,
    /// Room code Senders must know, grouped for reading. A new Receiver draws a random one,
    /// which is then saved with the project.
    pub room: String,
    /// Accept any Sender, unauthenticated and unencrypted: an explicit choice, flagged in the
    /// editor.
    pub open_room: bool,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT,
            ntp_server: crate::net::ntp::DEFAULT_SERVER.into(),
            room: crate::proto::room::RoomCode::random().to_string(),
            open_room: false,
        }
    }
}

/// A setting shared between the host's main thread (state load, later the editor) and the
/// network thread, with a change counter so the network thread can notice cheaply.
#[derive(Debug, Default)]
pub struct Settings<T> {
    /// The value.
    value: RwLock<T>,
    /// Bumped on every [`Settings::set`].
    generation: AtomicU64,
}

impl<T: Clone> Settings<T> {
    /// A copy of the current value.
    pub fn get(&self) -> T {
        match self.value.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the value.
    pub fn set(&self, v: T) {
        match self.value.write() {
            Ok(mut g) => *g = v,
            Err(poisoned) => *poisoned.into_inner() = v,
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes whenever the value does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl<T> Settings<T> {
    /// Applies `f` to the current value without copying it.
    pub fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&T) -> R,
    {
        match self.value.read() {
            Ok(v) => f(&v),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}

/// Lets nice-plug save and load a `#[persist]` field of type `Arc<Settings<T>>`. (The orphan
/// rule allows this per concrete `T` only.)
macro_rules! persistent_settings {
    ($t:ty) => {
        impl nice_plug::params::persist::PersistentField<'_, $t> for std::sync::Arc<Settings<$t>> {
            fn set(&self, new_value: $t) {
                Settings::set(self, new_value);
            }

            fn map<F, R>(&self, f: F) -> R
            where
                F: Fn(&$t) -> R,
            {
                Settings::map(self, f)
            }
        }
    };
}

persistent_settings!(SenderSettings);
persistent_settings!(ReceiverSettings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_or_partial_state_falls_back_to_defaults() {
        let s: SenderSettings = serde_json::from_str(r#"{"host":"example.org"}"#).unwrap();
        assert_eq!(s.port, DEFAULT_PORT);
        assert_eq!(s.host, "example.org");
        let r: ReceiverSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(r.port, DEFAULT_PORT);
    }

    #[test]
    fn generation_changes_on_set() {
        let s = Settings::<ReceiverSettings>::default();
        let g = s.generation();
        s.set(ReceiverSettings {
            port: 9,
            ..Default::default()
        });
        assert_ne!(s.generation(), g);
        assert_eq!(s.get().port, 9);
    }
}
