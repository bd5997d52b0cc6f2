#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| floyd::fuzzing::apply(data));
