//! Fuzz target `sqlite_event_rows`: see `switchyard_fuzz::sqlite_event_rows`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| switchyard_fuzz::sqlite_event_rows(bytes));
