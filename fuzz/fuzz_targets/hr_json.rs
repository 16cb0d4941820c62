//! Fuzz target `hr_json`: see [`closeout_fuzz::hr_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| closeout_fuzz::hr_json(data));
