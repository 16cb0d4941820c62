//! Fuzz target `config_toml`: see [`closeout_fuzz::config_toml`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| closeout_fuzz::config_toml(data));
