//! Model-based test of the exactly-once spool: random sequences of commit_page / claim_batch /
//! lake write / mark_flushed / crash (drop and reopen the store) must deliver every committed event
//! in exactly one batch file, never twice, and a batch claimed before a crash must come back with
//! the same id and rows.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use orgtrail_state::{Batch, Checkpoint, SpoolEvent, SqliteStore, StateStore};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Commit a page with these event ids (from a small universe, so replays and overlaps happen).
    Commit(Vec<u8>),
    /// The flusher claims a batch of at most this many rows.
    Claim(usize),
    /// Write the claimed batch to the lake (file name = batch id) and mark it flushed.
    WriteAndMark,
    /// Write the claimed batch to the lake, then crash before marking it flushed.
    WriteOnly,
    /// Crash: drop the store without closing it and reopen it; the flusher forgets its batch.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(0u8..40, 0..8).prop_map(Op::Commit),
        3 => (1usize..6).prop_map(Op::Claim),
        2 => Just(Op::WriteAndMark),
        1 => Just(Op::WriteOnly),
        1 => Just(Op::Crash),
    ]
}

fn event(id: u8) -> SpoolEvent {
    SpoolEvent {
        event_id: format!("evt-{id}"),
        processed_at_ms: Some(1_700_000_000_000 + i64::from(id)),
        raw_json: format!(r#"{{"id":"evt-{id}"}}"#),
    }
}

#[derive(Default)]
struct Model {
    /// Every event id committed so far.
    committed: BTreeSet<String>,
    /// Committed ids not yet in a batch, in commit order.
    unbatched: VecDeque<String>,
    /// The store's claimed-but-unflushed batch, as last seen.
    pending: Option<Batch>,
    /// What the flusher holds in memory (lost on crash).
    in_hand: Option<Batch>,
    /// The lake: batch id (file name) -> event ids. Rewriting the same batch replaces the file.
    lake: BTreeMap<String, Vec<String>>,
    page_seq: i64,
}

fn ids(b: &Batch) -> Vec<String> {
    b.events.iter().map(|e| e.event_id.clone()).collect()
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    let source = common::add(&store, "model").await;
    let sid = source.id.clone();
    let mut m = Model::default();

    for op in ops {
        match op {
            Op::Commit(page) => {
                let events: Vec<SpoolEvent> = page.iter().map(|&i| event(i)).collect();
                m.page_seq += 1;
                let cp = Checkpoint {
                    cursor: Some(format!("cursor-{}", m.page_seq)),
                    max_processed_at_ms: events.iter().filter_map(|e| e.processed_at_ms).max(),
                    ids_at_max: vec![],
                    page_seq: m.page_seq,
                };
                let out = store.commit_page(&sid, &events, &cp).await.unwrap();
                let mut new = 0;
                for e in &events {
                    if m.committed.insert(e.event_id.clone()) {
                        m.unbatched.push_back(e.event_id.clone());
                        new += 1;
                    }
                }
                prop_assert_eq!(out.inserted, new);
                prop_assert_eq!(out.inserted + out.duplicates, events.len() as u64);
                prop_assert_eq!(
                    store.checkpoint(&sid).await.unwrap().unwrap().checkpoint,
                    cp
                );
            }
            Op::Claim(max) => {
                let got = store.claim_batch(&sid, max).await.unwrap();
                match (&m.pending, got) {
                    (Some(p), Some(b)) => {
                        // A pending batch comes back unchanged (same id, same rows, same order).
                        prop_assert_eq!(p, &b);
                        m.in_hand = Some(b);
                    }
                    (Some(_), None) => prop_assert!(false, "pending batch lost"),
                    (None, None) => prop_assert!(
                        m.unbatched.is_empty(),
                        "claim returned nothing with rows spooled"
                    ),
                    (None, Some(b)) => {
                        let expect: Vec<String> =
                            m.unbatched.drain(..max.min(m.unbatched.len())).collect();
                        prop_assert!(!expect.is_empty(), "claimed an empty batch");
                        prop_assert_eq!(ids(&b), expect);
                        prop_assert!(!m.lake.contains_key(&b.batch_id), "batch id reused");
                        m.pending = Some(b.clone());
                        m.in_hand = Some(b);
                    }
                }
            }
            Op::WriteAndMark | Op::WriteOnly => {
                if let Some(b) = m.in_hand.clone() {
                    m.lake.insert(b.batch_id.clone(), ids(&b));
                    if matches!(op, Op::WriteAndMark) {
                        store.mark_flushed(&b.batch_id).await.unwrap();
                        m.pending = None;
                        m.in_hand = None;
                    } else {
                        drop(store);
                        store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
                        m.in_hand = None;
                    }
                }
            }
            Op::Crash => {
                drop(store);
                store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
                m.in_hand = None;
            }
        }
        let st = store.spool_stats(&sid).await.unwrap();
        prop_assert_eq!(st.unbatched_rows, m.unbatched.len() as u64);
        prop_assert_eq!(st.pending_batches, u64::from(m.pending.is_some()));
    }

    // Drain: the flusher runs to completion (after one more crash for good measure).
    drop(store);
    let store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    while let Some(b) = store.claim_batch(&sid, 4).await.unwrap() {
        if let Some(p) = m.pending.take() {
            prop_assert_eq!(&p, &b);
        }
        m.lake.insert(b.batch_id.clone(), ids(&b));
        store.mark_flushed(&b.batch_id).await.unwrap();
    }

    // Every committed event is in exactly one lake file; nothing else is.
    let mut seen = BTreeSet::new();
    for (batch, evs) in &m.lake {
        for e in evs {
            prop_assert!(
                seen.insert(e.clone()),
                "event {} delivered twice (again in batch {})",
                e,
                batch
            );
        }
    }
    prop_assert_eq!(seen, m.committed);
    prop_assert_eq!(store.spool_stats(&sid).await.unwrap(), Default::default());
    store.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn spool_delivers_every_event_exactly_once(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
