//! The harnesses on their own starting corpus, without the fuzzer: every seed runs clean,
//! and the corpus reaches the deep paths the targets are for.

use udp_midi_fuzz::{decode, receive, seeds, sender};

#[test]
fn decode_seeds_are_valid_datagrams_and_run_clean() {
    let corpus = seeds::decode();
    assert!(corpus.len() >= 20);
    for d in seeds::datagrams() {
        let b = d.as_bytes();
        let (h, _) = udp_midi::proto::wire::decode_header(b).expect("a seed decodes");
        let mut scratch = [0u8; udp_midi::proto::wire::MAX_ACCEPTED_DATAGRAM];
        let k = udp_midi_fuzz::craft::key();
        let body = udp_midi::proto::wire::open_body(&h, b, Some(&k), false, &mut scratch)
            .expect("a seed opens");
        udp_midi::proto::wire::decode_body(&h, body, &mut Vec::new()).expect("a seed decodes");
    }
    for input in &corpus {
        decode::run(input);
    }
}

#[test]
fn receive_seeds_reach_peers_events_replies_and_departures() {
    let mut total = receive::Summary::default();
    for input in seeds::receive() {
        let s = receive::run(&input);
        total.accepted += s.accepted;
        total.events += s.events;
        total.most_peers = total.most_peers.max(s.most_peers);
        total.replies += s.replies;
        total.departures += s.departures;
    }
    assert!(total.accepted > 50, "{total:?}");
    assert!(total.events > 50, "{total:?}");
    assert!(total.most_peers >= 8, "{total:?}");
    assert!(total.replies > 0, "{total:?}");
    assert!(total.departures > 0, "{total:?}");
}

#[test]
fn sender_seeds_reach_answers_events_and_refusals() {
    let mut total = sender::Summary::default();
    for input in seeds::sender() {
        let s = sender::run(&input);
        total.replies += s.replies;
        total.datagrams += s.datagrams;
        total.events += s.events;
        total.refused += s.refused;
    }
    assert!(total.replies > 10, "{total:?}");
    assert!(total.events > 10, "{total:?}");
    assert!(total.refused > 0, "{total:?}");
}
