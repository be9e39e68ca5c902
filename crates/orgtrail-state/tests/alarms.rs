mod common;

use common::{add, open, rewrite_db};
use jiff::{SignedDuration, Timestamp};
use orgtrail_state::{
    ACTIVITY_BUCKET_MS, ActivityDelta, AlarmKind, AlarmRecord, AlarmState, AlarmStore,
    NewAlarmEvent, StateError, StateStore,
};

fn record(source_id: &str, kind: AlarmKind, state: AlarmState, at: Timestamp) -> AlarmRecord {
    AlarmRecord {
        source_id: source_id.to_owned(),
        kind,
        state,
        since: at,
        evaluated_at: at,
        threshold_minutes: (kind == AlarmKind::NoData).then_some(15),
        armed_at: Some(at),
        last_data_at: None,
        stage: None,
        message: format!("{kind} is {state}"),
        remedy: Some("do something".into()),
    }
}

fn event(source_id: &str, kind: AlarmKind, from: AlarmState, to: AlarmState) -> NewAlarmEvent {
    NewAlarmEvent {
        source_id: source_id.to_owned(),
        source_name: "Acme".into(),
        kind,
        from,
        to,
        stage: Some("s1".into()),
        at: Timestamp::from_second(1_750_000_000).unwrap(),
        message: "went off".into(),
        remedy: None,
        notify: to == AlarmState::Alarm,
    }
}

#[tokio::test]
async fn alarms_and_transitions_round_trip_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "Acme").await;
    let t0 = Timestamp::from_second(1_750_000_000).unwrap();
    assert!(store.alarms(None).await.unwrap().is_empty());
    let recs = [
        record(&s.id, AlarmKind::NoData, AlarmState::InsufficientData, t0),
        record(&s.id, AlarmKind::Permissions, AlarmState::Ok, t0),
    ];
    let none = store.save_alarms(&s.id, &recs, &[], &[]).await.unwrap();
    assert!(none.is_empty());
    let mut got = store.alarms(Some(&s.id)).await.unwrap();
    got.sort_by_key(|a| a.kind);
    assert_eq!(got, recs);
    // A transition with the new state.
    let mut alarm = recs[1].clone();
    alarm.state = AlarmState::Alarm;
    let ev = event(
        &s.id,
        AlarmKind::Permissions,
        AlarmState::Ok,
        AlarmState::Alarm,
    );
    let recorded = store
        .save_alarms(
            &s.id,
            &[alarm.clone()],
            &[AlarmKind::NoData],
            std::slice::from_ref(&ev),
        )
        .await
        .unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].event, ev);
    assert_eq!(store.alarms(None).await.unwrap(), vec![alarm]);
    let history = store.alarm_events(Some(&s.id), 10).await.unwrap();
    assert_eq!(history, recorded);
    // Outbox: pending until written to the lake and notified.
    let pending = store.pending_alarm_events(t0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    store
        .mark_alarm_event(recorded[0].seq, Some(t0), None)
        .await
        .unwrap();
    assert_eq!(store.pending_alarm_events(t0, 10).await.unwrap().len(), 1);
    store
        .mark_alarm_event(recorded[0].seq, None, Some(t0))
        .await
        .unwrap();
    assert!(store.pending_alarm_events(t0, 10).await.unwrap().is_empty());
    let h = &store.alarm_events(None, 10).await.unwrap()[0];
    assert_eq!((h.lake_written_at, h.notified_at), (Some(t0), Some(t0)));
    // Unknown source: refused, nothing written.
    let err = store
        .save_alarms("nope", &[], &[], std::slice::from_ref(&ev))
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::SourceNotFound(_)), "{err}");
    assert_eq!(store.alarm_events(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn alarm_state_survives_reopen_and_removing_the_source_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "Acme").await;
    let t0 = Timestamp::from_second(1_750_000_000).unwrap();
    let rec = record(&s.id, AlarmKind::NoData, AlarmState::Alarm, t0);
    store
        .save_alarms(
            &s.id,
            std::slice::from_ref(&rec),
            &[],
            &[event(
                &s.id,
                AlarmKind::NoData,
                AlarmState::Ok,
                AlarmState::Alarm,
            )],
        )
        .await
        .unwrap();
    store.close().await;
    drop(store);
    let store = open(&dir).await;
    assert_eq!(store.alarms(Some(&s.id)).await.unwrap(), vec![rec]);
    store.remove_source(&s.id, false).await.unwrap();
    assert!(store.alarms(None).await.unwrap().is_empty());
    assert_eq!(store.alarm_events(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn activity_totals_and_windows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "Acme").await;
    assert_eq!(
        store.source_activity(&s.id).await.unwrap(),
        Default::default()
    );
    let t0 =
        Timestamp::from_millisecond(1_750_000_000_000 / ACTIVITY_BUCKET_MS * ACTIVITY_BUCKET_MS)
            .unwrap();
    let d = |events, failures, at: Timestamp| ActivityDelta {
        events,
        bytes: events * 100,
        rows: events - failures,
        failures,
        last_event_at: (events > 0).then_some(at),
        last_event_time: Some(at - SignedDuration::from_secs(5)),
        last_processed_at: Some(at - SignedDuration::from_secs(1)),
        caught_up_at: Some(at),
    };
    store
        .record_activity(&s.id, t0, &d(10, 0, t0))
        .await
        .unwrap();
    let t1 = t0 + SignedDuration::from_hours(2);
    store
        .record_activity(&s.id, t1, &d(5, 2, t1))
        .await
        .unwrap();
    // An empty delta changes nothing.
    store
        .record_activity(&s.id, t1, &ActivityDelta::default())
        .await
        .unwrap();
    let a = store.source_activity(&s.id).await.unwrap();
    assert_eq!(
        (
            a.events_total,
            a.bytes_total,
            a.rows_total,
            a.failures_total
        ),
        (15, 1500, 13, 2)
    );
    assert_eq!(a.last_event_at, Some(t1));
    assert_eq!(a.first_failure_at, Some(t1));
    assert_eq!(a.last_caught_up_at, Some(t1));
    let hour = store
        .activity_since(&s.id, t1 - SignedDuration::from_hours(1))
        .await
        .unwrap();
    assert_eq!((hour.events, hour.failures), (5, 2));
    let day = store
        .activity_since(&s.id, t1 - SignedDuration::from_hours(24))
        .await
        .unwrap();
    assert_eq!((day.events, day.bytes, day.rows), (15, 1500, 13));
    // Older data never moves the "last" times back.
    store
        .record_activity(&s.id, t0, &d(1, 1, t0))
        .await
        .unwrap();
    let a = store.source_activity(&s.id).await.unwrap();
    assert_eq!(a.last_event_at, Some(t1));
    assert_eq!(a.first_failure_at, Some(t1));
    // Unknown source.
    assert!(
        store
            .record_activity("nope", t0, &d(1, 0, t0))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_database_at_version_3_without_version_2_gets_the_alarm_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    // What a build with migrations 1 and 3 only leaves behind.
    rewrite_db(
        store,
        "DROP TABLE alarms; DROP TABLE alarm_events; DROP TABLE source_activity; \
         DROP TABLE source_activity_buckets; DELETE FROM schema_migrations WHERE version = 2;"
            .into(),
    )
    .await;
    let store = open(&dir).await;
    assert_eq!(store.schema_version().await.unwrap(), 5);
    let s = add(&store, "Acme").await;
    assert!(store.alarms(Some(&s.id)).await.unwrap().is_empty());
    assert_eq!(
        store.source_activity(&s.id).await.unwrap(),
        Default::default()
    );
}
