//! Fuzz target `scim_patch`: see [`closeout_fuzz::scim_patch`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| closeout_fuzz::scim_patch(data));
