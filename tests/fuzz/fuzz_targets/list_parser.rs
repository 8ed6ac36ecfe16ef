//! The blocklist parser and compiler on arbitrary bytes (see `hearth::fuzzing::list_parser`).
//! The body lives in the library so that the test suite runs it too (a short smoke run on stable).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hearth::fuzzing::list_parser(data));
