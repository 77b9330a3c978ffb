//! What the alignment promises, checked in the simulated world.

use super::world::{PeerSpec, Played, World, MS, SR};
use udp_midi::proto::event::MidiMessage;
use udp_midi::timing::playout::PlayoutMode;

/// Margin ("Default delay") used in these tests.
const MARGIN: i64 = 5 * (MS as i64);
/// When the tests start playing: the clock exchange has had half a minute (see
/// `docs/alignment.md`, "Convergence").
const SETTLED: u64 = 30_000 * MS;

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
pub fn three_peers() -> Vec<PeerSpec> {
    vec![
        PeerSpec {
            base: 5 * MS,
            jitter_mean: MS / 2,
            offset: 2_500_000_000,
            skew_ppm: 80.0,
            ..PeerSpec::default()
        },
        PeerSpec {
            base: 40 * MS,
            jitter_mean: 2 * MS,
            offset: -1_300_000_000,
            skew_ppm: -100.0,
            ..PeerSpec::default()
        },
        PeerSpec {
            base: 120 * MS,
            jitter_mean: 4 * MS,
            offset: 700_000_000,
            skew_ppm: 30.0,
            ..PeerSpec::default()
        },
    ]
}

/// Every peer plays the same pattern: a note-on every 250 ms from `start`, its note-off
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
            channel.unwrap_or(255)
        }
        _ => 255,
    }
}

fn p99(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[((v.len() as f64 * 0.99).ceil() as usize).min(v.len()) - 1]
}

/// The slowest peer's p99 of true latency over the last 10 s of its events.
fn slowest_true_p99(w: &World, events_per_10s: usize) -> u64 {
    w.true_latency
        .iter()
        .filter(|l| !l.is_empty())
        .map(|lat| {
            let mut recent = lat[lat.len().saturating_sub(events_per_10s)..].to_vec();
            p99(&mut recent)
        })
        .max()
        .unwrap_or(0)
}

/// What one alignment run measured.
struct Alignment {
    /// Largest sample difference between same-origin events of different peers (played with
    /// one delay, none late).
    cross: i64,
    /// Largest spacing error within a peer, samples (consecutive events, one delay).
    spacing: f64,
    /// Consecutive events between which the delay changed, and all pairs.
    changed: usize,
    pairs: usize,
    /// Rows of same-origin events with a late one, of all rows.
    late: usize,
    rows: usize,
    /// D at the end, and D minus (slowest true p99 + block + margin), ns.
    d: i64,
    d_excess: i64,
    /// Largest placement error per peer (the clock exchange's), ns.
    placement: Vec<i64>,
}

/// Three peers play the same score for a minute, from `SETTLED`.
fn align(specs: Vec<PeerSpec>, seed: u64) -> Alignment {
    let mut w = World::new(specs, MARGIN, PlayoutMode::Adaptive, seed);
    let count = 240;
    score(&mut w, 3, SETTLED, count);
    w.run_until(SETTLED + count * 250 * MS + 2_000 * MS);

    // Nothing lost, nothing doubled, nothing added: each peer's own events, once each.
    let per_peer: Vec<Vec<&Played>> = (0..3)
        .map(|c| {
            w.played
                .iter()
                .filter(|p| channel_of(p) == c && !p.repair)
                .collect()
        })
        .collect();
    for (i, p) in per_peer.iter().enumerate() {
        assert_eq!(p.len() as u64, 2 * count, "peer {i} events");
    }
    assert_eq!(w.played.iter().filter(|p| p.repair).count(), 0);

    let mut a = Alignment {
        cross: 0,
        spacing: 0.0,
        changed: 0,
        pairs: 0,
        late: 0,
        rows: 2 * count as usize,
        d: 0,
        d_excess: 0,
        placement: Vec::new(),
    };
    for k in 0..a.rows {
        let s: Vec<&Played> = per_peer.iter().map(|p| p[k]).collect();
        if s.iter().any(|p| p.late) {
            a.late += 1;
            continue;
        }
        if s.iter().any(|p| p.delay != s[0].delay) {
            continue;
        }
        let lo = s.iter().map(|p| p.sample).min().unwrap() as i64;
        let hi = s.iter().map(|p| p.sample).max().unwrap() as i64;
        a.cross = a.cross.max(hi - lo);
    }
    for p in &per_peer {
        for k in 1..p.len() {
            if p[k].late || p[k - 1].late {
                continue;
            }
            a.pairs += 1;
            if p[k].delay != p[k - 1].delay {
                a.changed += 1;
                continue;
            }
            let true_gap = if k % 2 == 1 { 130.0 } else { 120.0 } * 1e-3 * SR;
            let got = (p[k].sample - p[k - 1].sample) as f64;
            a.spacing = a.spacing.max((got - true_gap).abs());
        }
    }
    a.placement = w
        .map_error
        .iter()
        .map(|e| e[e.len() - a.rows..].iter().map(|x| x.abs()).max().unwrap())
        .collect();
    // D against the slowest peer's p99 of true latency over the last 10 s (80 events), plus
    // the Receiver's longest block (512 samples) and the margin.
    a.d = w.delay_history.last().unwrap().1;
    let slowest = slowest_true_p99(&w, 80) as i64;
    let block = (512.0 / SR * 1e9) as i64;
    a.d_excess = a.d - (slowest + block + MARGIN);
    println!(
        "alignment across peers: {} samples max; spacing within a peer: {:.2} samples max; \
         the delay changed between {} of {} consecutive events; late: {} of {}; D = {:.2} ms \
         = slowest p99 {:.2} ms + block {:.2} ms + margin {:.1} ms {:+.2} ms; clock placement \
         error per peer (max): {:?} us",
        a.cross,
        a.spacing,
        a.changed,
        a.pairs,
        a.late,
        a.rows,
        a.d as f64 / 1e6,
        slowest as f64 / 1e6,
        block as f64 / 1e6,
        MARGIN as f64 / 1e6,
        a.d_excess as f64 / 1e6,
        a.placement.iter().map(|x| x / 1000).collect::<Vec<_>>()
    );
    a
}

/// The checks every alignment run must pass.
fn check(a: &Alignment, cross_samples: i64) {
    assert!(
        a.cross <= cross_samples,
        "cross-peer alignment error {} samples",
        a.cross
    );
    assert!(a.spacing <= 2.0, "spacing error {} samples", a.spacing);
    assert!(
        a.changed * 100 <= a.pairs,
        "the delay moved between {} of {} events",
        a.changed,
        a.pairs
    );
    assert!(a.late * 100 <= 2 * a.rows, "{} late", a.late);
    assert!(
        a.d_excess.abs() <= MARGIN / 2 + MS as i64,
        "D is {} ns off slowest p99 + block + margin",
        a.d_excess
    );
}

#[test]
fn three_peers_line_up_to_the_sample() {
    // Paths of 5, 40 and 120 ms with little jitter (0.1 to 0.5 ms mean), clocks seconds apart
    // and 30 to 100 ppm off.
    let mut peers = three_peers();
    for (p, j) in peers.iter_mut().zip([MS / 10, MS / 4, MS / 2]) {
        p.jitter_mean = j;
    }
    let a = align(peers, 42);
    check(&a, 1);
}

#[test]
fn three_peers_through_heavy_jitter() {
    // The same paths with 0.5, 2 and 4 ms mean jitter (exponential, up to 32 ms): the clock
    // exchange's error grows, and same-origin notes land a few samples apart.
    let a = align(three_peers(), 42);
    check(&a, 4);
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
    score(&mut w, 2, SETTLED, 400);
    w.run_until(SETTLED + 20_000 * MS);
    let before = w.receiver.playout_delay();
    // Peer 1's route gets 60 ms slower.
    w.set_path(1, 100 * MS, 2 * MS);
    w.run_until(SETTLED + 22_000 * MS);
    let risen = w.receiver.playout_delay();
    assert!(
        risen > before + 50 * MS as i64,
        "D rose from {before} to {risen} within 2 s"
    );
    // Each peer's notes still come out in order.
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
    w.run_until(SETTLED + 23_000 * MS);
    let just_after = w.receiver.playout_delay();
    assert!(
        just_after > risen - 10 * MS as i64,
        "no sudden drop: {just_after}"
    );
    w.run_until(SETTLED + 90_000 * MS);
    let settled = w.receiver.playout_delay();
    let peer0 = {
        let lat = &w.true_latency[0];
        let mut recent = lat[lat.len() - 80..].to_vec();
        p99(&mut recent) as i64
    };
    println!(
        "D before {:.1} ms, after the slower route {:.1} ms, 1 s after the slow peer left \
         {:.1} ms, 67 s after {:.1} ms (peer 0 p99 {:.1} ms + margin)",
        before as f64 / 1e6,
        risen as f64 / 1e6,
        just_after as f64 / 1e6,
        settled as f64 / 1e6,
        peer0 as f64 / 1e6
    );
    let block = (512.0 / SR * 1e9) as i64;
    assert!(
        (settled - peer0 - block - MARGIN).abs() <= MARGIN / 2 + MS as i64,
        "D {settled} back at peer 0's p99 {peer0} + block + margin"
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
    score(&mut w, 3, SETTLED, count);
    w.run_until(SETTLED + count * 250 * MS + 3_000 * MS);
    let delivered: usize = w.true_latency.iter().map(Vec::len).sum();
    let own = w.played.iter().filter(|p| !p.repair).count();
    assert_eq!(
        own + w.stale as usize,
        delivered,
        "every delivered event played once, or dropped as stale"
    );
    assert!(w.lost > 0);
    // Repeats made most losses harmless.
    assert!(
        delivered as f64 > 0.99 * (3 * 2 * count) as f64,
        "{delivered} of {} delivered",
        3 * 2 * count
    );
    // Each peer's notes come out in time order.
    for c in 0..3u8 {
        let samples: Vec<u64> = w
            .played
            .iter()
            .filter(|p| channel_of(p) == c && !p.late)
            .map(|p| p.sample)
            .collect();
        assert!(samples.windows(2).all(|x| x[0] <= x[1]), "peer {c} order");
    }
    assert_eq!(w.held_at_output(), 0, "nothing left sounding");
}
