//! Fuzz target `playbook_yaml`: see [`closeout_fuzz::playbook_yaml`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| closeout_fuzz::playbook_yaml(data));
