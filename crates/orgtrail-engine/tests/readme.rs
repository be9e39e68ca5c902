//! The README documents every metric (name, type and labels) and every alarm.

#[test]
fn every_metric_and_alarm_is_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the workspace root");
    for (name, kind, labels, _) in orgtrail_engine::metrics::ALL {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("README: no row for metric {name}"));
        assert!(
            row.contains(&format!("| {kind} |")),
            "README: {name} is a {kind}: {row}"
        );
        for label in labels.split(", ") {
            assert!(
                row.contains(&format!("`{label}`")),
                "README: {name} has the label {label}: {row}"
            );
        }
    }
    for kind in orgtrail_state::AlarmKind::ALL {
        assert!(
            readme.contains(&format!("| `{kind}`")),
            "README: no row for alarm {kind}"
        );
    }
}
