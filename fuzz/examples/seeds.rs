//! Writes the starting corpus of every fuzz target: `cargo run --example seeds [DIR]` (from
//! `fuzz/`; `DIR` defaults to `fuzz/corpus`).

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let n = udp_midi_fuzz::seeds::write_all(&dir)?;
    println!("{n} seeds written under {}", dir.display());
    Ok(())
}
