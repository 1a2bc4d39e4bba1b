#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockeye_tests::fuzzing::utf8_differential(data));
