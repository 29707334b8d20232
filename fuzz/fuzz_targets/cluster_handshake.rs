//! Fuzz target `cluster_handshake`: see `switchyard_fuzz::cluster_handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| switchyard_fuzz::cluster_handshake(bytes));
