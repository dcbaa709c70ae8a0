//! Where snapshots live: a local directory by default, or S3, GCS or Azure
//! Blob Storage through `object_store`, chosen by the location's URL scheme.
//!
//! Layout: `ROOT/PROFILE/SNAPSHOT_ID/part-*.parquet` and, written last,
//! `ROOT/PROFILE/SNAPSHOT_ID/manifest.dsse.json`. Every object is written with
//! one atomic put (a local write goes to a staging file and is renamed), so a
//! reader sees a whole object or none; a snapshot directory without a manifest
//! is an interrupted snapshot, which [`Archive::remove_snapshot`] cleans up.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

use crate::manifest::MANIFEST_NAME;

/// Why a storage operation failed: retry later unless the location is wrong.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The location is not a directory path or a supported URL: fix it.
    #[error("archive location `{location}` is not usable: {why}")]
    Location {
        /// The location as given.
        location: String,
        /// What was wrong.
        why: String,
    },
    /// Reading or writing an object failed.
    #[error("{what} {object} failed: {source}")]
    Object {
        /// `reading`, `writing`, `listing`, `deleting`.
        what: &'static str,
        /// The object or prefix.
        object: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A local directory operation failed.
    #[error("{what} {path} failed: {source}")]
    Local {
        /// What was being done.
        what: &'static str,
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether the object read does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::Object { source: object_store::Error::NotFound { .. }, .. })
    }
}

/// A snapshot directory found in the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotDir {
    /// The snapshot id (the directory name).
    pub id: String,
    /// Whether its manifest exists (it may still fail verification).
    pub has_manifest: bool,
}

/// The archive: a store and the root path inside it.
#[derive(Clone, Debug)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The local root directory, when the store is a local directory: lets
    /// cleanup remove staging files that the store's listing hides.
    local_root: Option<PathBuf>,
    location: String,
}

const REMOTE_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss", "https"];

/// Prefixes of the environment variables the object store builders read,
/// as each builder's own `from_env` documents them.
const CLOUD_PREFIXES: &[&str] = &["AWS_", "GOOGLE_", "AZURE_"];
/// Tidemark's own prefix for object store options: `TIDEMARK_OBJECT_STORE_X`
/// sets option `x`, and wins over the cloud's variable for the same option.
pub const OBJECT_STORE_PREFIX: &str = "TIDEMARK_OBJECT_STORE_";

/// The object store options taken from `env`: variables named `AWS_*`,
/// `GOOGLE_*` or `AZURE_*` (upper case, as set), passed as they are; then
/// `TIDEMARK_OBJECT_STORE_*`, prefix removed. Names are lowercased, as the
/// builders expect, and each builder ignores the options it does not know.
/// Everything else is left out: the builders also accept unprefixed aliases
/// (`endpoint`, `token`, `bucket`, `allow_http`, ...), so passing the whole
/// environment let an unrelated `ENDPOINT` or `ALLOW_HTTP` in the pod decide
/// where patient snapshots go and whether they travel in the clear.
/// Variables that are not UTF-8 are skipped.
pub fn store_options(env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>) -> Vec<(String, String)> {
    let (mut cloud, mut ours) = (Vec::new(), Vec::new());
    for (name, value) in env {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else { continue };
        if let Some(option) = name.strip_prefix(OBJECT_STORE_PREFIX).filter(|o| !o.is_empty()) {
            ours.push((option.to_ascii_lowercase(), value.to_owned()));
        } else if CLOUD_PREFIXES.iter().any(|p| name.starts_with(p)) {
            cloud.push((name.to_ascii_lowercase(), value.to_owned()));
        }
    }
    // Later options override earlier ones in the builders: ours win.
    cloud.sort();
    ours.sort();
    cloud.extend(ours);
    cloud
}

/// The directory a local location names (a path or `file://`), or None for
/// an object store URL.
fn local_dir(location: &str) -> Option<PathBuf> {
    match location.split_once("://") {
        None => Some(PathBuf::from(location)),
        Some(("file", rest)) => Some(PathBuf::from(rest)),
        Some(_) => None,
    }
}

impl Archive {
    /// Opens `location`: a directory path (created if missing), `file:///dir`,
    /// or `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`
    /// configured from the process environment as [`store_options`] selects.
    ///
    /// # Errors
    /// [`StorageError::Location`] for an unsupported or malformed location;
    /// [`StorageError::Local`] if the directory cannot be created.
    pub fn open(location: &str) -> Result<Self, StorageError> {
        Self::open_with_env(location, std::env::vars_os())
    }

    /// [`Archive::open`] for readers: a local directory must exist already
    /// (a mistyped path is an error that says so, and leaves no empty
    /// directory behind).
    ///
    /// # Errors
    /// As [`Archive::open`], and [`StorageError::Location`] when the
    /// directory does not exist or is not a directory.
    pub fn open_existing(location: &str) -> Result<Self, StorageError> {
        if let Some(dir) = local_dir(location)
            && !dir.is_dir()
        {
            let why = if dir.exists() { "it is not a directory" } else { "there is no such directory" };
            return Err(StorageError::Location { location: location.to_owned(), why: why.into() });
        }
        Self::open(location)
    }

    /// [`Archive::open`] with the environment given: what tests and
    /// embedders use instead of the process's.
    ///
    /// # Errors
    /// As [`Archive::open`].
    pub fn open_with_env(
        location: &str,
        env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Result<Self, StorageError> {
        let bad = |why: String| StorageError::Location { location: location.to_owned(), why };
        if let Some((scheme, _)) = location.split_once("://")
            && scheme != "file"
            && !REMOTE_SCHEMES.contains(&scheme)
        {
            return Err(bad(format!("unknown scheme `{scheme}://` (use a directory, file://, s3://, gs:// or az://)")));
        }
        if let Some(dir) = local_dir(location) {
            if dir.as_os_str().is_empty() {
                return Err(bad("the directory is empty".into()));
            }
            std::fs::create_dir_all(&dir).map_err(|source| StorageError::Local {
                what: "creating the archive directory",
                path: dir.display().to_string(),
                source,
            })?;
            let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?;
            return Ok(Self {
                store: Arc::new(store),
                root: Path::default(),
                local_root: Some(dir),
                location: location.to_owned(),
            });
        }
        let url = url::Url::parse(location).map_err(|e| bad(e.to_string()))?;
        let (store, root) = object_store::parse_url_opts(&url, store_options(env)).map_err(|e| bad(e.to_string()))?;
        Ok(Self { store: Arc::from(store), root, local_root: None, location: location.to_owned() })
    }

    /// The location as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Where an object is for other readers (pyarrow, DuckDB, Spark): the
    /// absolute path of a local archive's file, or the URL of a remote one.
    pub fn object_location(&self, profile: &str, snapshot: &str, name: &str) -> String {
        match &self.local_root {
            Some(dir) => {
                let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
                dir.join(profile).join(snapshot).join(name).display().to_string()
            }
            None => format!("{}/{profile}/{snapshot}/{name}", self.location.trim_end_matches('/')),
        }
    }

    fn path(&self, parts: &[&str]) -> Path {
        parts.iter().fold(self.root.clone(), |p, part| p.clone().join(*part))
    }

    /// Writes one object atomically at `profile/snapshot/name`.
    ///
    /// # Errors
    /// [`StorageError::Object`]; retry later.
    pub async fn put(&self, profile: &str, snapshot: &str, name: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = self.path(&[profile, snapshot, name]);
        self.store.put(&path, PutPayload::from_bytes(bytes)).await.map(|_| ()).map_err(|source| StorageError::Object {
            what: "writing",
            object: path.to_string(),
            source,
        })
    }

    /// Reads one object whole.
    ///
    /// # Errors
    /// [`StorageError::Object`] (including a missing object).
    pub async fn get(&self, profile: &str, snapshot: &str, name: &str) -> Result<Bytes, StorageError> {
        let path = self.path(&[profile, snapshot, name]);
        let read = async { self.store.get(&path).await?.bytes().await };
        read.await.map_err(|source| StorageError::Object { what: "reading", object: path.to_string(), source })
    }

    /// Writes one object at `profile/snapshot/name` only if nothing is there
    /// yet: two writers of the same name cannot both win.
    ///
    /// # Errors
    /// [`StorageError::Object`], including `AlreadyExists`, or a store that
    /// cannot put conditionally.
    pub async fn put_new(&self, profile: &str, snapshot: &str, name: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = self.path(&[profile, snapshot, name]);
        let options = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
        let put = self.store.put_opts(&path, bytes.into(), options).await;
        put.map(|_| ()).map_err(|source| StorageError::Object { what: "writing", object: path.to_string(), source })
    }

    /// Streams one object into `sink`, at most `limit` bytes: memory holds
    /// one network chunk whatever the object's size, and an object someone
    /// grew to gigabytes is not downloaded past the limit. Returns the bytes
    /// copied and whether the object holds more.
    ///
    /// # Errors
    /// [`StorageError::Object`] (including a missing object);
    /// [`StorageError::Local`] if `sink` fails.
    pub async fn copy_to(
        &self,
        profile: &str,
        snapshot: &str,
        name: &str,
        limit: u64,
        sink: &mut impl std::io::Write,
    ) -> Result<(u64, bool), StorageError> {
        let path = self.path(&[profile, snapshot, name]);
        let object = path.to_string();
        let read = |source| StorageError::Object { what: "reading", object: object.clone(), source };
        let mut stream = self.store.get(&path).await.map_err(read)?.into_stream();
        let mut copied = 0u64;
        while let Some(chunk) = stream.try_next().await.map_err(read)? {
            let take = usize::try_from(limit - copied).map_or(chunk.len(), |room| room.min(chunk.len()));
            sink.write_all(&chunk[..take]).map_err(|source| StorageError::Local {
                what: "spooling",
                path: object.clone(),
                source,
            })?;
            copied += take as u64;
            if take < chunk.len() {
                return Ok((copied, true));
            }
        }
        Ok((copied, false))
    }

    /// The snapshots of `profile`, oldest first (ids are UUIDv7).
    ///
    /// # Errors
    /// [`StorageError::Object`]; retry later.
    pub async fn list_snapshots(&self, profile: &str) -> Result<Vec<SnapshotDir>, StorageError> {
        let prefix = self.path(&[profile]);
        let listing = |source| StorageError::Object { what: "listing", object: prefix.to_string(), source };
        let dirs = self.store.list_with_delimiter(Some(&prefix)).await.map_err(listing)?;
        let mut out = Vec::new();
        for dir in dirs.common_prefixes {
            let Some(id) = dir.filename().map(str::to_owned) else { continue };
            let manifest = dir.clone().join(MANIFEST_NAME);
            let has_manifest = match self.store.head(&manifest).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(source) => {
                    return Err(StorageError::Object { what: "reading", object: manifest.to_string(), source });
                }
            };
            out.push(SnapshotDir { id, has_manifest });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The names of the objects directly inside `profile/snapshot`.
    ///
    /// # Errors
    /// [`StorageError::Object`]; retry later.
    pub async fn list_names(&self, profile: &str, snapshot: &str) -> Result<Vec<String>, StorageError> {
        let prefix = self.path(&[profile, snapshot]);
        let listing = |source| StorageError::Object { what: "listing", object: prefix.to_string(), source };
        let listed = self.store.list_with_delimiter(Some(&prefix)).await.map_err(listing)?;
        Ok(listed.objects.iter().filter_map(|o| o.location.filename().map(str::to_owned)).collect())
    }

    /// Deletes a snapshot: its manifest first (so it stops existing at once),
    /// then its parts, then (locally) the directory with any staging files a
    /// crash left behind.
    ///
    /// # Errors
    /// [`StorageError`]; what was deleted stays deleted, retrying finishes it.
    pub async fn remove_snapshot(&self, profile: &str, snapshot: &str) -> Result<(), StorageError> {
        let manifest = self.path(&[profile, snapshot, MANIFEST_NAME]);
        match self.store.delete(&manifest).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => return Err(StorageError::Object { what: "deleting", object: manifest.to_string(), source }),
        }
        let prefix = self.path(&[profile, snapshot]);
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| StorageError::Object { what: "listing", object: prefix.to_string(), source })?;
        for meta in objects {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(StorageError::Object { what: "deleting", object: meta.location.to_string(), source });
                }
            }
        }
        if let Some(root) = &self.local_root {
            let dir = root.join(profile).join(snapshot);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StorageError::Local {
                        what: "removing the snapshot directory",
                        path: dir.display().to_string(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn local_archive_lists_and_removes_snapshots_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path().to_str().unwrap()).unwrap();
        archive.put("identified", "s1", "part-0", Bytes::from_static(b"x")).await.unwrap();
        archive.put("identified", "s1", MANIFEST_NAME, Bytes::from_static(b"m")).await.unwrap();
        archive.put("identified", "s2", "part-0", Bytes::from_static(b"y")).await.unwrap();
        // A staging file as a crash mid-write leaves it.
        std::fs::write(dir.path().join("identified/s2/part-1#17"), b"partial").unwrap();
        let list = archive.list_snapshots("identified").await.unwrap();
        assert_eq!(
            list,
            vec![
                SnapshotDir { id: "s1".into(), has_manifest: true },
                SnapshotDir { id: "s2".into(), has_manifest: false }
            ]
        );
        assert_eq!(archive.get("identified", "s1", "part-0").await.unwrap(), Bytes::from_static(b"x"));
        archive.remove_snapshot("identified", "s2").await.unwrap();
        assert!(!dir.path().join("identified/s2").exists(), "leftovers are gone");
        assert_eq!(archive.list_snapshots("identified").await.unwrap().len(), 1);
        assert!(archive.list_snapshots("deidentified").await.unwrap().is_empty());
    }

    #[test]
    fn only_prefixed_variables_configure_the_object_store() {
        let env = [
            ("ENDPOINT", "http://elsewhere"),
            ("TOKEN", "t"),
            ("ALLOW_HTTP", "true"),
            ("aws_endpoint", "lowercase is not the convention"),
            ("AWS_REGION", "eu-west-1"),
            ("GOOGLE_SERVICE_ACCOUNT", "/sa.json"),
            ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
            ("TIDEMARK_OBJECT_STORE_ALLOW_HTTP", "true"),
            ("TIDEMARK_OBJECT_STORE_", "no option name"),
            ("TIDEMARK_ARCHIVE", "s3://b/p"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let opts = store_options(env);
        let want: Vec<(String, String)> = [
            ("aws_region", "eu-west-1"),
            ("azure_storage_account_name", "acct"),
            ("google_service_account", "/sa.json"),
            ("allow_http", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        assert_eq!(opts, want);
    }

    #[tokio::test]
    async fn copy_to_streams_and_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path().to_str().unwrap()).unwrap();
        archive.put("identified", "s1", "big", Bytes::from(vec![7u8; 100_000])).await.unwrap();
        let mut sink = Vec::new();
        assert_eq!(archive.copy_to("identified", "s1", "big", 1000, &mut sink).await.unwrap(), (1000, true));
        assert_eq!(sink.len(), 1000, "not a byte past the limit");
        sink.clear();
        assert_eq!(archive.copy_to("identified", "s1", "big", 100_000, &mut sink).await.unwrap(), (100_000, false));
        assert_eq!(sink, vec![7u8; 100_000]);
        let err = archive.copy_to("identified", "s1", "missing", 10, &mut sink).await.unwrap_err();
        assert!(err.to_string().contains("reading"), "{err}");
    }

    #[test]
    fn locations_are_checked() {
        let err = Archive::open("ftp://host/x").unwrap_err();
        assert!(err.to_string().contains("unknown scheme `ftp://`"), "{err}");
        assert!(Archive::open("").is_err());
    }
}
