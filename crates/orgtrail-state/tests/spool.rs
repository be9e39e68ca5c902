mod common;

use common::{add, open};
use orgtrail_state::{Checkpoint, CommitOutcome, SpoolEvent, StateError, StateStore};

fn ev(id: &str, t: i64) -> SpoolEvent {
    SpoolEvent {
        event_id: id.to_owned(),
        processed_at_ms: Some(t),
        raw_json: format!(r#"{{"id":"{id}","attributes":{{"processedAt":{t}}}}}"#),
    }
}

fn cp(seq: i64, cursor: &str, max: i64, ids: &[&str]) -> Checkpoint {
    Checkpoint {
        cursor: Some(cursor.to_owned()),
        max_processed_at_ms: Some(max),
        ids_at_max: ids.iter().map(|s| s.to_string()).collect(),
        page_seq: seq,
    }
}

#[tokio::test]
async fn commit_page_is_atomic_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    assert_eq!(store.checkpoint(&s.id).await.unwrap(), None);

    let page1 = vec![ev("e1", 1000), ev("e2", 2000), ev("e3", 2000)];
    let c1 = cp(1, "c1", 2000, &["e2", "e3"]);
    let out = store.commit_page(&s.id, &page1, &c1).await.unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 3,
            duplicates: 0
        }
    );
    assert_eq!(
        store.checkpoint(&s.id).await.unwrap().unwrap().checkpoint,
        c1
    );

    // Replaying the page (crash after commit, before the engine moved on) inserts nothing.
    let out = store.commit_page(&s.id, &page1, &c1).await.unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 0,
            duplicates: 3
        }
    );
    assert_eq!(
        store.checkpoint(&s.id).await.unwrap().unwrap().checkpoint,
        c1
    );
    assert_eq!(store.spool_stats(&s.id).await.unwrap().unbatched_rows, 3);

    // An overlapping page (from = max processedAt - overlap) spools only the new events; duplicates
    // inside one page count once.
    let page2 = vec![ev("e3", 2000), ev("e4", 3000), ev("e4", 3000)];
    let c2 = cp(2, "c2", 3000, &["e4"]);
    let out = store.commit_page(&s.id, &page2, &c2).await.unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 1,
            duplicates: 2
        }
    );
    assert_eq!(
        store.checkpoint(&s.id).await.unwrap().unwrap().checkpoint,
        c2
    );

    // A checkpoint that goes backwards is refused and changes nothing (atomicity: the new event of
    // that page is not spooled either).
    let err = store
        .commit_page(&s.id, &[ev("e5", 4000)], &cp(1, "old", 4000, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StateError::StaleCheckpoint {
                stored: 2,
                given: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        store.checkpoint(&s.id).await.unwrap().unwrap().checkpoint,
        c2
    );
    assert_eq!(store.spool_stats(&s.id).await.unwrap().unbatched_rows, 4);

    // An empty page can move the cursor alone; a null cursor is stored as given.
    let c3 = Checkpoint {
        cursor: None,
        ..cp(3, "", 3000, &["e4"])
    };
    assert_eq!(
        store.commit_page(&s.id, &[], &c3).await.unwrap(),
        CommitOutcome::default()
    );
    assert_eq!(
        store.checkpoint(&s.id).await.unwrap().unwrap().checkpoint,
        c3
    );

    // A page with an empty event id fails as a whole.
    let err = store
        .commit_page(
            &s.id,
            &[ev("e6", 5000), ev("", 5000)],
            &cp(4, "c4", 5000, &[]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::InvalidArgument(_)));
    assert_eq!(
        store.checkpoint(&s.id).await.unwrap().unwrap().checkpoint,
        c3
    );
    assert_eq!(store.spool_stats(&s.id).await.unwrap().unbatched_rows, 4);

    // Unknown source.
    assert!(matches!(
        store.commit_page("nope", &[], &c1).await,
        Err(StateError::SourceNotFound(_))
    ));

    // Sources are independent: the same event id in another source is new.
    let b = add(&store, "b").await;
    let out = store.commit_page(&b.id, &page1, &c1).await.unwrap();
    assert_eq!(out.inserted, 3);

    // Health: last commit / last data.
    let h = store.source_health(&s.id).await.unwrap();
    assert!(h.last_commit_at.is_some() && h.last_data_at.is_some());
}

#[tokio::test]
async fn batches_claim_flush_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    assert_eq!(store.claim_batch(&s.id, 10).await.unwrap(), None);
    assert!(matches!(
        store.claim_batch(&s.id, 0).await,
        Err(StateError::InvalidArgument(_))
    ));

    let page: Vec<_> = (0..5).map(|i| ev(&format!("e{i}"), 1000 + i)).collect();
    store
        .commit_page(&s.id, &page, &cp(1, "c", 1004, &["e4"]))
        .await
        .unwrap();
    let st = store.spool_stats(&s.id).await.unwrap();
    assert_eq!((st.unbatched_rows, st.pending_batches), (5, 0));
    assert!(st.oldest_unbatched_received_at.is_some());

    let b1 = store.claim_batch(&s.id, 3).await.unwrap().unwrap();
    assert_eq!(b1.events, page[..3].to_vec());
    assert_eq!(b1.source_id, s.id);
    let st = store.spool_stats(&s.id).await.unwrap();
    assert_eq!(
        (st.unbatched_rows, st.pending_batches, st.pending_batch_rows),
        (2, 1, 3)
    );

    // Crash before mark_flushed: after reopening, the same batch id and rows come back, whatever max_rows.
    store.close().await;
    drop(store);
    let store = open(&dir).await;
    let again = store.claim_batch(&s.id, 100).await.unwrap().unwrap();
    assert_eq!(again, b1);

    store.mark_flushed(&b1.batch_id).await.unwrap();
    store.mark_flushed(&b1.batch_id).await.unwrap(); // idempotent
    assert!(matches!(
        store.mark_flushed("no-such-batch").await,
        Err(StateError::UnknownBatch(_))
    ));

    let b2 = store.claim_batch(&s.id, 100).await.unwrap().unwrap();
    assert_ne!(b2.batch_id, b1.batch_id);
    assert_eq!(b2.events, page[3..].to_vec());
    store.mark_flushed(&b2.batch_id).await.unwrap();
    assert_eq!(store.claim_batch(&s.id, 100).await.unwrap(), None);
    assert_eq!(store.spool_stats(&s.id).await.unwrap(), Default::default());

    // Flushed ids still de-duplicate a replay days later.
    let out = store
        .commit_page(&s.id, &page, &cp(2, "c", 1004, &["e4"]))
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 0,
            duplicates: 5
        }
    );
    assert_eq!(store.claim_batch(&s.id, 100).await.unwrap(), None);
}

#[tokio::test]
async fn prune_seen_forgets_only_old_flushed_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    let old = vec![ev("old1", 1_000), ev("old2", 2_000)];
    store
        .commit_page(&s.id, &old, &cp(1, "c1", 2_000, &["old2"]))
        .await
        .unwrap();
    let b = store.claim_batch(&s.id, 100).await.unwrap().unwrap();
    store.mark_flushed(&b.batch_id).await.unwrap();
    // An old event not yet flushed, and a new flushed one.
    store
        .commit_page(
            &s.id,
            &[ev("old-unflushed", 500)],
            &cp(2, "c2", 2_000, &["old2"]),
        )
        .await
        .unwrap();

    assert_eq!(store.prune_seen(1_500).await.unwrap(), 1); // only old1
    let out = store
        .commit_page(
            &s.id,
            &[ev("old1", 1_000), ev("old2", 2_000)],
            &cp(3, "c3", 2_000, &[]),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 1,
            duplicates: 1
        }
    );
    // The unflushed event survived the prune and is still delivered.
    let b = store.claim_batch(&s.id, 100).await.unwrap().unwrap();
    let ids: Vec<_> = b.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, vec!["old-unflushed", "old1"]);
    store.mark_flushed(&b.batch_id).await.unwrap();
    // Everything older than "now" is flushed now and goes; fully pruned batches go too.
    assert_eq!(store.prune_seen(i64::MAX).await.unwrap(), 3);
    assert!(matches!(
        store.mark_flushed(&b.batch_id).await,
        Err(StateError::UnknownBatch(_))
    ));
}

#[tokio::test]
async fn remove_source_refuses_unflushed_data_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    store
        .commit_page(&s.id, &[ev("e1", 1)], &cp(1, "c", 1, &["e1"]))
        .await
        .unwrap();
    let err = store.remove_source(&s.id, false).await.unwrap_err();
    assert!(
        matches!(err, StateError::PendingData { rows: 1, .. }),
        "{err}"
    );
    let b = store.claim_batch(&s.id, 10).await.unwrap().unwrap();
    assert!(store.remove_source(&s.id, false).await.is_err()); // claimed, still not flushed
    store.mark_flushed(&b.batch_id).await.unwrap();
    store.remove_source(&s.id, false).await.unwrap();
    assert_eq!(store.checkpoint(&s.id).await.unwrap(), None);

    let s = add(&store, "a").await;
    store
        .commit_page(&s.id, &[ev("e1", 1)], &cp(1, "c", 1, &["e1"]))
        .await
        .unwrap();
    store.claim_batch(&s.id, 10).await.unwrap().unwrap();
    store.remove_source(&s.id, true).await.unwrap();
    assert!(store.list_sources().await.unwrap().is_empty());
    assert_eq!(store.spool_stats(&s.id).await.unwrap(), Default::default());
}

#[tokio::test]
async fn concurrent_commits_from_two_handles() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let s = add(&store, "a").await;
    let other = open(&dir).await; // e.g. the CLI in another process
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let st = if w % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let id = s.id.clone();
        tasks.push(tokio::spawn(async move {
            for p in 0..10i64 {
                let evs: Vec<_> = (0..5).map(|i| ev(&format!("w{w}-p{p}-{i}"), p)).collect();
                // page_seq only grows per writer; use the same seq so no writer is stale.
                st.commit_page(&id, &evs, &cp(0, "c", p, &[]))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.spool_stats(&s.id).await.unwrap().unbatched_rows, 200);
}
