//! Fuzz targets of udp-midi: the harnesses behind the `cargo fuzz` binaries in
//! `fuzz_targets/`, kept in a library so that the seed generator and the tests run them too.
//!
//! - [`decode`]: arbitrary bytes through the header, body opener and body decoder.
//! - [`receive`]: a Receiver fed a sequence of datagrams built from the input.
//! - [`sender`]: a Sender fed a Receiver's answers built from the input.
//! - [`seeds`]: a small starting corpus for each, written by code.

pub mod craft;
pub mod decode;
pub mod receive;
pub mod seeds;
pub mod sender;
