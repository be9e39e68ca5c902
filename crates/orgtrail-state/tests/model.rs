//! Model-based test of the exactly-once lake batch protocol: random sequences of batches that
//! crash at any step (after `begin_batch`, after writing the pending files, after `commit_batch`,
//! after publishing) and writers that recover what crashes left, as the engine does. Whatever the
//! sequence, once every event is offered again after the last crash (the engine refetches from the
//! checkpoint), every event is published exactly once and nothing uncommitted is ever visible.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use orgtrail_state::{EventKey, SqliteStore, StateStore};
use proptest::prelude::*;

/// How far a batch gets before the process dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Begun,
    Written,
    Committed,
    Published,
    Finished,
}

#[derive(Debug, Clone)]
enum Op {
    /// A batch with these event ids (a small universe, so repeats and overlaps happen), reaching
    /// this step; anything short of `Finished` is a crash (the store is reopened).
    Batch(Vec<u8>, Step),
}

fn op() -> impl Strategy<Value = Op> {
    let step = prop_oneof![
        1 => Just(Step::Begun),
        1 => Just(Step::Written),
        1 => Just(Step::Committed),
        1 => Just(Step::Published),
        6 => Just(Step::Finished),
    ];
    (prop::collection::vec(0u8..40, 0..8), step).prop_map(|(ids, s)| Op::Batch(ids, s))
}

/// The lake as the model sees it: pending (invisible) and published files, by path.
#[derive(Default)]
struct Lake {
    pending: BTreeMap<String, Vec<String>>,
    published: BTreeMap<String, Vec<String>>,
}

impl Lake {
    fn publish(&mut self, files: &[String]) {
        for f in files {
            if let Some(ids) = self.pending.remove(f) {
                self.published.insert(f.clone(), ids);
            }
        }
    }
    fn discard(&mut self, files: &[String]) {
        for f in files {
            self.pending.remove(f);
        }
    }
    fn visible(&self) -> Vec<String> {
        self.published.values().flatten().cloned().collect()
    }
}

/// The engine's recovery, under the writer lock.
async fn recover(store: &SqliteStore, source: &str, lake: &mut Lake) {
    let _lock = store.lock_writer(source).await.unwrap();
    for b in store.unfinished_batches(source).await.unwrap() {
        if b.committed {
            lake.publish(&b.files);
            store.finish_batch(&b.batch_id).await.unwrap();
        } else {
            lake.discard(&b.files);
            store.abandon_batch(&b.batch_id).await.unwrap();
        }
    }
}

/// One batch through the protocol, stopping after `until`.
async fn batch(
    store: &SqliteStore,
    source: &str,
    n: usize,
    ids: &[u8],
    until: Step,
    lake: &mut Lake,
) {
    recover(store, source, lake).await;
    let batch_id = format!("b{n}");
    let keys: Vec<EventKey> = ids
        .iter()
        .map(|i| EventKey {
            event_id: format!("evt-{i}"),
            processed_at_ms: Some(i64::from(*i)),
        })
        .collect();
    // Two files, as if the events spanned two hours; the claimed ids go to the first.
    let files = vec![format!("{batch_id}-h1"), format!("{batch_id}-h2")];
    let claimed = store
        .begin_batch(source, &batch_id, &keys, &files)
        .await
        .unwrap();
    if until == Step::Begun {
        return;
    }
    lake.pending.insert(files[0].clone(), claimed.clone());
    if until == Step::Written {
        return;
    }
    store
        .commit_batch(&batch_id, claimed.len() as u64, None)
        .await
        .unwrap();
    if until == Step::Committed {
        return;
    }
    lake.publish(&files);
    if until == Step::Published {
        return;
    }
    store.finish_batch(&batch_id).await.unwrap();
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    let source = common::add(&store, "model").await.id;
    let mut lake = Lake::default();
    let mut offered = BTreeSet::new();
    for (n, Op::Batch(ids, until)) in ops.into_iter().enumerate() {
        offered.extend(ids.iter().copied());
        batch(&store, &source, n, &ids, until, &mut lake).await;
        // Never a duplicate among visible rows, at any moment.
        let mut seen = lake.visible();
        let total = seen.len();
        seen.sort();
        seen.dedup();
        prop_assert_eq!(total, seen.len(), "a duplicate became visible");
        if until != Step::Finished {
            store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
        }
    }
    // After the last crash, the writer offers every event again (a refetch from the checkpoint).
    let all: Vec<u8> = offered.iter().copied().collect();
    batch(&store, &source, 10_000, &all, Step::Finished, &mut lake).await;
    let mut visible = lake.visible();
    visible.sort();
    let mut expected: Vec<String> = offered.iter().map(|i| format!("evt-{i}")).collect();
    expected.sort();
    prop_assert_eq!(visible, expected);
    prop_assert!(lake.pending.is_empty());
    prop_assert!(store.unfinished_batches(&source).await.unwrap().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_event_is_published_exactly_once_whatever_the_crashes(ops in prop::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
