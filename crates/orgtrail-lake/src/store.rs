//! Where the lake lives: a local directory or an S3-compatible bucket, through `object_store` for
//! both. Two things are added on top:
//!
//! - local writes are durable (temp file → fsync → rename → fsync directory; a batch's `.pending`
//!   files, which no reader lists, skip the temporary name); `object_store`'s local put renames but
//!   does not fsync;
//! - [`LakeView`], the store queries read through, applies compaction manifests while listing, so a
//!   reader never sees both a compacted file and the files it replaces (see `compact.rs`).

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use url::Url;

use crate::LakeError;

/// Suffix of a compaction manifest: `<name>.parquet.replaces` lists the files `<name>.parquet`
/// replaces.
pub const MANIFEST_SUFFIX: &str = ".replaces";

/// An opened lake location.
#[derive(Debug, Clone)]
pub struct Location {
    /// What the user gave, for messages (S3 credentials never appear in it: they come from the
    /// environment).
    pub display: String,
    /// The store, rooted at the filesystem root or the bucket.
    pub store: Arc<dyn ObjectStore>,
    /// `file:///` or `s3://bucket/`: what DataFusion resolves table URLs against.
    pub store_url: Url,
    /// The lake's root inside the store.
    pub root: Path,
    /// The lake directory, for a local lake.
    pub local_root: Option<PathBuf>,
}

impl Location {
    /// Opens `s3://bucket/prefix` (endpoint, region and credentials from the usual `AWS_*`
    /// variables, path-style requests) or a local path (created if missing).
    pub fn open(lake: &str) -> Result<Location, LakeError> {
        if let Some(rest) = lake.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LakeError::Config(format!(
                    "lake URL {lake} has no bucket: use s3://bucket/prefix"
                )));
            }
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            let endpoint_is_http = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .is_ok_and(|e| e.starts_with("http://"));
            if endpoint_is_http {
                builder = builder.with_allow_http(true);
            }
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region("us-east-1");
            }
            let store = builder.build().map_err(|e| {
                LakeError::Config(format!(
                    "cannot use {lake}: {e}. Set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for an \
                     S3-compatible store, AWS_ENDPOINT_URL"
                ))
            })?;
            let store_url = Url::parse(&format!("s3://{bucket}/"))
                .map_err(|e| LakeError::Config(format!("bad bucket name in {lake}: {e}")))?;
            return Ok(Location {
                display: lake.to_owned(),
                store: Arc::new(store),
                store_url,
                root: Path::from(prefix.trim_matches('/')),
                local_root: None,
            });
        }
        if lake.contains("://") && !lake.starts_with("file://") {
            return Err(LakeError::Config(format!(
                "unsupported lake URL {lake}: use a local path or s3://bucket/prefix"
            )));
        }
        let dir = PathBuf::from(lake.strip_prefix("file://").unwrap_or(lake));
        std::fs::create_dir_all(&dir).map_err(|e| {
            LakeError::Config(format!(
                "cannot create the lake directory {}: {e}",
                dir.display()
            ))
        })?;
        let dir = std::fs::canonicalize(&dir).map_err(|e| {
            LakeError::Config(format!(
                "cannot open the lake directory {}: {e}",
                dir.display()
            ))
        })?;
        let root = Path::from_absolute_path(&dir)
            .map_err(|e| LakeError::Config(format!("unusable lake path {}: {e}", dir.display())))?;
        Ok(Location {
            display: dir.display().to_string(),
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            // A constant URL: the parse cannot fail.
            store_url: Url::parse("file:///").map_err(|e| LakeError::Config(e.to_string()))?,
            root,
            local_root: Some(dir),
        })
    }

    /// The URL DataFusion lists a table under.
    pub fn table_url(&self, table: &str) -> String {
        let path = self.root.clone().join(table);
        format!("{}{}/", self.store_url, path)
    }

    /// Writes a whole object atomically and, on local disk, durably.
    pub async fn put(&self, path: &Path, bytes: Bytes) -> Result<(), LakeError> {
        self.put_as(path, bytes, durable_write).await
    }

    /// Writes a whole object that no reader lists (a `.pending` file, renamed once its batch is
    /// committed), durably on local disk, without the temporary file and rename of
    /// [`Location::put`]: a crash can leave it cut short only in a batch that was never committed.
    pub(crate) async fn put_unlisted(&self, path: &Path, bytes: Bytes) -> Result<(), LakeError> {
        self.put_as(path, bytes, durable_write_unlisted).await
    }

    async fn put_as(
        &self,
        path: &Path,
        bytes: Bytes,
        write: fn(&FsPath, &[u8]) -> std::io::Result<()>,
    ) -> Result<(), LakeError> {
        match &self.local_root {
            Some(_) => {
                let fs_path = PathBuf::from(format!("/{path}"));
                tokio::task::spawn_blocking(move || write(&fs_path, &bytes))
                    .await
                    .map_err(|e| LakeError::Io(format!("write task failed: {e}")))?
                    .map_err(|e| LakeError::Io(format!("cannot write {path}: {e}")))
            }
            None => {
                self.store.put(path, PutPayload::from(bytes)).await?;
                Ok(())
            }
        }
    }
}

impl Location {
    /// Renames an object (local: `rename` then fsync of the directory; S3: copy, then delete). A
    /// missing `from` is not an error: the rename happened before.
    pub async fn rename(&self, from: &Path, to: &Path) -> Result<(), LakeError> {
        match &self.local_root {
            Some(_) => {
                let (src, dst) = (
                    PathBuf::from(format!("/{from}")),
                    PathBuf::from(format!("/{to}")),
                );
                tokio::task::spawn_blocking(move || match std::fs::rename(&src, &dst) {
                    Ok(()) => {
                        let dir = dst.parent().unwrap_or(FsPath::new("/"));
                        std::fs::File::open(dir)?.sync_all()
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                })
                .await
                .map_err(|e| LakeError::Io(format!("rename task failed: {e}")))?
                .map_err(|e| LakeError::Io(format!("cannot rename {from} to {to}: {e}")))
            }
            None => match self.store.rename(from, to).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, path: &Path) -> Result<(), LakeError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The directory of `path`, created when missing (checked first: a `mkdir` that finds the directory
/// costs more than a `stat`).
fn dir_of(path: &FsPath) -> std::io::Result<&FsPath> {
    let dir = path.parent().unwrap_or(FsPath::new("/"));
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)?;
    }
    Ok(dir)
}

/// Creates (or truncates) `path` with `bytes`, flushed to disk.
fn write_synced(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Straight to its name → fsync → fsync directory, for an object no reader lists until it is
/// renamed (a batch's `.pending` file): a file a crash cuts short belongs to a batch that was not
/// committed, whose files the recovery deletes, so it needs no temporary name.
fn durable_write_unlisted(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let dir = dir_of(path)?;
    write_synced(path, bytes)?;
    std::fs::File::open(dir)?.sync_all()
}

/// temp file → fsync → rename → fsync directory: the file appears whole or not at all, and stays.
fn durable_write(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let dir = dir_of(path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        write_synced(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The store as queries see it: every listing hides temporary files, compaction manifests and the
/// files a finished compaction replaced.
#[derive(Debug)]
pub struct LakeView {
    inner: Arc<dyn ObjectStore>,
}

impl LakeView {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        LakeView { inner }
    }
}

impl fmt::Display for LakeView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LakeView({})", self.inner)
    }
}

/// Drops what readers must not see from one listing. Manifests are read only when present.
pub async fn visible(
    store: &dyn ObjectStore,
    objects: Vec<ObjectMeta>,
) -> object_store::Result<Vec<ObjectMeta>> {
    let mut hidden: Vec<Path> = Vec::new();
    for m in objects
        .iter()
        .filter(|m| m.location.as_ref().ends_with(MANIFEST_SUFFIX))
    {
        let output = Path::from(m.location.as_ref().trim_end_matches(MANIFEST_SUFFIX));
        if !objects.iter().any(|o| o.location == output) {
            continue; // compaction not finished: its inputs are still the truth
        }
        let bytes = store.get(&m.location).await?.bytes().await?;
        let names: Vec<String> =
            serde_json::from_slice(&bytes).map_err(|e| object_store::Error::Generic {
                store: "lake",
                source: format!("bad compaction manifest {}: {e}", m.location).into(),
            })?;
        let dir = parent(&m.location);
        hidden.extend(names.iter().map(|n| dir.clone().join(n.as_str())));
    }
    Ok(objects
        .into_iter()
        .filter(|o| {
            let name = o.location.filename().unwrap_or("");
            !name.starts_with('.')
                && !name.ends_with(MANIFEST_SUFFIX)
                && !name.ends_with(crate::batch::PENDING_SUFFIX)
                && !hidden.contains(&o.location)
        })
        .collect())
}

pub fn parent(p: &Path) -> Path {
    let parts: Vec<_> = p.parts().collect();
    Path::from_iter(parts[..parts.len().saturating_sub(1)].iter().cloned())
}

#[async_trait]
impl ObjectStore for LakeView {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let listing = self.inner.list(prefix);
        futures::stream::once(async move {
            let all: Vec<ObjectMeta> = listing.try_collect().await?;
            let shown = visible(inner.as_ref(), all).await?;
            Ok::<_, object_store::Error>(futures::stream::iter(shown.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects = visible(self.inner.as_ref(), result.objects).await?;
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
