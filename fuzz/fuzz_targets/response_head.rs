//! libFuzzer entry point; the checks are [`strangler_fuzz::response_head`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strangler_fuzz::response_head(data));
