//! Fuzz target `webhook_body`: see [`closeout_fuzz::webhook_body`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| closeout_fuzz::webhook_body(data));
