//! `stat_layout`, our tracker.conf key choosing the list-reply records.

use std::path::Path;

use fdfs_conf::*;

fn tracker(text: &str) -> Result<(TrackerConf, Vec<Warning>), ConfError> {
    TrackerConf::from_str_with_warnings(text, Path::new("tracker.conf"))
}

#[test]
fn defaults_to_the_current_layout() {
    let (t, w) = tracker("base_path=/t\n").unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(t.stat_layout, StatLayout::V6_16);
}

#[test]
fn takes_both_values_without_warnings() {
    for (v, want) in [("6.16", StatLayout::V6_16), ("6.10", StatLayout::V6_10)] {
        let (t, w) = tracker(&format!("base_path=/t\nstat_layout = {v}\n")).unwrap();
        assert!(w.is_empty(), "{v}: {w:?}");
        assert_eq!(t.stat_layout, want, "{v}");
    }
}

#[test]
fn a_bad_value_is_an_error_naming_the_key() {
    for bad in ["6.12", "old", "", "6.10.1", "610"] {
        let e = tracker(&format!("base_path=/t\n\nstat_layout = {bad}\n")).unwrap_err();
        match &e {
            ConfError::Invalid { key, line, .. } => {
                assert_eq!((key.as_str(), *line), ("stat_layout", 3), "{bad:?}: {e}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.contains("stat_layout") && text.contains("6.10"),
            "{text}"
        );
    }
}
