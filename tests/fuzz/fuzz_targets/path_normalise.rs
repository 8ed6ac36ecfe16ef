//! The proxy's path normalisation on arbitrary paths (see `hearth::fuzzing::path_normalise`).
//! The body lives in the library so that the test suite runs it too (a short smoke run on stable).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hearth::fuzzing::path_normalise(data));
