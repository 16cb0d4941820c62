//! Fuzz target `hr_csv`: see [`closeout_fuzz::hr_csv`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| closeout_fuzz::hr_csv(data));
