//! The editors, without a host or a window: both are drawn with a made-up session of three
//! players through a plain egui context ([`udp_midi::editor::headless`]).
//!
//! - `screenshots`: renders each editor to a PNG with a CPU rasterizer (`raster`), checks that
//!   the pictures hold what they should, that no text is cut off or painted over another and
//!   that everything lies inside the window, and writes them to a temporary folder, or over
//!   `docs/*.png` with `UPDATE_SCREENSHOTS=1`.
//! - `states`: the same checks and pictures for the states the editors exist to show: a busy
//!   port, errors in words, no reply, refused, a name that does not resolve, fields typed wrong.
//! - `interaction`: clicks and typing: panic, kick, copy, new code, mode, text fields that
//!   refuse bad input, and that closing the editor changes nothing.

#[path = "editors/interaction.rs"]
mod interaction;
#[path = "editors/raster.rs"]
mod raster;
#[path = "editors/screenshots.rs"]
mod screenshots;
#[path = "editors/states.rs"]
mod states;
