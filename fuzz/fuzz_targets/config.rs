//! Config text of any bytes: parsing and validation report problems, never panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `*_file` keys would read files: keep the fuzzer away from the disk.
    if text.contains("_file") {
        return;
    }
    match portico::config::parse(text, &BTreeMap::new()) {
        Ok(config) => {
            let _ = portico::config::render_effective(&config);
        }
        Err(errors) => assert!(!errors.errors.is_empty()),
    }
});
