//! Fuzz target `message`: see `switchyard_fuzz::message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| switchyard_fuzz::message(bytes));
