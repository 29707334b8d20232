//! Fuzz target `cluster_frame`: see `switchyard_fuzz::cluster_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| switchyard_fuzz::cluster_frame(bytes));
