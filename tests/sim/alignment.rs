//! What the alignment promises, checked in the simulated world.

use super::world::{PeerSpec, Played, World, MS, SR};
use udp_midi::proto::event::MidiMessage;
use udp_midi::timing::playout::PlayoutMode;

/// Margin ("Default delay") used in these tests.
const MARGIN: i64 = 5 * (MS as i64);

fn note(on: bool, channel: u8, key: u8) -> MidiMessage {
    if on {
        MidiMessage::NoteOn {
            channel: Some(channel),
            key: Some(key),
            velocity: 0.75,
            voice_id: None,
        }
    } else {
        MidiMessage::NoteOff {
            channel: Some(channel),
            key: Some(key),
            velocity: 0.0,
            voice_id: None,
        }
    }
}

/// The three players of the issue: near, across the country, across the ocean; clocks seconds
/// apart and drifting by up to 100 ppm.
fn three_peers() -> Vec<PeerSpec> {
    vec![
        PeerSpec {
            base: 5 * MS,
            jitter_mean: MS / 2,
            loss: 0.0,
            offset: 2_500_000_000,
            skew_ppm: 80.0,
        },
        PeerSpec {
            base: 40 * MS,
            jitter_mean: 2 * MS,
            loss: 0.0,
            offset: -1_300_000_000,
            skew_ppm: -100.0,
        },
        PeerSpec {
            base: 120 * MS,
            jitter_mean: 4 * MS,
            loss: 0.0,
            offset: 700_000_000,
            skew_ppm: 30.0,
        },
    ]
}

/// Every peer plays the same chord pattern: a note-on every 250 ms from `start`, its note-off
/// 130 ms later, `count` times. Peer `i` plays on channel `i`.
fn score(w: &mut World, peers: usize, start: u64, count: u64) {
    for i in 0..peers {
        for k in 0..count {
            let t = start + k * 250 * MS;
            let key = 36 + (k % 48) as u8;
            w.play(i, t, note(true, i as u8, key));
            w.play(i, t + 130 * MS, note(false, i as u8, key));
        }
    }
}

fn channel_of(p: &Played) -> u8 {
    match p.msg {
        MidiMessage::NoteOn { channel, .. } | MidiMessage::NoteOff { channel, .. } => {
            channel.unwrap()
        }
        _ => 255,
    }
}

fn p99(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[((v.len() as f64 * 0.99).ceil() as usize).min(v.len()) - 1]
}

#[test]
fn three_peers_line_up_to_the_sample() {
    let mut w = World::new(three_peers(), MARGIN, PlayoutMode::Adaptive, 42);
    let start = 10_000 * MS; // after the clock exchange has converged
    let count = 120;
    score(&mut w, 3, start, count);
    w.run_until(start + count * 250 * MS + 2_000 * MS);

    // Nothing lost, nothing doubled.
    let per_peer: Vec<Vec<&Played>> = (0..3)
        .map(|c| w.played.iter().filter(|p| channel_of(p) == c).collect())
        .collect();
    for (i, p) in per_peer.iter().enumerate() {
        assert_eq!(p.len() as u64, 2 * count, "peer {i} events");
    }

    // Same origin, same sample: compare the k-th event of each peer.
    let mut worst_cross = 0i64;
    let mut late = 0;
    for k in 0..(2 * count) as usize {
        let s: Vec<&Played> = per_peer.iter().map(|p| p[k]).collect();
        if s.iter().any(|p| p.late) {
            late += 1;
            continue;
        }
        let lo = s.iter().map(|p| p.sample).min().unwrap() as i64;
        let hi = s.iter().map(|p| p.sample).max().unwrap() as i64;
        worst_cross = worst_cross.max(hi - lo);
    }

    // Spacing within a peer: samples between consecutive events against the true spacing.
    let mut worst_spacing = 0f64;
    for p in &per_peer {
        for k in 1..p.len() {
            if p[k].late || p[k - 1].late {
                continue;
            }
            let true_gap = if k % 2 == 1 { 130.0 } else { 120.0 } * 1e-3 * SR;
            let got = (p[k].sample - p[k - 1].sample) as f64;
            worst_spacing = worst_spacing.max((got - true_gap).abs());
        }
    }

    // D against the slowest peer's measured p99 (true latencies over the last 10 s).
    let final_d = w.delay_history.last().unwrap().1;
    let mut slowest = 0;
    for lat in &w.true_latency {
        let n = lat.len();
        let mut recent = lat[n.saturating_sub(80)..].to_vec();
        slowest = slowest.max(p99(&mut recent));
    }
    let target = slowest as i64 + MARGIN;
    println!(
        "alignment across peers: {worst_cross} samples max; spacing within a peer: \
         {worst_spacing:.2} samples max; late: {late} of {}; D = {:.2} ms, slowest p99 + margin \
         = {:.2} ms, D - slowest p99 = {:.2} ms",
        2 * count,
        final_d as f64 / 1e6,
        target as f64 / 1e6,
        (final_d - slowest as i64) as f64 / 1e6
    );
    assert!(
        worst_cross <= 1,
        "cross-peer alignment error {worst_cross} samples"
    );
    assert!(
        worst_spacing <= 1.0,
        "spacing error {worst_spacing} samples"
    );
    assert!(late <= (2 * count / 50) as usize, "{late} late");
    assert!(
        (final_d - target).abs() < 4 * MS as i64,
        "D {final_d} vs target {target}"
    );
}

#[test]
fn fixed_mode_holds_the_margin() {
    let mut w = World::new(three_peers(), 30 * MS as i64, PlayoutMode::Fixed, 7);
    score(&mut w, 3, 5_000 * MS, 20);
    w.run_until(12_000 * MS);
    assert!(w.delay_history.iter().all(|&(_, d)| d == 30 * MS as i64));
    assert_eq!(w.played.len(), 3 * 40);
}

#[test]
fn delay_rises_fast_falls_slowly_and_forgets_a_leaver() {
    let mut peers = three_peers();
    peers.truncate(2);
    let mut w = World::new(peers, MARGIN, PlayoutMode::Adaptive, 9);
    score(&mut w, 2, 2_000 * MS, 240);
    w.run_until(20_000 * MS);
    let before = w.receiver.playout_delay();
    // Peer 1's route gets 60 ms slower.
    w.set_path(1, 100 * MS, 2 * MS);
    w.run_until(22_000 * MS);
    let risen = w.receiver.playout_delay();
    assert!(
        risen > before + 50 * MS as i64,
        "D rose from {before} to {risen} within 2 s"
    );
    // Events already scheduled were never reordered: each peer's notes come out in order.
    for c in 0..2u8 {
        let samples: Vec<u64> = w
            .played
            .iter()
            .filter(|p| channel_of(p) == c)
            .map(|p| p.sample)
            .collect();
        assert!(samples.windows(2).all(|x| x[0] <= x[1]));
    }
    // Peer 1 leaves: D falls back towards peer 0's level, slowly.
    w.close(1);
    w.run_until(23_000 * MS);
    let just_after = w.receiver.playout_delay();
    assert!(
        just_after > risen - 10 * MS as i64,
        "no sudden drop: {just_after}"
    );
    w.run_until(80_000 * MS);
    let settled = w.receiver.playout_delay();
    assert!(
        settled < 20 * MS as i64,
        "D {settled} back near peer 0's latency"
    );
}

#[test]
fn loss_and_reordering_lose_only_what_the_network_lost() {
    let mut peers = three_peers();
    for p in &mut peers {
        p.loss = 0.05;
        p.jitter_mean = 15 * MS; // exceeds the block spacing: datagrams overtake each other
    }
    let mut w = World::new(peers, MARGIN, PlayoutMode::Adaptive, 11);
    let count = 200;
    score(&mut w, 3, 5_000 * MS, count);
    w.run_until(5_000 * MS + count * 250 * MS + 3_000 * MS);
    let delivered: usize = w.true_latency.iter().map(Vec::len).sum();
    assert_eq!(
        w.played.len(),
        delivered,
        "every delivered event played once"
    );
    assert!(w.lost > 0);
    // Each peer's surviving notes still come out in time order.
    for c in 0..3u8 {
        let samples: Vec<u64> = w
            .played
            .iter()
            .filter(|p| channel_of(p) == c && !p.late)
            .map(|p| p.sample)
            .collect();
        assert!(samples.windows(2).all(|x| x[0] <= x[1]), "peer {c} order");
    }
}
