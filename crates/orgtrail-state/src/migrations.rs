//! Versioned schema migrations, applied in order on open. Never edit a released migration: add one.

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial: sources, checkpoints, spool, batches, runs, source_health",
        sql: r#"
CREATE TABLE sources (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    name_key              TEXT NOT NULL UNIQUE,
    kind                  TEXT NOT NULL,
    org_id                TEXT NOT NULL,
    base_url              TEXT NOT NULL,
    key_ref               TEXT NOT NULL,
    key_value             TEXT,
    key_expires_at_ms     INTEGER,
    dropoff_alarm_minutes INTEGER,
    poll_interval_secs    INTEGER NOT NULL DEFAULT 60,
    paused                INTEGER NOT NULL DEFAULT 0,
    config_managed        INTEGER NOT NULL DEFAULT 0,
    created_at_ms         INTEGER NOT NULL,
    updated_at_ms         INTEGER NOT NULL,
    CHECK ((key_ref = 'stored') = (key_value IS NOT NULL))
);

CREATE TABLE checkpoints (
    source_id           TEXT PRIMARY KEY REFERENCES sources(id) ON DELETE CASCADE,
    cursor              TEXT,
    max_processed_at_ms INTEGER,
    ids_at_max          TEXT NOT NULL DEFAULT '[]',
    page_seq            INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL
);

CREATE TABLE batches (
    batch_id      TEXT PRIMARY KEY,
    source_id     TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    created_at_ms INTEGER NOT NULL,
    row_count     INTEGER NOT NULL,
    flushed_at_ms INTEGER
);
CREATE INDEX batches_pending ON batches(source_id, created_at_ms) WHERE flushed_at_ms IS NULL;

CREATE TABLE spool (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id       TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL,
    processed_at_ms INTEGER,
    received_at_ms  INTEGER NOT NULL,
    raw_json        TEXT,
    batch_id        TEXT REFERENCES batches(batch_id),
    UNIQUE (source_id, event_id)
);
CREATE INDEX spool_unbatched ON spool(source_id, seq) WHERE batch_id IS NULL;
CREATE INDEX spool_by_batch ON spool(batch_id, seq) WHERE batch_id IS NOT NULL;
CREATE INDEX spool_flushed_age ON spool(COALESCE(processed_at_ms, received_at_ms)) WHERE raw_json IS NULL;

CREATE TABLE runs (
    run_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id     TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER NOT NULL,
    pages         INTEGER NOT NULL,
    events        INTEGER NOT NULL,
    status        TEXT NOT NULL,
    error         TEXT
);
CREATE INDEX runs_by_source ON runs(source_id, run_id);

CREATE TABLE source_health (
    source_id          TEXT PRIMARY KEY REFERENCES sources(id) ON DELETE CASCADE,
    last_success_at_ms INTEGER,
    last_error         TEXT,
    last_error_at_ms   INTEGER,
    last_commit_at_ms  INTEGER,
    last_data_at_ms    INTEGER
);
"#,
    },
    Migration {
        version: 2,
        name: "alarms, alarm history, source activity (health and alarms, issue 6)",
        sql: crate::alarms::MIGRATION_2,
    },
    Migration {
        version: 3,
        name: "lake batch journal: seen ids + lake_batches replace the payload spool",
        // Version 2 is reserved for the alarm tables. Events that version 1 spooled but had not
        // flushed are not carried over (no release ever shipped version 1).
        sql: r#"
CREATE TABLE seen (
    source_id  TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    event_id   TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    -- lake_batches.seq (0: claimed before version 3); an integer keeps the rows small.
    batch_seq  INTEGER NOT NULL,
    PRIMARY KEY (source_id, event_id)
) WITHOUT ROWID;
INSERT INTO seen (source_id, event_id, at_ms, batch_seq)
    SELECT source_id, event_id, COALESCE(processed_at_ms, received_at_ms), 0
    FROM spool WHERE raw_json IS NULL;
DROP TABLE spool;
DROP TABLE batches;

CREATE TABLE lake_batches (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id        TEXT NOT NULL UNIQUE,
    source_id       TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    created_at_ms   INTEGER NOT NULL,
    files           TEXT NOT NULL,
    row_count       INTEGER,
    committed_at_ms INTEGER,
    finished_at_ms  INTEGER
);
CREATE INDEX lake_batches_unfinished ON lake_batches(source_id, created_at_ms) WHERE finished_at_ms IS NULL;
"#,
    },
    Migration {
        version: 4,
        name: "seen ids keyed by processedAt, then id: claims append instead of landing at random",
        // The stream is ordered by processedAt, so new keys go to the right edge of the B-tree: a
        // batch dirties a few pages instead of one page per id (random UUIDs), which rewrote most
        // of the table on every batch once it held a few hundred thousand ids.
        sql: r#"
CREATE TABLE seen_v4 (
    source_id  TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    -- processedAt (epoch ms) of the event; -1 for an event without one.
    at_ms      INTEGER NOT NULL,
    event_id   TEXT NOT NULL,
    batch_seq  INTEGER NOT NULL,
    PRIMARY KEY (source_id, at_ms, event_id)
) WITHOUT ROWID;
INSERT INTO seen_v4 (source_id, at_ms, event_id, batch_seq)
    SELECT source_id, at_ms, event_id, batch_seq FROM seen ORDER BY source_id, at_ms, event_id;
DROP TABLE seen;
ALTER TABLE seen_v4 RENAME TO seen;
"#,
    },
    Migration {
        version: 5,
        name: "seen ids keyed by a small source number instead of the source's id text",
        // Every claimed id repeated its source's 36-character id: two fifths of each row, written
        // twice (WAL and database) for every event collected.
        sql: r#"
CREATE TABLE source_keys (
    key        INTEGER PRIMARY KEY,
    source_id  TEXT NOT NULL UNIQUE REFERENCES sources(id) ON DELETE CASCADE
);
INSERT INTO source_keys (source_id) SELECT DISTINCT source_id FROM seen ORDER BY source_id;
CREATE TABLE seen_v5 (
    source_key INTEGER NOT NULL REFERENCES source_keys(key) ON DELETE CASCADE,
    -- processedAt (epoch ms) of the event; -1 for an event without one.
    at_ms      INTEGER NOT NULL,
    event_id   TEXT NOT NULL,
    batch_seq  INTEGER NOT NULL,
    PRIMARY KEY (source_key, at_ms, event_id)
) WITHOUT ROWID;
INSERT INTO seen_v5 (source_key, at_ms, event_id, batch_seq)
    SELECT k.key, s.at_ms, s.event_id, s.batch_seq
    FROM seen AS s JOIN source_keys AS k ON k.source_id = s.source_id
    ORDER BY k.key, s.at_ms, s.event_id;
DROP TABLE seen;
ALTER TABLE seen_v5 RENAME TO seen;
"#,
    },
];

/// The newest schema version this build knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}
