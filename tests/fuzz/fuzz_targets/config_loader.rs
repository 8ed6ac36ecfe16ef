//! The configuration loader on arbitrary text: hearth.toml is edited by hand and through the API, so no input may
//! panic — parse, schema migration and validation answer with an error at worst.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = hearth::config::Config::from_toml(text, "fuzz");
    }
});
