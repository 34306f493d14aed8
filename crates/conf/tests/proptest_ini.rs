//! The ini parser never panics, and generated `key = value` files round-trip.

use std::path::Path;

use fdfs_conf::value;
use fdfs_conf::{IniFile, ModFastdfsConf, StorageConf, TrackerConf};

/// Pieces that exercise every branch of the line parser and the loaders.
/// Name resolution is turned off below, so `allow_hosts = name` sends no DNS query.
const TOKENS: &[&str] = &[
    "#include ",
    "#@set ",
    "#",
    "[",
    "]",
    "[group1]",
    "[]",
    "=",
    " ",
    "\t",
    "\r",
    "é",
    "%",
    ":",
    ",",
    "-",
    ".",
    "/",
    "0",
    "1",
    "2",
    "256",
    "99999999999999999999",
    "k",
    "MB",
    "G",
    "base_path",
    "port",
    "tracker_server",
    "store_path_count",
    "store_path0",
    "store_path1",
    "group_count",
    "group_name",
    "url_have_group_name",
    "true",
    "reserved_storage_space",
    "slot_max_size",
    "allow_hosts",
    "10.0.0.",
    "[1-3]",
    "::1",
    "sync_start_time",
    "log_level",
    "store_lookup",
    "subdir_count_per_path",
    "http.anti_steal.check_token",
];
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_str_never_panics(text in any::<String>()) {
        let _ = IniFile::parse_str(&text, Path::new("fuzz.conf"));
    }

    #[test]
    fn parse_str_never_panics_on_conf_like_text(
        lines in prop::collection::vec(prop::collection::vec(prop::sample::select(TOKENS), 0..20), 0..40)
    ) {
        fdfs_conf::set_resolve_names(false);
        let text: Vec<String> = lines.iter().map(|l| l.concat()).collect();
        let text = text.join("\n");
        let parsed = IniFile::parse_str(&text, Path::new("fuzz.conf"));
        // The typed loaders must not panic on whatever the parser accepts.
        if let Ok(ini) = parsed {
            let _ = StorageConf::from_ini(&ini);
            let _ = TrackerConf::from_ini(&ini);
            let _ = ModFastdfsConf::from_ini(&ini);
        }
    }

    #[test]
    fn value_parsers_never_panic(s in any::<String>()) {
        let _ = value::parse_bytes(&s);
        let _ = value::parse_reserved(&s);
        let _ = value::parse_time(&s);
        let _ = value::parse_hosts_port(&s);
        let _ = value::parse_int::<u64>(&s);
        let _ = fdfs_conf::AllowHosts::parse_with(std::slice::from_ref(&s), &|_| Ok(vec![]));
        let _ = fdfs_conf::StorageIds::from_str(&s, Path::new("ids"));
    }

    #[test]
    fn key_value_round_trip(
        entries in prop::collection::vec(
            ("[a-z][a-z0-9_.]{0,62}", "[!-~]([ -~]{0,253}[!-~])?", " {0,3}", " {0,3}"), 0..30)
    ) {
        let mut text = String::new();
        for (k, v, pad1, pad2) in &entries {
            text.push_str(&format!("{pad1}{k}{pad2}={pad2}{v}{pad1}\n"));
        }
        let ini = IniFile::parse_str(&text, Path::new("gen.conf")).unwrap();
        prop_assert!(ini.warnings().is_empty(), "{:?}", ini.warnings());
        let got: Vec<(&str, &str, u32)> =
            ini.global().iter().map(|e| (e.key.as_str(), e.value.as_str(), e.line)).collect();
        let want: Vec<(&str, &str, u32)> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, v, _, _))| (k.as_str(), v.as_str(), i as u32 + 1))
            .collect();
        prop_assert_eq!(got, want);
    }
}
