//! Benchmarks of the audio thread's work, run with
//! `cargo bench --features baseline --bench process`.
//!
//! Group `process`: the cost of ONE CLAP `process()` call (512 frames at 48 kHz, stereo `f32`
//! in and out, an input and an output event buffer), through the real plugin library that
//! `cargo bench` builds (`target/release/deps/libudp_midi.so`), hosted with `clack-host`:
//! - `process/thru/N`: the baseline MIDI pass-through (`baseline::Thru`) with N input events
//!   per block (note on/off pairs on channel 0, keys varying, offsets spread over the block);
//! - `process/receiver/N`: the Receiver with the same input, in fixed mode with a 50 ms delay
//!   and "Align local input" on, so every block schedules its N events and plays the N events
//!   scheduled 50 ms (4.7 blocks) earlier: its schedule holds about 4.7 N events;
//! - `process/receiver_idle/0`: the Receiver with no input and "Align local input" off;
//! - `process/receiver_flood/16`: `process/receiver/16` while another thread sends garbage to
//!   the Receiver's port from four sockets as fast as it can (every length up to 1,472 bytes;
//!   half random bytes, half well-formed headers with a forged seal), for the whole case (more
//!   than 10 s); the lines printed after it give the datagrams sent, the process's resident
//!   memory sampled every 250 ms during the flood, and the ratio of its median block to
//!   `process/receiver/16`'s;
//! - `process/receiver_editor/16`: `process/receiver/16` while a thread draws the Receiver's
//!   editor (the same code the plugin window runs, on the CPU rasterizer's input side: status
//!   copy, layout, tessellation) 60 times a second (and the same ratio is printed).
//!
//! The Receiver places its blocks on the wall clock (it reads the session clock at the start
//! of every `process()` and maps the host's sample counter to it), and a host that calls it
//! faster than real time looks like offline rendering, where it plays everything at once.
//! So every case here runs its blocks at real-time pace, like an audio device would (one block
//! every 10.67 ms, the thread sleeping in between), and only the `process()` call itself is
//! timed. Each case first runs [`WARMUP_BLOCKS`] untimed blocks, so the Receiver's schedule
//! is at its steady state before anything is measured, and checks that the plugin really does
//! what the case says (the Receiver's first output comes 50 ms late, the totals add up).
//! The pass-through runs in exactly the same way, so the two are comparable.
//!
//! Group `schedule`: the Receiver's playout schedule alone, against a sorted ring (see
//! [`schedule`]).
//!
//! Group `clock`: the pure estimators, through the library's Rust API (no plugin, no pacing):
//! `clock/host_clock`: `HostClock::update`, once per block on the audio thread;
//! `clock/clock_filter`: `ClockFilter::add_sample` with a full window (1,024 samples), which
//! refits both envelopes, ten times a second on a Sender's network thread.

use clack_extensions::state::PluginState;
use clack_host::events::event_types::{NoteOffEvent, NoteOnEvent};
use clack_host::events::Match;
use clack_host::prelude::*;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
};
use std::ffi::CString;
use std::hint::black_box;
use std::io::Cursor;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// CLAP id of the baseline pass-through (only exported with the `baseline` feature).
const THRU_ID: &str = "org.udp-midi.baseline-thru";
/// CLAP id of the Receiver.
const RECEIVER_ID: &str = "org.udp-midi.receiver";
/// Sample rate of every case.
const SAMPLE_RATE: f64 = 48_000.0;
/// Frames per `process()` call.
const BLOCK: u32 = 512;
/// Duration of a block, s.
const BLOCK_SECONDS: f64 = BLOCK as f64 / SAMPLE_RATE;
/// Input events per block.
const EVENT_COUNTS: [u32; 3] = [0, 16, 256];
/// The Receiver's fixed playout delay, ms.
const DELAY_MS: f64 = 50.0;
/// Blocks run back to back after each wait for real time: 4 blocks = 2,048 frames, like a
/// host that splits a 2,048-frame device buffer into 512-frame plugin calls.
const BURST: u64 = 4;
/// Untimed blocks before measuring (2.1 s; the Receiver's schedule reaches its steady size
/// after 5 blocks).
const WARMUP_BLOCKS: u64 = 200;
/// Distinct input blocks, cycled (keys change from one to the next).
const INPUT_VARIANTS: usize = 16;
/// Sockets the flood sends from, in turn.
const FLOOD_SOURCES: usize = 4;
/// Samples per case: criterion's linear sampling then times 1 + 2 + ... + 40 = 820 blocks,
/// which take 1,093 blocks (11.7 s) at real-time pace with the bursts' first blocks.
const SAMPLES: usize = 40;

// ----------------------------------------------------------------------------------------------
// The host
// ----------------------------------------------------------------------------------------------

/// Host callbacks: the benchmark drives everything itself and ignores requests.
struct Shared;

impl<'a> SharedHandler<'a> for Shared {
    fn request_restart(&self) {}

    fn request_process(&self) {}

    fn request_callback(&self) {}
}

/// The host's handler types.
struct BenchHost;

impl HostHandlers for BenchHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// The plugin library `cargo bench` built next to this benchmark binary, loaded once.
fn entry() -> &'static PluginEntry {
    static ENTRY: OnceLock<PluginEntry> = OnceLock::new();
    ENTRY.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let path: PathBuf = exe
            .parent()
            .expect("bench binary has a folder")
            .join(format!(
                "{}udp_midi{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            ));
        assert!(
            path.exists(),
            "{} does not exist: run through `cargo bench --features baseline`, which builds it",
            path.display()
        );
        // SAFETY: the library is this crate's own CLAP build, loaded once and never unloaded;
        // its entry `init` has no side effects beyond logging setup.
        unsafe { PluginEntry::load(&path) }
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
    })
}

/// The Receiver's saved state (nice-plug's JSON): fixed delay of [`DELAY_MS`], "Align local
/// input" as given, listening on `port`, NTP off.
fn receiver_state(port: u16, align_local: bool) -> String {
    let fields = serde_json::json!({ "port": port, "ntp_server": "" }).to_string();
    serde_json::json!({
        "version": "0.1.0",
        "params": {
            "delay": { "f32": DELAY_MS },
            "mode": { "string": "fixed" },
            "align_local": { "bool": align_local },
        },
        "fields": { "receiver": fields },
    })
    .to_string()
}

/// A UDP port that was free a moment ago (the Receiver binds it on activation).
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    s.local_addr().expect("local_addr").port()
}

/// `n` events for block variant `variant`: `n / 2` note on/off pairs on channel 0, spread
/// evenly over the block's offsets, keys from 24 to 119 changing with each pair.
fn input_events(n: u32, variant: usize) -> EventBuffer {
    let mut buf = EventBuffer::with_capacity(n as usize);
    for i in 0..n {
        let offset = i * BLOCK / n;
        let pair = variant as u32 * n / 2 + i / 2;
        let key = (24 + pair % 96) as u16;
        let pckn = Pckn::new(0u16, 0u16, key, Match::All);
        if i % 2 == 0 {
            buf.push(&NoteOnEvent::new(offset, pckn, 0.8));
        } else {
            buf.push(&NoteOffEvent::new(offset, pckn, 0.0));
        }
    }
    buf
}

/// One plugin instance, active and processing, with everything a block needs allocated up
/// front: the timed part of a block is the `process()` call only.
struct Rig {
    /// Plugin instance (main-thread side).
    instance: PluginInstance<BenchHost>,
    /// Its audio processor, `Some` while active.
    processor: Option<StartedPluginAudioProcessor<BenchHost>>,
    /// CLAP id, for messages.
    id: &'static str,
    /// Input events per block.
    n: u32,
    /// The input blocks, cycled.
    inputs: Vec<EventBuffer>,
    /// Output events of the last block.
    output: EventBuffer,
    /// Stereo input audio.
    audio_in: [Vec<f32>; 2],
    /// Stereo output audio.
    audio_out: [Vec<f32>; 2],
    /// Input port descriptors.
    in_ports: AudioPorts,
    /// Output port descriptors.
    out_ports: AudioPorts,
    /// Blocks processed so far (also the CLAP steady time, in blocks).
    blocks: u64,
    /// Events the plugin output so far.
    emitted: u64,
    /// Wall-clock time of block 0.
    start: Instant,
    /// `process()` times of the first block of every burst (untimed by criterion).
    cold: Vec<Duration>,
    /// `process()` times of the blocks criterion timed, for the ratios printed after a case.
    warm: Vec<Duration>,
}

impl Rig {
    /// Instantiates plugin `id`, loads `state` (nice-plug JSON) if any, activates it at
    /// [`SAMPLE_RATE`] with blocks of up to [`BLOCK`] frames and starts processing.
    fn new(id: &'static str, state: Option<&str>, n: u32) -> Self {
        let info = HostInfo::new("udp-midi bench", "udp-midi", "https://example.invalid", "0")
            .expect("host info");
        let cid = CString::new(id).expect("plugin id");
        let mut instance =
            PluginInstance::<BenchHost>::new(|_| Shared, |_| (), entry(), &cid, &info)
                .unwrap_or_else(|e| panic!("cannot instantiate {id}: {e}"));
        if let Some(json) = state {
            // nice-plug expects a little-endian u64 byte count in front of its JSON.
            let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(json.as_bytes());
            let handle = instance.plugin_handle();
            let ext = handle
                .get_extension::<PluginState>()
                .unwrap_or_else(|| panic!("{id} has no CLAP state extension"));
            ext.load(&handle, &mut Cursor::new(bytes))
                .unwrap_or_else(|e| panic!("{id} refused its state {json}: {e}"));
        }
        let cfg = PluginAudioConfiguration {
            sample_rate: SAMPLE_RATE,
            min_frames_count: 1,
            max_frames_count: BLOCK,
        };
        let processor = instance
            .activate(|_, _| (), cfg)
            .unwrap_or_else(|e| panic!("cannot activate {id}: {e}"))
            .start_processing()
            .unwrap_or_else(|e| panic!("cannot start processing {id}: {e}"));
        let frames = BLOCK as usize;
        Self {
            instance,
            processor: Some(processor),
            id,
            n,
            inputs: (0..INPUT_VARIANTS).map(|v| input_events(n, v)).collect(),
            // Room for far more than a block ever outputs, so pushing never reallocates.
            output: EventBuffer::with_capacity(4 * BLOCK as usize),
            audio_in: [vec![0.0; frames], vec![0.0; frames]],
            audio_out: [vec![0.0; frames], vec![0.0; frames]],
            in_ports: AudioPorts::with_capacity(2, 1),
            out_ports: AudioPorts::with_capacity(2, 1),
            blocks: 0,
            emitted: 0,
            start: Instant::now(),
            cold: Vec::with_capacity(4096),
            warm: Vec::with_capacity(4096),
        }
    }

    /// Runs the next block; the first block of a burst waits for its real-time moment
    /// first. Returns how long `process()` took and whether it was a burst's first block.
    fn step(&mut self) -> (Duration, bool) {
        let first = self.blocks.is_multiple_of(BURST);
        if first {
            let due = self.start + Duration::from_secs_f64(self.blocks as f64 * BLOCK_SECONDS);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        (self.block(), first)
    }

    /// The next block that is not the first of its burst, timed; burst starts on the way are
    /// run (and their time recorded in [`Rig::cold`]) but not counted.
    fn warm_block(&mut self) -> Duration {
        loop {
            match self.step() {
                (d, true) => self.cold.push(d),
                (d, false) => {
                    self.warm.push(d);
                    return d;
                }
            }
        }
    }

    /// Runs the next block at once and returns how long `process()` took.
    fn block(&mut self) -> Duration {
        let input = &self.inputs[self.blocks as usize % INPUT_VARIANTS];
        self.output.clear();
        let [in_l, in_r] = &mut self.audio_in;
        let inputs = self.in_ports.with_input_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_input_only([
                InputChannel::variable(in_l.as_mut_slice()),
                InputChannel::variable(in_r.as_mut_slice()),
            ]),
        }]);
        let [out_l, out_r] = &mut self.audio_out;
        let mut outputs = self.out_ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only([
                out_l.as_mut_slice(),
                out_r.as_mut_slice(),
            ]),
        }]);
        let input_events = InputEvents::from_buffer(input);
        let mut output_events = OutputEvents::from_buffer(&mut self.output);
        let processor = self.processor.as_mut().expect("active");
        let steady_time = Some(self.blocks * BLOCK as u64);

        let t0 = Instant::now();
        let status = processor.process(
            &inputs,
            &mut outputs,
            &input_events,
            &mut output_events,
            steady_time,
            None,
        );
        let elapsed = t0.elapsed();

        if let Err(e) = status {
            panic!("{} process() failed: {e}", self.id);
        }
        self.blocks += 1;
        self.emitted += self.output.len() as u64;
        elapsed
    }

    /// Runs `count` untimed blocks, paced; returns the output event count of each.
    fn run(&mut self, count: u64) -> Vec<u32> {
        (0..count)
            .map(|_| {
                self.step();
                self.output.len()
            })
            .collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(p) = self.processor.take() {
            self.instance.deactivate(p.stop_processing());
        }
    }
}

/// Warms `rig` up and checks it behaves as the case says; prints what it saw.
fn warm_up(rig: &mut Rig, delayed: bool) {
    let per_block = rig.run(WARMUP_BLOCKS);
    let n = rig.n as u64;
    let input = n * WARMUP_BLOCKS;
    let out = rig.emitted;
    let first = per_block.iter().position(|&c| c > 0);
    if !delayed {
        assert_eq!(out, input, "{}: events in and out differ", rig.id);
    } else if n > 0 {
        // 50 ms = 4.69 blocks: nothing comes out of the first four blocks, and at the end about
        // 4.7 blocks' worth of events are still waiting.
        let block_ms = BLOCK_SECONDS * 1e3;
        let lag = (input - out) as f64 / n as f64;
        assert!(
            first.is_some_and(|f| f >= 4),
            "{}: output started at block {first:?}, not ~50 ms late (offline mode?)",
            rig.id
        );
        assert!(
            (3.5..6.0).contains(&lag),
            "{}: {} events waiting after warm-up, expected about {:.0}",
            rig.id,
            input - out,
            DELAY_MS / block_ms * n as f64
        );
    }
    eprintln!(
        "{}, {n} events/block: {WARMUP_BLOCKS} warm-up blocks, {input} events in, {out} out, \
         first output in block {first:?}, {} waiting",
        rig.id,
        input - out.min(input)
    );
}

/// Benchmark `process/<name>/<n>`: one block per iteration of a plugin made by `make`, which
/// is built, activated and warmed up (untimed) only when criterion runs this benchmark, and
/// kept across all of its iterations.
fn bench_case(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    n: u32,
    delayed: bool,
    mut make: impl FnMut() -> Rig,
) -> Option<Duration> {
    let mut rig: Option<Rig> = None;
    group.bench_function(BenchmarkId::new(name, n), |b| {
        let rig = rig.get_or_insert_with(|| {
            let mut r = make();
            warm_up(&mut r, delayed);
            r
        });
        b.iter_custom(|iters| (0..iters).map(|_| rig.warm_block()).sum());
    });
    let rig = rig?;
    let mut cold = rig.cold.clone();
    cold.sort();
    if !cold.is_empty() {
        let q = |p: f64| cold[((cold.len() - 1) as f64 * p).round() as usize];
        eprintln!(
            "process/{name}/{n}: first block of each burst (not in criterion's figure): \
             {} blocks, median {:?}, p90 {:?}, max {:?}",
            cold.len(),
            q(0.5),
            q(0.9),
            q(1.0)
        );
    }
    let mut warm = rig.warm.clone();
    warm.sort();
    warm.get(warm.len() / 2).copied()
}

/// What a flood did: datagrams sent, and the process's resident memory sampled every 250 ms
/// while it ran (KiB).
struct FloodReport {
    /// Datagrams sent.
    sent: u64,
    /// Resident memory samples, in time order.
    rss_kib: Vec<u64>,
}

/// Sends garbage to `port` on 127.0.0.1 as fast as one thread can until `stop`, from
/// [`FLOOD_SOURCES`] sockets in turn, every length from a bare header to the largest datagram
/// the Receiver reads (1,472 bytes); half of them well-formed headers with the sealed flag and
/// a forged tag, which reach the authentication, the most expensive rejection.
fn flood(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<FloodReport> {
    std::thread::spawn(move || {
        let socks: Vec<UdpSocket> = (0..FLOOD_SOURCES)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut buf = [0u8; 1472];
        let mut sent = 0u64;
        let mut rss = Vec::new();
        let mut next_sample = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            for b in buf.iter_mut().step_by(7) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if sent.is_multiple_of(2) {
                buf[..4].copy_from_slice(b"UMID");
                buf[4] = 2;
                buf[5] = 1;
                buf[6] = 1;
                buf[7] = 0;
            }
            let len = 24 + (x % (1472 - 24 + 1)) as usize;
            let sock = &socks[sent as usize % socks.len()];
            if sock.send_to(&buf[..len], ("127.0.0.1", port)).is_ok() {
                sent += 1;
            }
            if sent.is_multiple_of(1024) && Instant::now() >= next_sample {
                rss.push(rss_kib());
                next_sample += Duration::from_millis(250);
            }
        }
        FloodReport { sent, rss_kib: rss }
    })
}

/// Resident memory of this process, KiB (Linux `/proc/self/status`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Draws the Receiver's editor (demo session) 60 times a second until `stop`; returns frames.
fn editor_load(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        use udp_midi::editor::{demo, headless::Headless, receiver, ReceiverEditor};
        use udp_midi::status::{Commands, Published};
        let params = Arc::new(udp_midi::ReceiverParams::default());
        params.settings.set(demo::receiver_settings());
        let published = Arc::new(Published::default());
        published.publish(&demo::receiver_status());
        let mut editor = ReceiverEditor::new(params, published, Arc::new(Commands::default()));
        let mut h = Headless::new(receiver::SIZE, 1.0);
        let mut frames = 0u64;
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut out = h.frame(|ui, setter| editor.draw(ui, setter));
            black_box(h.tessellate(&mut out));
            frames += 1;
            let due = start + Duration::from_secs_f64(frames as f64 / 60.0);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        frames
    })
}

/// Prints the ratio of a case's median block (from the blocks criterion timed) to that of
/// `process/receiver/16`, measured in the same run.
fn ratio(name: &str, case: Option<Duration>, receiver_16: Option<Duration>) {
    if let (Some(a), Some(b)) = (case, receiver_16) {
        eprintln!(
            "process/{name}: median block {a:?} against {b:?} for process/receiver/16: {:.2}x",
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
}

/// Group `process`.
fn process(c: &mut Criterion) {
    let mut group = c.benchmark_group("process");
    // Real-time pacing: criterion must not size the run from the measured time (a few µs per
    // block) but run a fixed number of blocks. A 1 ns target makes linear sampling take the
    // minimum, one block more per sample: 1 + 2 + ... + SAMPLES blocks. (Criterion warns that
    // it cannot complete the samples in 1 ns; that is expected.)
    group
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Linear)
        .warm_up_time(Duration::from_nanos(1))
        .measurement_time(Duration::from_nanos(1));

    for n in EVENT_COUNTS {
        bench_case(&mut group, "thru", n, false, || Rig::new(THRU_ID, None, n));
    }
    let mut receiver_16 = None;
    for n in EVENT_COUNTS {
        let median = bench_case(&mut group, "receiver", n, true, || {
            let state = receiver_state(free_udp_port(), true);
            Rig::new(RECEIVER_ID, Some(&state), n)
        });
        if n == 16 {
            receiver_16 = median;
        }
    }
    bench_case(&mut group, "receiver_idle", 0, false, || {
        let state = receiver_state(free_udp_port(), false);
        Rig::new(RECEIVER_ID, Some(&state), 0)
    });

    // Under a flood of garbage.
    let stop = Arc::new(AtomicBool::new(false));
    let mut flooder = None;
    let flooded = bench_case(&mut group, "receiver_flood", 16, true, || {
        let port = free_udp_port();
        let state = receiver_state(port, true);
        let rig = Rig::new(RECEIVER_ID, Some(&state), 16);
        flooder = Some((flood(port, stop.clone()), Instant::now()));
        rig
    });
    stop.store(true, Ordering::Relaxed);
    if let Some((h, t0)) = flooder {
        let secs = t0.elapsed().as_secs_f64();
        let report = h.join().expect("flood thread");
        // Memory after the first 2 s (the Receiver's warm-up and the flood's own buffers).
        let settled = report.rss_kib.get(8..).unwrap_or_default();
        let (lo, hi) = (
            settled.iter().min().copied().unwrap_or(0),
            settled.iter().max().copied().unwrap_or(0),
        );
        eprintln!(
            "process/receiver_flood/16: {} garbage datagrams in {secs:.1} s ({:.0}/s) from {} \
             sockets; resident memory from 2 s on: {lo} to {hi} KiB over {} samples (+{} KiB)",
            report.sent,
            report.sent as f64 / secs,
            FLOOD_SOURCES,
            settled.len(),
            hi.saturating_sub(lo)
        );
    }
    ratio("receiver_flood/16", flooded, receiver_16);

    // With the editor open.
    let stop = Arc::new(AtomicBool::new(false));
    let mut drawer = None;
    let drawn = bench_case(&mut group, "receiver_editor", 16, true, || {
        let state = receiver_state(free_udp_port(), true);
        let rig = Rig::new(RECEIVER_ID, Some(&state), 16);
        drawer = Some((editor_load(stop.clone()), Instant::now()));
        rig
    });
    stop.store(true, Ordering::Relaxed);
    if let Some((h, t0)) = drawer {
        let frames = h.join().unwrap_or(0);
        eprintln!(
            "process/receiver_editor/16: {frames} editor frames drawn in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    ratio("receiver_editor/16", drawn, receiver_16);
    group.finish();
}

/// Group `schedule`: the Receiver's playout schedule on its own (pure, no plugin, no pacing),
/// in the steady state of three peers whose paths take 5, 40 and 120 ms, each playing an
/// event every 2 ms, with a 130 ms delay: about 3 x 65 = 200 items waiting, or 10 times as
/// many events per peer (`x10`, 2,000 waiting). Their events arrive in the order the network
/// delivers them, so most inserts land in the middle of the queue. One iteration inserts one
/// arrival and pops what has fallen due.
/// - `schedule/slab/*`: the schedule the Receiver uses (`proto::schedule::Schedule`: items in
///   a slab, a sorted ring of small keys);
/// - `schedule/sorted_ring/*`: the baseline, a ring of the items themselves kept sorted by
///   insertion (`VecDeque::insert`), which moves every later item on each insert.
fn schedule(c: &mut Criterion) {
    use std::collections::VecDeque;
    use udp_midi::proto::event::MidiMessage;
    use udp_midi::proto::receiver::{Item, ScheduledEvent};
    use udp_midi::proto::schedule::Schedule;
    const PATHS_NS: [u64; 3] = [5_000_000, 40_000_000, 120_000_000];
    let item = |due_ns: u64, peer: u8, seq: u64| ScheduledEvent {
        due_ns,
        seq,
        peer,
        gen: 1,
        item: Item::Midi(MidiMessage::ControlChange {
            channel: 0,
            cc: 1,
            value: 0.5,
        }),
    };
    // Arrivals in arrival order: (arrival time, due time, peer), one event every `spacing_ns`
    // from each path.
    let arrivals = |paths: &[u64], spacing_ns: u64, count: usize| {
        let mut v: Vec<(u64, u64, u8)> = (0..count as u64)
            .flat_map(|i| {
                paths
                    .iter()
                    .enumerate()
                    .map(move |(p, path)| (i * spacing_ns + path, i * spacing_ns, p as u8))
            })
            .collect();
        v.sort_unstable();
        v
    };
    // Arrival `i`, the list repeated as many times as criterion needs, later each lap.
    let at = |arr: &[(u64, u64, u8)], paths: usize, i: usize, spacing: u64| {
        let lap = (i / arr.len()) as u64 * (arr.len() as u64 / paths as u64 + 1) * spacing;
        let (now, due, peer) = arr[i % arr.len()];
        (now + lap, due + lap, peer)
    };
    let mut group = c.benchmark_group("schedule");
    // (name, paths, spacing, delay): three peers every 2 ms or 0.2 ms with a 130 ms delay;
    // or the Receiver's own track alone, in order, 256 events a block with a 50 ms delay (the
    // steady state of `process/receiver/256`).
    let cases: [(&str, &[u64], u64, u64); 3] = [
        ("x1", &PATHS_NS, 2_000_000, 130_000_000),
        ("x10", &PATHS_NS, 200_000, 130_000_000),
        ("in_order", &[0], 41_667, 50_000_000),
    ];
    for (name, paths, spacing, delay) in cases {
        let arr = arrivals(paths, spacing, 200_000);
        let n = paths.len();
        group.bench_function(BenchmarkId::new("slab", name), |b| {
            let mut s = Schedule::with_limits(8192, 0, 8192);
            let mut i = 0usize;
            b.iter(|| {
                let (now, due, peer) = at(&arr, n, i, spacing);
                let _ = s.insert(item(due, peer, i as u64));
                while s.peek().is_some_and(|e| e.due_ns + delay <= now) {
                    black_box(s.pop());
                }
                i += 1;
            });
        });
        group.bench_function(BenchmarkId::new("sorted_ring", name), |b| {
            let mut s: VecDeque<ScheduledEvent> = VecDeque::with_capacity(8192);
            let mut i = 0usize;
            b.iter(|| {
                let (now, due, peer) = at(&arr, n, i, spacing);
                let ev = item(due, peer, i as u64);
                if s.back().is_none_or(|b| b.due_ns <= due) {
                    s.push_back(ev);
                } else {
                    let pos = s.partition_point(|e| e.due_ns <= due);
                    s.insert(pos, ev);
                }
                while s.front().is_some_and(|e| e.due_ns + delay <= now) {
                    black_box(s.pop_front());
                }
                i += 1;
            });
        });
    }
    group.finish();
}

/// Group `clock`.
fn clock(c: &mut Criterion) {
    use udp_midi::timing::clock_filter::{ClockFilter, WINDOW};
    use udp_midi::timing::host_clock::HostClock;
    let mut group = c.benchmark_group("clock");
    group.bench_function("host_clock", |b| {
        let mut hc = HostClock::new();
        let mut t = 1_700_000_000_000_000_000u64;
        let mut x = 1u64;
        b.iter(|| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            t += 10_666_667 + (x >> 54);
            black_box(hc.update(black_box(t), 512, SAMPLE_RATE))
        });
    });
    group.bench_function("clock_filter", |b| {
        let mut f = ClockFilter::new();
        let mut t = 1_700_000_000_000_000_000u64;
        let mut x = 7u64;
        let mut sample = |f: &mut ClockFilter| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let up = 20_000_000 + (x >> 44);
            let down = 20_000_000 + ((x >> 20) & 0xFFFFF);
            let t1 = t;
            let t2 = t1 + up + 5_000_000;
            let _ = f.add_sample(t1, t2, t2 + 10_000, t1 + up + 10_000 + down);
            t += 100_000_000;
        };
        for _ in 0..WINDOW {
            sample(&mut f);
        }
        b.iter(|| {
            sample(&mut f);
            black_box(f.estimate())
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = process, schedule, clock
}
criterion_main!(benches);
