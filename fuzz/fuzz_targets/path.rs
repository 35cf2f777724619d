//! libFuzzer entry point; the checks are [`strangler_fuzz::path`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strangler_fuzz::path(data));
