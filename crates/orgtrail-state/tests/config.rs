mod common;

use common::{ORG, open};
use orgtrail_state::{
    KeyInput, KeyRef, NewSource, SourceSpec, StateError, StateStore, load_config, parse_config,
    parse_duration, sync_config,
};

const GOOD: &str = r#"
[[source]]
name = "My Atlassian Event logs"
org_id = "2f8c1a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
api_key = "env:ATLASSIAN_KEY"
base_url = "https://api.atlassian.com"
key_expires_at = "2026-12-31"
dropoff_alarm = "24h"
poll_interval = "60s"

[[source]]
name = "EU org"
org_id = "not-a-uuid-but-accepted"
api_key = "file:/etc/orgtrail/eu.key"
key_expires_at = "2027-01-15T12:00:00Z"
dropoff_alarm = "1h30m"
"#;

fn err_of(text: &str) -> String {
    let e = parse_config("/etc/orgtrail/orgtrail.toml", text).unwrap_err();
    assert!(matches!(e, StateError::Config { .. }));
    let msg = e.to_string();
    assert!(msg.contains("/etc/orgtrail/orgtrail.toml"), "{msg}");
    msg
}

#[test]
fn good_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orgtrail.toml");
    std::fs::write(&path, GOOD).unwrap();
    let specs = load_config(&path).unwrap();
    assert_eq!(specs.len(), 2);
    let a = &specs[0];
    assert_eq!(a.name, "My Atlassian Event logs");
    assert_eq!(a.key, KeyRef::Env("ATLASSIAN_KEY".into()));
    assert_eq!(a.base_url.as_deref(), Some("https://api.atlassian.com"));
    assert_eq!(
        a.key_expires_at,
        Some("2026-12-31T00:00:00Z".parse().unwrap())
    );
    assert_eq!(a.dropoff_alarm_minutes, Some(1440));
    assert_eq!(a.poll_interval_secs, Some(60));
    let b = &specs[1];
    assert_eq!(b.key, KeyRef::File("/etc/orgtrail/eu.key".into()));
    assert_eq!(
        b.key_expires_at,
        Some("2027-01-15T12:00:00Z".parse().unwrap())
    );
    assert_eq!(b.dropoff_alarm_minutes, Some(90));
    assert_eq!(b.poll_interval_secs, None);
    assert_eq!(b.base_url, None);
    // An empty file declares no sources.
    assert!(parse_config("x.toml", "").unwrap().is_empty());
}

#[test]
fn missing_file_is_named() {
    let e = load_config("/nonexistent/orgtrail.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/orgtrail.toml") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn literal_key_is_refused_without_echoing_it() {
    let msg =
        err_of("[[source]]\nname = \"prod\"\norg_id = \"o\"\napi_key = \"ATATT3xFfGF0abcdef\"\n");
    assert!(
        msg.contains("source \"prod\"") && msg.contains("`api_key`") && msg.contains("env:VAR"),
        "{msg}"
    );
    assert!(!msg.contains("ATATT3xFfGF0abcdef"), "{msg}");
    // Malformed references too.
    for bad in ["env:", "env:1X", "file:", "ENV:X"] {
        let msg = err_of(&format!(
            "[[source]]\nname = \"p\"\norg_id = \"o\"\napi_key = \"{bad}\"\n"
        ));
        assert!(msg.contains("`api_key`"), "{msg}");
    }
    let msg = err_of("[[source]]\nname = \"p\"\norg_id = \"o\"\napi_key = 12345\n");
    assert!(
        msg.contains("must be a string") && !msg.contains("12345"),
        "{msg}"
    );
}

#[test]
fn bad_values_are_named() {
    let base = "[[source]]\nname = \"prod\"\norg_id = \"o\"\napi_key = \"env:K\"\n";
    let msg = err_of(&format!("{base}dropoff_alarm = \"24 hours\"\n"));
    assert!(
        msg.contains("source \"prod\"") && msg.contains("`dropoff_alarm`") && msg.contains("unit"),
        "{msg}"
    );
    let msg = err_of(&format!("{base}dropoff_alarm = \"10m\"\n"));
    assert!(msg.contains("outside 15m..30d"), "{msg}");
    let msg = err_of(&format!("{base}dropoff_alarm = \"31d\"\n"));
    assert!(msg.contains("outside 15m..30d"), "{msg}");
    let msg = err_of(&format!("{base}dropoff_alarm = \"90s\"\n"));
    assert!(msg.contains("whole number of minutes"), "{msg}");
    let msg = err_of(&format!("{base}poll_interval = \"60\"\n"));
    assert!(
        msg.contains("`poll_interval`") && msg.contains("no unit"),
        "{msg}"
    );
    let msg = err_of(&format!("{base}poll_interval = \"0s\"\n"));
    assert!(msg.contains("outside 1s..1d"), "{msg}");
    let msg = err_of(&format!("{base}key_expires_at = \"31/12/2026\"\n"));
    assert!(msg.contains("`key_expires_at`"), "{msg}");
    let msg = err_of(&format!("{base}base_url = \"api.atlassian.com\"\n"));
    assert!(msg.contains("`base_url`"), "{msg}");
    let msg = err_of(&format!("{base}pol_interval = \"60s\"\n"));
    assert!(
        msg.contains("source \"prod\"") && msg.contains("unknown key `pol_interval`"),
        "{msg}"
    );
    let msg = err_of("[sources]\nx = 1\n");
    assert!(msg.contains("unknown top-level key `sources`"), "{msg}");
    let msg = err_of("[[source]]\norg_id = \"o\"\n");
    assert!(
        msg.contains("source #1") && msg.contains("`name` is missing"),
        "{msg}"
    );
    let msg = err_of("[[source]]\nname = \"p\"\napi_key = \"env:K\"\n");
    assert!(msg.contains("`org_id` is missing"), "{msg}");
    let msg = err_of("[[source]]\nname = \"p\"\norg_id = \"o\"\n");
    assert!(msg.contains("`api_key` is missing"), "{msg}");
    let msg = err_of(&format!("{base}{}", base.replace("prod", "PROD")));
    assert!(msg.contains("used twice"), "{msg}");
    let msg = err_of("[[source]]\nname = \"p\"\norg_id = \n");
    assert!(
        msg.contains("line 3") && msg.contains("not valid TOML"),
        "{msg}"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("60s").unwrap().as_secs(), 60);
    assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
    assert_eq!(parse_duration("24h").unwrap().as_secs(), 86_400);
    assert_eq!(parse_duration("30d").unwrap().as_secs(), 2_592_000);
    assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5_400);
    for bad in ["", "h", "5", "5x", "-5m", "99999999999999999999d"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn sync_config_upserts_and_marks_config_managed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    // A source added by hand under a config name is adopted; another stays hand-managed.
    let hand = store
        .add_source(NewSource::new(
            "eu ORG",
            "not-a-uuid-but-accepted",
            KeyInput::Env("OLD".into()),
        ))
        .await
        .unwrap();
    store
        .add_source(NewSource::new("manual", ORG, KeyInput::Env("M".into())))
        .await
        .unwrap();
    store.set_paused(&hand.id, true).await.unwrap();

    let specs = parse_config("orgtrail.toml", GOOD).unwrap();
    let r = sync_config(&store, &specs).await.unwrap();
    assert_eq!(r.added, vec!["My Atlassian Event logs".to_owned()]);
    assert_eq!(r.adopted, vec!["EU org".to_owned()]);
    assert!(r.updated.is_empty() && r.unchanged.is_empty() && r.orphaned.is_empty());
    let eu = store.get_source("eu org").await.unwrap();
    assert_eq!(eu.id, hand.id); // same id: the checkpoint is kept
    assert_eq!(eu.name, "EU org");
    assert!(eu.config_managed && eu.paused);
    assert_eq!(eu.key_ref, KeyRef::File("/etc/orgtrail/eu.key".into()));
    assert!(!store.get_source("manual").await.unwrap().config_managed);

    // Again: nothing changes.
    let r = sync_config(&store, &specs).await.unwrap();
    assert_eq!(r.unchanged.len(), 2);
    assert!(r.added.is_empty() && r.updated.is_empty());

    // Change one, drop the other from the file.
    let mut changed: Vec<SourceSpec> = vec![specs[0].clone()];
    changed[0].dropoff_alarm_minutes = Some(60);
    let r = sync_config(&store, &changed).await.unwrap();
    assert_eq!(r.updated, vec!["My Atlassian Event logs".to_owned()]);
    assert_eq!(r.orphaned, vec!["EU org".to_owned()]);
    assert_eq!(
        store
            .get_source("My Atlassian Event logs")
            .await
            .unwrap()
            .dropoff_alarm_minutes,
        Some(60)
    );
    assert!(store.find_source("EU org").await.unwrap().is_some()); // kept

    // The organization of a source cannot change.
    changed[0].org_id = "11111111-2222-3333-4444-555555555555".into();
    let e = sync_config(&store, &changed).await.unwrap_err().to_string();
    assert!(
        e.contains("My Atlassian Event logs") && e.contains("cannot change"),
        "{e}"
    );
}
