//! Config text: the ini splitter and the typed tracker/storage builders
//! must return a value or a `ConfError` for any input, never panic.

#![no_main]

use std::path::Path;

use fdfs_conf::{IniFile, StorageConf, TrackerConf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // allow_hosts may name hosts: never let the fuzzer send DNS queries.
    fdfs_conf::set_resolve_names(false);
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.conf");
    if let Ok(ini) = IniFile::parse_str(&text, path) {
        let _ = TrackerConf::from_ini(&ini);
        let _ = StorageConf::from_ini(&ini);
    }
    // `from_str` resolves `#include` from disk; keep the fuzzer off the
    // file system (an include of /dev/zero would never end).
    if !text.contains("include") {
        let _ = TrackerConf::from_str(&text, path);
        let _ = StorageConf::from_str(&text, path);
    }
});
