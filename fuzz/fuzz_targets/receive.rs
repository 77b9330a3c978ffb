#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    udp_midi_fuzz::receive::run(data);
});
