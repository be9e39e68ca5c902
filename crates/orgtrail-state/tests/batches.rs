//! The lake batch journal: claims, commits with the checkpoint, crash recovery, pruning, locks.

mod common;

use common::{add, open, rewrite_db};
use orgtrail_state::{Checkpoint, EventKey, SeenStats, StateError, StateStore, UnfinishedBatch};

fn keys(ids: &[&str], t: i64) -> Vec<EventKey> {
    ids.iter()
        .map(|id| EventKey {
            event_id: (*id).to_owned(),
            processed_at_ms: Some(t),
        })
        .collect()
}

/// Events with their own `processedAt`.
fn timed(events: &[(&str, i64)]) -> Vec<EventKey> {
    events
        .iter()
        .map(|(id, t)| EventKey {
            event_id: (*id).to_owned(),
            processed_at_ms: Some(*t),
        })
        .collect()
}

fn cp(seq: i64, cursor: &str, max: i64, ids: &[&str]) -> Checkpoint {
    Checkpoint {
        cursor: Some(cursor.to_owned()),
        max_processed_at_ms: Some(max),
        ids_at_max: ids.iter().map(|s| s.to_string()).collect(),
        page_seq: seq,
    }
}

fn files(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_batch_claims_new_ids_once_and_commits_with_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    assert_eq!(store.checkpoint(&s.id).await.unwrap(), None);

    // Repeats inside one batch are claimed once, in the order given.
    let claimed = store
        .begin_batch(
            &s.id,
            "b1",
            &keys(&["e2", "e1", "e2", "e3"], 1000),
            &files(&["t/f1"]),
        )
        .await
        .unwrap();
    assert_eq!(claimed, ["e2", "e1", "e3"]);
    // Not committed yet: the checkpoint has not moved, the batch is unfinished.
    assert_eq!(store.checkpoint(&s.id).await.unwrap(), None);
    assert_eq!(
        store.unfinished_batches(&s.id).await.unwrap(),
        [UnfinishedBatch {
            batch_id: "b1".into(),
            files: files(&["t/f1"]),
            committed: false
        }]
    );
    let c1 = cp(1, "c1", 1000, &["e3"]);
    store.commit_batch("b1", 3, Some(&c1)).await.unwrap();
    assert_eq!(
        store.checkpoint(&s.id).await.unwrap().unwrap().checkpoint,
        c1
    );
    assert!(store.unfinished_batches(&s.id).await.unwrap()[0].committed);
    store.finish_batch("b1").await.unwrap();
    store.finish_batch("b1").await.unwrap(); // idempotent
    assert!(store.unfinished_batches(&s.id).await.unwrap().is_empty());

    // A later batch gets only the events never claimed before (an event served again comes with
    // the processedAt it had).
    let claimed = store
        .begin_batch(&s.id, "b2", &timed(&[("e3", 1000), ("e4", 2000)]), &[])
        .await
        .unwrap();
    assert_eq!(claimed, ["e4"]);
    // A checkpoint that goes back is refused, and the batch stays uncommitted.
    let err = store
        .commit_batch("b2", 1, Some(&cp(0, "old", 2000, &[])))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StateError::StaleCheckpoint {
                stored: 1,
                given: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(!store.unfinished_batches(&s.id).await.unwrap()[0].committed);
    // A backfill commits without touching the checkpoint.
    store.commit_batch("b2", 1, None).await.unwrap();
    assert_eq!(
        store.checkpoint(&s.id).await.unwrap().unwrap().checkpoint,
        c1
    );
    store.finish_batch("b2").await.unwrap();

    assert_eq!(
        store.seen_stats(&s.id).await.unwrap(),
        SeenStats {
            seen_ids: 4,
            unfinished_batches: 0
        }
    );
    let h = store.source_health(&s.id).await.unwrap();
    assert!(h.last_data_at.is_some() && h.last_commit_at.is_some());

    // Ids are per source.
    let b = add(&store, "b").await;
    let claimed = store
        .begin_batch(&b.id, "b3", &keys(&["e1"], 1), &[])
        .await
        .unwrap();
    assert_eq!(claimed, ["e1"]);
}

#[tokio::test]
async fn bad_calls_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    assert!(matches!(
        store.commit_batch("nope", 0, None).await,
        Err(StateError::UnknownBatch(_))
    ));
    assert!(matches!(
        store.finish_batch("nope").await,
        Err(StateError::UnknownBatch(_))
    ));
    assert!(matches!(
        store
            .begin_batch("no-source", "b", &keys(&["e"], 1), &[])
            .await,
        Err(StateError::SourceNotFound(_))
    ));
    let err = store
        .begin_batch(&s.id, "b", &keys(&[""], 1), &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("empty id"), "{err}");
    // Finishing an uncommitted batch, or abandoning a committed one, is refused.
    store
        .begin_batch(&s.id, "b1", &keys(&["e1"], 1), &[])
        .await
        .unwrap();
    assert!(store.finish_batch("b1").await.is_err());
    store.commit_batch("b1", 1, None).await.unwrap();
    let err = store.abandon_batch("b1").await.unwrap_err();
    assert!(err.to_string().contains("publish"), "{err}");
}

#[tokio::test]
async fn an_abandoned_batch_releases_its_ids_and_a_reopened_store_sees_unfinished_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    store
        .begin_batch(&s.id, "crashed", &keys(&["e1", "e2"], 1), &files(&["x"]))
        .await
        .unwrap();
    store
        .save_checkpoint(&s.id, &cp(1, "c", 1, &[]))
        .await
        .unwrap();
    drop(store);
    // "Crash": a new handle finds the batch, abandons it; its ids can be claimed again.
    let store = open(&dir).await;
    let left = store.unfinished_batches(&s.id).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(!left[0].committed);
    assert!(matches!(
        store.remove_source(&s.id, false).await,
        Err(StateError::PendingData { batches: 1, .. })
    ));
    store.abandon_batch("crashed").await.unwrap();
    assert!(matches!(
        store.abandon_batch("crashed").await,
        Err(StateError::UnknownBatch(_))
    ));
    let claimed = store
        .begin_batch(&s.id, "again", &keys(&["e2", "e1"], 1), &[])
        .await
        .unwrap();
    assert_eq!(claimed, ["e2", "e1"]);
    // Forced removal drops everything of the source.
    store.remove_source(&s.id, true).await.unwrap();
    assert_eq!(store.seen_stats(&s.id).await.unwrap(), SeenStats::default());
}

#[tokio::test]
async fn prune_forgets_only_old_committed_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    store
        .begin_batch(&s.id, "old", &keys(&["old1"], 1_000), &[])
        .await
        .unwrap();
    store.commit_batch("old", 1, None).await.unwrap();
    store.finish_batch("old").await.unwrap();
    store
        .begin_batch(&s.id, "open", &keys(&["open1"], 1_000), &[])
        .await
        .unwrap();
    store
        .begin_batch(&s.id, "new", &keys(&["new1"], 5_000), &[])
        .await
        .unwrap();
    store.commit_batch("new", 1, None).await.unwrap();
    // Only old1: open1 is in an uncommitted batch, new1 is too recent.
    assert_eq!(store.prune_seen(2_000).await.unwrap(), 1);
    let claimed = store
        .begin_batch(
            &s.id,
            "x",
            &timed(&[("old1", 1_000), ("open1", 1_000), ("new1", 5_000)]),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claimed, ["old1"]);
}

#[tokio::test]
async fn concurrent_claims_from_two_handles_never_claim_an_id_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    let other = open(&dir).await; // e.g. a backfill in another process
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let st = if w % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let id = s.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for p in 0..10i64 {
                // Every writer offers the same 50 ids.
                let ids: Vec<String> = (0..5).map(|i| format!("p{p}-{i}")).collect();
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let batch = format!("w{w}-p{p}");
                mine.extend(
                    st.begin_batch(&id, &batch, &keys(&refs, p), &[])
                        .await
                        .unwrap(),
                );
                st.commit_batch(&batch, 0, None).await.unwrap();
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (50, 50));
}

#[tokio::test]
async fn the_writer_lock_is_exclusive_across_handles() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    let other = open(&dir).await;
    // The lock is an advisory file lock in `<data-dir>/locks`: while it is held, nobody else
    // (another handle, another process) can take it.
    let lock_file = || {
        let locks = dir.path().join("locks");
        let path = std::fs::read_dir(&locks)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::OpenOptions::new().write(true).open(path).unwrap()
    };
    let held = store.lock_writer(&s.id).await.unwrap();
    assert!(matches!(
        lock_file().try_lock(),
        Err(std::fs::TryLockError::WouldBlock)
    ));
    // Released on drop: another handle takes it, and then it is held again.
    drop(held);
    let again = other.lock_writer(&s.id).await.unwrap();
    assert!(matches!(
        lock_file().try_lock(),
        Err(std::fs::TryLockError::WouldBlock)
    ));
    drop(again);
    lock_file().try_lock().unwrap();
}

#[tokio::test]
async fn ids_claimed_before_version_4_stay_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    // What version 3 left behind: the id-keyed table with two claimed events.
    rewrite_db(
        store,
        format!(
            "DROP TABLE seen; \
         CREATE TABLE seen (source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE, \
           event_id TEXT NOT NULL, at_ms INTEGER NOT NULL, batch_seq INTEGER NOT NULL, \
           PRIMARY KEY (source_id, event_id)) WITHOUT ROWID; \
         INSERT INTO seen VALUES ('{id}', 'old-b', 2000, 0), ('{id}', 'old-a', 1000, 0); \
         DROP TABLE source_keys; \
         DELETE FROM schema_migrations WHERE version >= 4;",
            id = s.id
        ),
    )
    .await;
    let store = open(&dir).await;
    assert_eq!(store.schema_version().await.unwrap(), 5);
    let claimed = store
        .begin_batch(
            &s.id,
            "b",
            &timed(&[("old-a", 1000), ("new", 1500), ("old-b", 2000)]),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claimed, ["new"]);
    assert_eq!(store.seen_stats(&s.id).await.unwrap().seen_ids, 3);
}

#[tokio::test]
async fn an_id_served_with_two_processed_at_is_claimed_once_and_recognized_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    let both = timed(&[("x", 2000), ("y", 1500), ("x", 1000)]);
    let claimed = store.begin_batch(&s.id, "b1", &both, &[]).await.unwrap();
    assert_eq!(claimed, ["x", "y"]);
    store.commit_batch("b1", 2, None).await.unwrap();
    assert_eq!(store.seen_stats(&s.id).await.unwrap().seen_ids, 3);
    for (i, at) in [1000, 2000].into_iter().enumerate() {
        let again = timed(&[("x", at), ("z", 3000 + i as i64)]);
        let batch = format!("again{i}");
        let claimed = store.begin_batch(&s.id, &batch, &again, &[]).await.unwrap();
        assert_eq!(claimed, ["z"]);
        store.commit_batch(&batch, 1, None).await.unwrap();
    }
}

#[tokio::test]
async fn any_id_text_is_claimed_once_and_recognized_when_served_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    // Separators, quotes, escapes and non-ASCII in ids; an event without processedAt.
    let odd = [
        "a:b",
        ":",
        "1:2:3",
        "q\"uo\\te",
        "\"",
        "ends\\",
        "tab\t",
        "é🙂",
        "-1:x",
    ];
    let mut events = keys(&odd, 1_700_000_000_000);
    events.push(EventKey {
        event_id: "no-time".into(),
        processed_at_ms: None,
    });
    let claimed = store.begin_batch(&s.id, "b1", &events, &[]).await.unwrap();
    let mut all: Vec<&str> = odd.to_vec();
    all.push("no-time");
    assert_eq!(claimed, all);
    store
        .commit_batch("b1", all.len() as u64, None)
        .await
        .unwrap();
    // Served again (with a new one): only the new one is claimed.
    events.push(EventKey {
        event_id: "new:one".into(),
        processed_at_ms: Some(-5),
    });
    let claimed = store.begin_batch(&s.id, "b2", &events, &[]).await.unwrap();
    assert_eq!(claimed, ["new:one"]);
}
