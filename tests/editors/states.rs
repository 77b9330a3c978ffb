//! The editors in the states they exist to show: a busy port, an error from the system, a
//! Receiver that does not answer or refuses, a destination that does not resolve, a field typed
//! wrong, dropped events, a delay on the move, an offline render. Each is drawn, its layout
//! checked (`assert_layout`: nothing cut off, nothing over anything, all inside the window),
//! and rendered to a PNG in the temporary folder the test prints, to be looked at.

use crate::screenshots::{assert_not_blank, assert_shows, Driver};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use udp_midi::bridge::SenderShared;
use udp_midi::editor::{demo, receiver, sender, ReceiverEditor, SenderEditor};
use udp_midi::settings::SenderSettings;
use udp_midi::status::{Commands, LinkState, ListenState, Published, ReceiverStatus, SenderStatus};
use udp_midi::{ReceiverParams, SenderParams};

/// A long message from the system, as `std::io::Error`'s `Display` gives them.
const OS_ERROR: &str = "Address family not supported by protocol (os error 97); the system has no \
                        IPv6 or IPv4 stack that can bind [::]:47800";

/// Draws the Receiver's editor over `status`, with `retype` (the field showing the first text
/// set to the second) done first; returns the picture's texts after checking its layout.
fn receiver_state(name: &str, status: ReceiverStatus, retype: Option<(&str, &str)>) -> Vec<String> {
    let params = Arc::new(ReceiverParams::default());
    params.settings.set(demo::receiver_settings());
    let published = Arc::new(Published::default());
    published.publish(&status);
    let mut editor = ReceiverEditor::new(params, published, Arc::new(Commands::default()));
    let mut d = Driver::new(receiver::SIZE, |ui, setter| editor.draw(ui, setter));
    if let Some((shown, typed)) = retype {
        d.retype(shown, typed);
    }
    let shot = d.shoot(name, false);
    assert_not_blank(&shot.canvas);
    shot.texts
}

/// The same for the Sender's editor, with its settings, status and live counters.
fn sender_state(
    name: &str,
    settings: SenderSettings,
    status: SenderStatus,
    shared: SenderShared,
    retype: Option<(&str, &str)>,
) -> Vec<String> {
    let params = Arc::new(SenderParams::default());
    params.settings.set(settings);
    let published = Arc::new(Published::default());
    published.publish(&status);
    let mut editor = SenderEditor::new(params, published, Arc::new(shared));
    let mut d = Driver::new(sender::SIZE, |ui, setter| editor.draw(ui, setter));
    if let Some((shown, typed)) = retype {
        d.retype(shown, typed);
    }
    let shot = d.shoot(name, false);
    assert_not_blank(&shot.canvas);
    shot.texts
}

/// Another program holds the port, the delay is rising and the host renders offline, with
/// three players and a port typed wrong: each says so on its own line.
#[test]
fn receiver_port_in_use_with_a_bad_port_typed() {
    let mut s = demo::receiver_status();
    s.listen = ListenState::PortInUse(47800);
    s.delay.target_ns = 142_300_000;
    s.offline = true;
    let texts = receiver_state("receiver-port-in-use.png", s, Some(("47800", "478000")));
    assert_shows(
        &texts,
        &[
            "Port 47800 is in use by another program; retrying every second",
            "rising to 142.3 ms",
            "offline render",
            "Port: a port is a number from 1 to 65535 (still using 47800)",
            "Chloé (Montréal)",
        ],
    );
}

/// The system refuses the socket with a long message, and the NTP server typed has a space.
#[test]
fn receiver_error_from_the_system() {
    let mut s = demo::receiver_status();
    s.listen = ListenState::Error(OS_ERROR.into());
    let texts = receiver_state(
        "receiver-error.png",
        s,
        Some(("pool.ntp.org", "pool ntp.org")),
    );
    // A wrapped label is one text of several rows: the whole message is in it.
    assert_shows(&texts, &[&format!("Cannot listen: {OS_ERROR}; retrying")]);
    assert_shows(
        &texts,
        &["NTP server: a space cannot be part of a host name"],
    );
}

/// No answer from the Receiver, events dropped, and a port typed wrong.
#[test]
fn sender_no_reply_with_dropped_events_and_a_bad_port() {
    let mut s = demo::sender_status();
    s.link = LinkState::NoReply;
    s.rtt_ns = None;
    s.events_dropped = 1_204;
    let shared = SenderShared::default();
    shared.events_dropped.store(1_204, Relaxed);
    let texts = sender_state(
        "sender-no-reply.png",
        demo::sender_settings(),
        s,
        shared,
        Some(("47800", "0")),
    );
    assert_shows(
        &texts,
        &[
            "No reply from 203.0.113.7:47800",
            "Is the Receiver running",
            "1\u{2009}204 events (the queue from the audio thread was full)",
            "Port: a port is a number from 1 to 65535 (still using 47800)",
        ],
    );
}

/// The Receiver refuses the room code.
#[test]
fn sender_refused() {
    let mut s = demo::sender_status();
    s.link = LinkState::Refused;
    s.events_dropped = 7;
    let texts = sender_state(
        "sender-refused.png",
        demo::sender_settings(),
        s,
        SenderShared::default(),
        None,
    );
    assert_shows(
        &texts,
        &[
            "Refused: wrong room code",
            "Ask the host for the room code",
            "7 events (too many waited for the Receiver)",
        ],
    );
}

/// A host name that does not resolve, with the resolver's words, and no answer yet.
#[test]
fn sender_no_destination_with_a_long_name() {
    let host = "studio-lisboa-2.example.org";
    let why = format!(
        "cannot resolve {host}: failed to lookup address information: Temporary failure in \
         name resolution"
    );
    let status = SenderStatus {
        link: LinkState::NoDestination(why.clone()),
        ..SenderStatus::default()
    };
    let settings = SenderSettings {
        host: host.into(),
        ..demo::sender_settings()
    };
    let texts = sender_state(
        "sender-no-destination.png",
        settings,
        status,
        SenderShared::default(),
        None,
    );
    assert_shows(&texts, &[&format!("No destination: {why}")]);
    assert_shows(&texts, &[host, "Check the host name"]);
}
