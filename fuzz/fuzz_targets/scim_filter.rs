//! Fuzz target `scim_filter`: see [`closeout_fuzz::scim_filter`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| closeout_fuzz::scim_filter(data));
