//! The editors' text fields: what a typed address, port, room code or name must look like,
//! the words that say what is wrong with it, and the state of a field being edited.
//!
//! A field's text is checked as it is typed, so the error shows at once; it is applied to the
//! settings only when the user is done with it (Enter, or clicking elsewhere) and only when it
//! is valid. An invalid entry leaves the previous value in force, and the field says so.

use crate::proto::room::RoomCode;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Longest display name a Sender sends, bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Longest host name (RFC 1035), bytes.
const MAX_HOST_BYTES: usize = 253;

/// A UDP port: digits, 1 to 65535.
pub fn port(s: &str) -> Result<u16, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("enter a port number, 1 to 65535".into());
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_digit()) {
        return Err(format!(
            "a port is a number like 47800; '{c}' is not a digit"
        ));
    }
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err("a port is a number from 1 to 65535".into()),
    }
}

/// A host: a name, an IPv4 address or an IPv6 address (brackets allowed), without a port.
/// Returns it trimmed, IPv6 without brackets.
pub fn host(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("enter the Receiver's address or host name".into());
    }
    if s.contains("://") || s.contains('/') {
        return Err("just the address, without http:// or a path".into());
    }
    let name_and_port = s.split_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && !p.is_empty() && !p.contains(':') && p.chars().all(|c| c.is_ascii_digit())
    });
    if name_and_port || s.parse::<SocketAddr>().is_ok() {
        return Err("put the port in the Port field, not after the address".into());
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(bare.to_string());
    }
    if bare.contains(':') {
        return Err(format!("'{s}' is not a valid IPv6 address"));
    }
    if bare
        .split('.')
        .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "'{s}' is not a valid IPv4 address (four numbers 0 to 255, like 203.0.113.7)"
        ));
    }
    if bare.len() > MAX_HOST_BYTES {
        return Err(format!(
            "a host name has at most {MAX_HOST_BYTES} characters"
        ));
    }
    if let Some(c) = bare
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        let shown = if c == ' ' {
            "a space".to_string()
        } else {
            format!("'{c}'")
        };
        return Err(format!("{shown} cannot be part of a host name"));
    }
    let name = bare.strip_suffix('.').unwrap_or(bare);
    for label in name.split('.') {
        if label.is_empty() {
            return Err("a host name cannot have two dots in a row".into());
        }
        if label.len() > 63 {
            return Err("each part of a host name has at most 63 characters".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part of a host name cannot start or end with '-'".into());
        }
    }
    Ok(bare.to_string())
}

/// A room code, shown grouped. `allow_empty`: a Sender may leave it empty (it then uses the
/// local Receiver's code, for loopback destinations).
pub fn room(s: &str, allow_empty: bool) -> Result<String, String> {
    if s.trim().is_empty() {
        return if allow_empty {
            Ok(String::new())
        } else {
            Err("the Receiver needs a room code; press New code for one".into())
        };
    }
    RoomCode::parse(s)
        .map(|c| c.to_string())
        .map_err(|e| e.to_string())
}

/// A display name: at most [`MAX_NAME_BYTES`] bytes, no control characters. Trimmed.
pub fn name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.chars().any(char::is_control) {
        return Err("a name cannot contain tabs or line breaks".into());
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(format!(
            "at most {MAX_NAME_BYTES} bytes; this one has {}",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// An NTP server: `host` or `host:port` (`[v6]:port`); empty switches NTP off.
pub fn ntp_server(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return Ok(s.to_string());
    }
    let (h, p) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
        _ => (s, None),
    };
    host(h)?;
    if let Some(p) = p {
        port(p)?;
    }
    Ok(s.to_string())
}

/// A text field bound to one setting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Field {
    /// The text as typed (GUI thread only).
    pub text: String,
    /// What is wrong with `text`, in words, if anything.
    pub error: Option<String>,
    /// The value in force when `text` was last loaded from it.
    loaded: String,
}

/// What became of a field this frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Nothing to apply.
    None,
    /// The user is done and the text is valid: apply this (canonical) value.
    Apply(String),
}

impl Field {
    /// Loads the value in force, unless the user is typing in this field: a project load or
    /// an edit elsewhere shows up here, but never under the user's cursor.
    pub fn sync(&mut self, in_force: &str, focused: bool) {
        if !focused && self.loaded != in_force {
            // Changed from outside (project load): that value wins over a rejected entry.
            self.loaded = in_force.to_string();
            self.text = in_force.to_string();
            self.error = None;
        }
    }

    /// Checks the text after a keystroke: the error shows while typing.
    pub fn edited<T>(&mut self, check: impl Fn(&str) -> Result<T, String>) {
        self.error = check(&self.text).err();
    }

    /// The user left the field: a valid text becomes the value to apply (in canonical form);
    /// an invalid one stays, with its error, and the previous value stays in force.
    pub fn done(&mut self, check: impl Fn(&str) -> Result<String, String>) -> Commit {
        match check(&self.text) {
            Ok(v) => {
                self.error = None;
                self.text = v.clone();
                if v == self.loaded {
                    Commit::None
                } else {
                    self.loaded = v.clone();
                    Commit::Apply(v)
                }
            }
            Err(e) => {
                self.error = Some(e);
                Commit::None
            }
        }
    }

    /// The value in force, as last loaded or applied.
    pub fn in_force(&self) -> &str {
        &self.loaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(port(" 47800 "), Ok(47800));
        assert_eq!(port("65535"), Ok(65535));
        assert!(port("0").unwrap_err().contains("1 to 65535"));
        assert!(port("70000").unwrap_err().contains("1 to 65535"));
        assert!(port("99999999999").unwrap_err().contains("1 to 65535"));
        assert!(port("47 800").unwrap_err().contains("' ' is not a digit"));
        assert!(port("4780O").unwrap_err().contains("'O'"));
        assert!(port("").unwrap_err().contains("enter"));
    }

    #[test]
    fn hosts() {
        assert_eq!(host(" example.org ").as_deref(), Ok("example.org"));
        assert_eq!(host("203.0.113.7").as_deref(), Ok("203.0.113.7"));
        assert_eq!(host("2001:db8::1").as_deref(), Ok("2001:db8::1"));
        assert_eq!(host("[2001:db8::1]").as_deref(), Ok("2001:db8::1"));
        assert_eq!(host("my-studio.local.").as_deref(), Ok("my-studio.local."));
        assert!(host("").unwrap_err().contains("address"));
        assert!(host("203.0.113.7:47800")
            .unwrap_err()
            .contains("Port field"));
        assert!(host("[::1]:47800").unwrap_err().contains("Port field"));
        assert!(host("studio.example.org:47800")
            .unwrap_err()
            .contains("Port field"));
        assert!(host("http://example.org").unwrap_err().contains("http://"));
        assert!(host("192.168.1.300").unwrap_err().contains("IPv4"));
        assert!(host("2001:db8::g").unwrap_err().contains("IPv6"));
        assert!(host("my studio").unwrap_err().contains("a space"));
        assert!(host("bad_name.org").unwrap_err().contains("'_'"));
        assert!(host("a..b").unwrap_err().contains("two dots"));
        assert!(host("-a.org").unwrap_err().contains("'-'"));
        assert!(host(&"a".repeat(64)).unwrap_err().contains("63"));
        let long = vec!["abc"; 70].join(".");
        assert!(host(&long).unwrap_err().contains("253"));
    }

    #[test]
    fn room_codes() {
        let code = RoomCode::random().to_string();
        assert_eq!(
            room(&code.to_lowercase().replace('-', " "), false),
            Ok(code)
        );
        assert_eq!(room("", true), Ok(String::new()));
        assert!(room(" ", false).unwrap_err().contains("New code"));
        assert!(room("ABCD", true).unwrap_err().contains("16"));
        assert!(room("ABCD-EFGH-JKMN-PQRU", true)
            .unwrap_err()
            .contains("'U'"));
    }

    #[test]
    fn names_and_ntp_servers() {
        assert_eq!(name(" Ana ").as_deref(), Ok("Ana"));
        assert!(name(&"é".repeat(33)).unwrap_err().contains("66"));
        assert!(name("a\tb").unwrap_err().contains("tabs"));
        assert_eq!(ntp_server("").as_deref(), Ok(""));
        assert_eq!(ntp_server("pool.ntp.org").as_deref(), Ok("pool.ntp.org"));
        assert_eq!(
            ntp_server("time.local:123").as_deref(),
            Ok("time.local:123")
        );
        assert_eq!(ntp_server("[::1]:123").as_deref(), Ok("[::1]:123"));
        assert_eq!(ntp_server("::1").as_deref(), Ok("::1"));
        assert!(ntp_server("time.local:0")
            .unwrap_err()
            .contains("1 to 65535"));
        assert!(ntp_server("time local").is_err());
    }

    #[test]
    fn a_field_applies_only_valid_text_when_done() {
        let mut f = Field::default();
        f.sync("47800", false);
        assert_eq!(f.text, "47800");

        // Typing: the error shows at once, nothing is applied.
        f.text = "4780x".into();
        f.edited(port);
        assert!(f.error.as_deref().unwrap().contains("'x'"));
        let check = |s: &str| port(s).map(|p| p.to_string());
        assert_eq!(f.done(check), Commit::None);
        assert_eq!(f.in_force(), "47800", "the old value stays in force");
        // The invalid text stays visible with its error, even out of focus.
        f.sync("47800", false);
        assert_eq!(f.text, "4780x");
        assert!(f.error.is_some());

        // Fixed: applied once, in canonical form.
        f.text = " 47801".into();
        f.edited(port);
        assert_eq!(f.error, None);
        assert_eq!(f.done(check), Commit::Apply("47801".into()));
        assert_eq!(f.text, "47801");
        assert_eq!(f.done(check), Commit::None, "nothing new to apply");
    }

    #[test]
    fn a_field_follows_outside_changes_but_not_under_the_cursor() {
        let mut f = Field::default();
        f.sync("a.org", false);
        f.text = "b.o".into();
        f.sync("c.org", true);
        assert_eq!(f.text, "b.o", "never replaced while the user types");
        f.sync("c.org", false);
        assert_eq!(f.text, "c.org", "a project load shows up");
        assert_eq!(f.in_force(), "c.org");
    }
}
