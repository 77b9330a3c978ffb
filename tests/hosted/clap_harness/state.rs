//! The plugins' saved state, as the hosted tests hand it to them: nice-plug's JSON, loaded
//! through the CLAP state extension ([`super::ClapPlugin::load_state`]).

/// nice-plug's saved state: `{"version", "params": {id: {"bool"|"f32"|"i32"|"string": v}},
/// "fields": {key: "<JSON text>"}}`. Both maps are required; parameters left out keep their
/// defaults. (nice-plug's `wrapper/state.rs`; `fields` values are JSON documents stored as
/// strings.)
pub fn plugin_state(params: serde_json::Value, fields: &[(&str, serde_json::Value)]) -> String {
    let fields: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::json!({ "version": "0.1.0", "params": params, "fields": fields }).to_string()
}

/// A Sender's state: send to `host:port`, MIDI thru on or off (`None`: default), NTP off (the
/// tests must not depend on the internet; unknown keys would be ignored by older builds).
pub fn sender_state(host: &str, port: u16, name: &str, thru: Option<bool>) -> String {
    let params = match thru {
        Some(t) => serde_json::json!({ "thru": { "bool": t } }),
        None => serde_json::json!({}),
    };
    plugin_state(
        params,
        &[(
            "sender",
            serde_json::json!({ "host": host, "port": port, "name": name, "ntp_server": "" }),
        )],
    )
}

/// A Receiver's state: listen on `port`, NTP off, "Default delay" `delay_ms` (`None`: default),
/// other parameters at their defaults.
pub fn receiver_state(port: u16, delay_ms: Option<f32>) -> String {
    let params = match delay_ms {
        Some(d) => serde_json::json!({ "delay": { "f32": d } }),
        None => serde_json::json!({}),
    };
    plugin_state(
        params,
        &[(
            "receiver",
            serde_json::json!({ "port": port, "ntp_server": "" }),
        )],
    )
}

/// The room code of the tests' Receivers in a room (any valid code would do; this one is
/// fixed so that failures are reproducible).
pub const ROOM: &str = "7QF2-M9KD-XW3C-T0ZB";

/// A Sender's state with its room code given explicitly, as a Sender behind a relay needs it:
/// the local room file is only read for a loopback destination's own port, and a relay's port
/// is not the Receiver's. NTP off.
pub fn sender_state_in_room(host: &str, port: u16, name: &str, room: &str) -> String {
    plugin_state(
        serde_json::json!({}),
        &[(
            "sender",
            serde_json::json!({
                "host": host, "port": port, "name": name, "ntp_server": "", "room": room
            }),
        )],
    )
}

/// A Receiver's state in room `room` on `port`, NTP off, with these parameters (nice-plug's
/// form, e.g. `{"delay": {"f32": 10.0}, "timeout": {"f32": 1.0}}`; the others at defaults).
pub fn receiver_state_in_room(port: u16, room: &str, params: serde_json::Value) -> String {
    plugin_state(
        params,
        &[(
            "receiver",
            serde_json::json!({ "port": port, "ntp_server": "", "room": room, "open_room": false }),
        )],
    )
}
