#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockeye_tests::fuzzing::hub_client(data));
