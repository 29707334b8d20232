//! Fuzz target `postgres_event_rows`: see `switchyard_fuzz::postgres_event_rows`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| switchyard_fuzz::postgres_event_rows(bytes));
