mod common;

use common::{ORG, SECRET, add, open};
use orgtrail_state::{
    ExposeSecret, KeyInput, KeyRef, NewSource, RunRecord, RunStatus, SecretString, SourceUpdate,
    SqliteStore, StateError, StateStore, resolve_key,
};

#[tokio::test]
async fn migrations_on_fresh_and_reopened_db() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    assert_eq!(store.schema_version().await.unwrap(), 5);
    let s = add(&store, "Acme").await;
    store.close().await;
    drop(store);
    let store = open(&dir).await;
    assert_eq!(store.schema_version().await.unwrap(), 5);
    assert_eq!(store.get_source("acme").await.unwrap().id, s.id);
    // WAL mode leaves a -wal file next to the database while it is open.
    assert!(dir.path().join("state.db-wal").exists());
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let path = store.path().to_path_buf();
    store.close().await;
    drop(store);
    // Simulate a newer orgtrail having migrated the file.
    record_future_migration(&path).await;
    let err = SqliteStore::open_in_dir(dir.path()).await.unwrap_err();
    assert!(
        matches!(err, StateError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade orgtrail"), "{err}");
}

async fn record_future_migration(path: &std::path::Path) {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (99, 'future', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn db_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("data");
    let store = SqliteStore::open_in_dir(&sub).await.unwrap();
    add(&store, "Acme").await;
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let p = sub.join(f);
        if p.exists() {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
        }
    }
    let dmode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
    assert_eq!(dmode, 0o700);
    store.close().await;
    // An existing file readable by others is tightened on open.
    std::fs::set_permissions(sub.join("state.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::open_in_dir(&sub).await.unwrap();
    let mode = std::fs::metadata(sub.join("state.db"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    store.close().await;
}

#[tokio::test]
async fn source_crud() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let a = add(&store, "My Atlassian Event logs").await;
    assert_eq!(a.kind, "atlassian");
    assert_eq!(a.base_url, "https://api.atlassian.com");
    assert_eq!(a.poll_interval_secs, 60);
    assert!(!a.paused && !a.config_managed);
    assert_eq!(a.key_ref, KeyRef::Stored);
    assert!(uuid::Uuid::parse_str(&a.id).is_ok());

    // Duplicate names, case-insensitive (also for non-ASCII), are refused and named.
    let err = store
        .add_source(NewSource::new(
            "my atlassian EVENT logs",
            ORG,
            KeyInput::Env("K".into()),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::DuplicateName { .. }));
    assert!(err.to_string().contains("my atlassian EVENT logs"), "{err}");
    add(&store, "Ärger").await;
    assert!(matches!(
        store
            .add_source(NewSource::new("ärger", ORG, KeyInput::Env("K".into())))
            .await,
        Err(StateError::DuplicateName { .. })
    ));

    // Get by id, by name (any case); not found.
    assert_eq!(store.get_source(&a.id).await.unwrap().name, a.name);
    assert_eq!(
        store
            .get_source("MY ATLASSIAN EVENT LOGS")
            .await
            .unwrap()
            .id,
        a.id
    );
    let err = store.get_source("nope").await.unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");

    // List is ordered by name.
    let names: Vec<_> = store
        .list_sources()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        vec!["My Atlassian Event logs".to_owned(), "Ärger".to_owned()]
    );

    // Update: rename, key, alarm, url, expiry.
    let exp = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let u = store
        .update_source(
            &a.id,
            SourceUpdate {
                name: Some("Prod audit".into()),
                key: Some(KeyInput::Env("PROD_KEY".into())),
                dropoff_alarm_minutes: Some(Some(1440)),
                base_url: Some("http://127.0.0.1:8080/".into()),
                key_expires_at: Some(Some(exp)),
                ..SourceUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(u.name, "Prod audit");
    assert_eq!(u.key_ref, KeyRef::Env("PROD_KEY".into()));
    assert_eq!(u.dropoff_alarm_minutes, Some(1440));
    assert_eq!(u.base_url, "http://127.0.0.1:8080");
    assert_eq!(u.key_expires_at, Some(exp));
    assert!(u.updated_at >= a.updated_at);
    // Renaming onto another source's name is refused; renaming to a case variant of itself is fine.
    let err = store
        .update_source(
            &a.id,
            SourceUpdate {
                name: Some("ÄRGER".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::DuplicateName { .. }));
    store
        .update_source(
            &a.id,
            SourceUpdate {
                name: Some("PROD AUDIT".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Clearing an optional field.
    let u = store
        .update_source(
            &a.id,
            SourceUpdate {
                dropoff_alarm_minutes: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(u.dropoff_alarm_minutes, None);

    // Pause / resume.
    assert!(store.set_paused(&a.id, true).await.unwrap().paused);
    assert!(store.get_source(&a.id).await.unwrap().paused);
    assert!(!store.set_paused(&a.id, false).await.unwrap().paused);
    assert!(matches!(
        store.set_paused("missing", true).await,
        Err(StateError::SourceNotFound(_))
    ));

    // Remove.
    store.remove_source(&a.id, false).await.unwrap();
    assert!(store.find_source(&a.id).await.unwrap().is_none());
    assert!(matches!(
        store.remove_source(&a.id, false).await,
        Err(StateError::SourceNotFound(_))
    ));
    // The name is free again.
    add(&store, "Prod audit").await;
}

#[tokio::test]
async fn source_validation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let env = || KeyInput::Env("K".into());
    let bad = |n: NewSource| {
        let store = store.clone();
        async move { store.add_source(n).await.unwrap_err() }
    };
    for m in [0, 14, 43_201] {
        let mut n = NewSource::new("a", ORG, env());
        n.dropoff_alarm_minutes = Some(m);
        let e = bad(n).await;
        assert!(
            matches!(
                e,
                StateError::Invalid {
                    field: "dropoff_alarm",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("15 minutes..30 days"), "{e}");
    }
    for m in [15, 43_200] {
        let mut n = NewSource::new(format!("alarm {m}"), ORG, env());
        n.dropoff_alarm_minutes = Some(m);
        store.add_source(n).await.unwrap();
    }
    assert!(matches!(
        bad(NewSource::new("  ", ORG, env())).await,
        StateError::Invalid { field: "name", .. }
    ));
    assert!(matches!(
        bad(NewSource::new("a\u{7}", ORG, env())).await,
        StateError::Invalid { field: "name", .. }
    ));
    assert!(matches!(
        bad(NewSource::new("a", "", env())).await,
        StateError::Invalid {
            field: "org_id",
            ..
        }
    ));
    assert!(matches!(
        bad(NewSource::new("a", "a/b", env())).await,
        StateError::Invalid {
            field: "org_id",
            ..
        }
    ));
    let mut n = NewSource::new("a", ORG, env());
    n.base_url = Some("ftp://x".into());
    assert!(matches!(
        bad(n).await,
        StateError::Invalid {
            field: "base_url",
            ..
        }
    ));
    let mut n = NewSource::new("a", ORG, env());
    n.poll_interval_secs = Some(0);
    assert!(matches!(
        bad(n).await,
        StateError::Invalid {
            field: "poll_interval",
            ..
        }
    ));
    assert!(matches!(
        bad(NewSource::new("a", ORG, KeyInput::Env("1BAD".into()))).await,
        StateError::Invalid {
            field: "api_key",
            ..
        }
    ));
    assert!(matches!(
        bad(NewSource::new(
            "a",
            ORG,
            KeyInput::Value(SecretString::from("  "))
        ))
        .await,
        StateError::Invalid {
            field: "api_key",
            ..
        }
    ));
    // An org id that is not a UUID is only warned about.
    let s = store
        .add_source(NewSource::new("legacy org", "my-org-123", env()))
        .await
        .unwrap();
    assert_eq!(s.org_id, "my-org-123");
    assert!(!orgtrail_state::org_id_looks_valid("my-org-123"));
    assert!(orgtrail_state::org_id_looks_valid(ORG));
    // Names are trimmed.
    let s = store
        .add_source(NewSource::new("  padded  ", ORG, env()))
        .await
        .unwrap();
    assert_eq!(s.name, "padded");
}

#[tokio::test]
async fn secrets_resolve_by_env_file_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;

    let stored = add(&store, "stored").await;
    assert_eq!(resolve_key(&stored).unwrap().expose_secret(), SECRET);
    // Reopened from disk, still resolvable.
    let stored = store.get_source("stored").await.unwrap();
    assert_eq!(resolve_key(&stored).unwrap().expose_secret(), SECRET);

    let var = "ORGTRAIL_STATE_TEST_KEY_7F3A";
    // `set_var` is unsafe in edition 2024 (and unsafe code is forbidden): use a variable that is set.
    let path_var = "PATH";
    let env_src = store
        .add_source(NewSource::new("env", ORG, KeyInput::Env(path_var.into())))
        .await
        .unwrap();
    assert_eq!(
        resolve_key(&env_src).unwrap().expose_secret(),
        std::env::var(path_var).unwrap().trim()
    );
    let missing = store
        .add_source(NewSource::new(
            "env missing",
            ORG,
            KeyInput::Env(var.into()),
        ))
        .await
        .unwrap();
    let e = resolve_key(&missing).unwrap_err();
    assert!(matches!(e, StateError::KeyUnavailable { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("env:{var}")) && msg.contains("not set"),
        "{msg}"
    );

    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, format!("{SECRET}\n")).unwrap();
    let file_src = store
        .add_source(NewSource::new(
            "file",
            ORG,
            KeyInput::File(key_file.clone()),
        ))
        .await
        .unwrap();
    assert_eq!(resolve_key(&file_src).unwrap().expose_secret(), SECRET);
    let gone = dir.path().join("nope.txt");
    let file_missing = store
        .add_source(NewSource::new(
            "file missing",
            ORG,
            KeyInput::File(gone.clone()),
        ))
        .await
        .unwrap();
    let msg = resolve_key(&file_missing).unwrap_err().to_string();
    assert!(msg.contains(&format!("file:{}", gone.display())), "{msg}");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    let file_empty = store
        .add_source(NewSource::new("file empty", ORG, KeyInput::File(empty)))
        .await
        .unwrap();
    assert!(
        resolve_key(&file_empty)
            .unwrap_err()
            .to_string()
            .contains("empty")
    );

    // Switching from stored to a reference drops the stored value.
    let s = store
        .update_source(
            &stored.id,
            SourceUpdate {
                key: Some(KeyInput::File(key_file)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(s.key_ref, KeyRef::File(dir.path().join("key.txt")));
    assert_eq!(resolve_key(&s).unwrap().expose_secret(), SECRET);
}

#[tokio::test]
async fn keys_never_leak_in_debug_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "leaky?").await;
    let input = KeyInput::Value(SecretString::from(SECRET));
    let new = NewSource::new("x", ORG, input.clone());
    let upd = SourceUpdate {
        key: Some(input.clone()),
        ..Default::default()
    };
    let all_sources = store.list_sources().await.unwrap();
    let texts = vec![
        format!("{s:?}"),
        format!("{s:#?}"),
        format!("{input:?}"),
        format!("{new:?}"),
        format!("{upd:?}"),
        format!("{all_sources:?}"),
        format!("{store:?}"),
        format!("{:?}", resolve_key(&s).unwrap()),
        format!("{}", s.key_ref),
    ];
    // Every error a key could flow into.
    let mut errors: Vec<StateError> = Vec::new();
    errors.push(
        store
            .add_source(NewSource::new("LEAKY?", ORG, input.clone()))
            .await
            .unwrap_err(),
    );
    errors.push(
        store
            .add_source(NewSource::new(
                "bad key",
                ORG,
                KeyInput::Value(SecretString::from(format!("{SECRET} x"))),
            ))
            .await
            .unwrap_err(),
    );
    let mut n = NewSource::new("bad alarm", ORG, input.clone());
    n.dropoff_alarm_minutes = Some(1);
    errors.push(store.add_source(n).await.unwrap_err());
    // A key file that is too big, not UTF-8, etc.
    let big = dir.path().join("big");
    std::fs::write(&big, SECRET.repeat(5000)).unwrap();
    let b = store
        .add_source(NewSource::new("big", ORG, KeyInput::File(big)))
        .await
        .unwrap();
    errors.push(resolve_key(&b).unwrap_err());
    let cfg = format!("[[source]]\nname = \"c\"\norg_id = \"{ORG}\"\napi_key = \"{SECRET}\"\n");
    errors.push(orgtrail_state::parse_config("orgtrail.toml", &cfg).unwrap_err());
    let cfg = format!("[[source]]\nname = \"c\"\norg_id = \"{ORG}\"\napi_key = \"{SECRET}\n");
    errors.push(orgtrail_state::parse_config("orgtrail.toml", &cfg).unwrap_err());
    let cfg =
        format!("[[source]]\nname = \"c\"\norg_id = \"{ORG}\"\napi_key = {{ v = \"{SECRET}\" }}\n");
    errors.push(orgtrail_state::parse_config("orgtrail.toml", &cfg).unwrap_err());
    for e in &errors {
        let t = format!("{e} {e:?}");
        assert!(
            !t.contains(SECRET) && !t.contains("super-secret"),
            "leak: {t}"
        );
    }
    for t in &texts {
        assert!(
            !t.contains(SECRET) && !t.contains("super-secret"),
            "leak: {t}"
        );
    }
}

#[tokio::test]
async fn runs_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    assert_eq!(
        store.source_health(&s.id).await.unwrap(),
        Default::default()
    );
    let t = |sec| jiff::Timestamp::from_second(sec).unwrap();
    let ok = RunRecord {
        source_id: s.id.clone(),
        started_at: t(1_700_000_000),
        ended_at: t(1_700_000_010),
        pages: 3,
        events: 250,
        status: RunStatus::Success,
        error: None,
    };
    store.record_run(&ok).await.unwrap();
    let failed = RunRecord {
        started_at: t(1_700_000_100),
        ended_at: t(1_700_000_101),
        pages: 0,
        events: 0,
        status: RunStatus::Failed,
        error: Some("HTTP 401 from the events-stream endpoint: key expired?".into()),
        ..ok.clone()
    };
    store.record_run(&failed).await.unwrap();
    let runs = store.recent_runs(&s.id, 10).await.unwrap();
    assert_eq!(runs, vec![failed.clone(), ok.clone()]);
    assert_eq!(
        store.recent_runs(&s.id, 1).await.unwrap(),
        vec![failed.clone()]
    );
    let h = store.source_health(&s.id).await.unwrap();
    assert_eq!(h.last_success_at, Some(t(1_700_000_010)));
    assert_eq!(h.last_error_at, Some(t(1_700_000_101)));
    assert!(h.last_error.unwrap().contains("401"));
    store.record_success(&s.id, t(1_700_000_200)).await.unwrap();
    store
        .record_error(&s.id, t(1_700_000_300), "key file missing")
        .await
        .unwrap();
    let h = store.source_health(&s.id).await.unwrap();
    assert_eq!(h.last_success_at, Some(t(1_700_000_200)));
    assert_eq!(h.last_error.as_deref(), Some("key file missing"));
    // A success earlier than the recorded one does not move it back.
    store.record_success(&s.id, t(1_600_000_000)).await.unwrap();
    assert_eq!(
        store.source_health(&s.id).await.unwrap().last_success_at,
        Some(t(1_700_000_200))
    );
    assert!(matches!(
        store
            .record_run(&RunRecord {
                source_id: "x".into(),
                ..ok
            })
            .await,
        Err(StateError::SourceNotFound(_))
    ));
    assert!(matches!(
        store.source_health("x").await,
        Err(StateError::SourceNotFound(_))
    ));
}
