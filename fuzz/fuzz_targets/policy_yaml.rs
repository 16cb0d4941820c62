//! Fuzz target `policy_yaml`: see [`closeout_fuzz::policy_yaml`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| closeout_fuzz::policy_yaml(data));
