//! The configuration loader on arbitrary text (see `hearth::fuzzing::config_loader`).
//! The body lives in the library so that the test suite runs it too (a short smoke run on stable).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hearth::fuzzing::config_loader(data));
