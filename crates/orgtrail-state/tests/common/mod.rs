#![allow(dead_code)]

use orgtrail_state::{KeyInput, NewSource, SecretString, Source, SqliteStore, StateStore};

pub const ORG: &str = "2f8c1a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
pub const SECRET: &str = "ATATT3xFfGF0-super-secret-key-value-123";

pub async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open_in_dir(dir.path())
        .await
        .expect("open store")
}

pub async fn add(store: &SqliteStore, name: &str) -> Source {
    store
        .add_source(NewSource::new(
            name,
            ORG,
            KeyInput::Value(SecretString::from(SECRET)),
        ))
        .await
        .expect("add source")
}

/// Closes `store` and runs `sql` on its database file directly (to build what an older version or
/// another build left behind).
pub async fn rewrite_db(store: SqliteStore, sql: String) {
    use sqlx::ConnectOptions;
    let path = store.path().to_path_buf();
    store.close().await;
    drop(store);
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
}
