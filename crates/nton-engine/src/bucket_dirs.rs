//! S3 on this machine: each bucket a Distributed Map reads or writes is a directory, and an
//! object `s3://bucket/a/b.json` is the file `<dir>/a/b.json`. `nton run --s3-bucket
//! BUCKET=DIR` gives the mapping; a bucket without one is refused before the run starts when
//! the definition names it, and fails the state (`States.ItemReaderFailed` or
//! `States.ResultWriterFailed`) when it comes from the input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::asl::{ObjectStore, ObjectSummary};

/// Buckets mapped to directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketDirs {
    dirs: BTreeMap<String, PathBuf>,
}

impl BucketDirs {
    /// Checks each bucket's name (S3's naming rules) and that its directory is absolute.
    pub fn new(dirs: BTreeMap<String, PathBuf>) -> Result<BucketDirs, String> {
        for (bucket, dir) in &dirs {
            nton_core::results::validate_bucket(bucket)?;
            if !dir.is_absolute() {
                return Err(format!(
                    "bucket {bucket}: {} is not an absolute directory",
                    dir.display()
                ));
            }
        }
        Ok(BucketDirs { dirs })
    }

    pub fn contains(&self, bucket: &str) -> bool {
        self.dirs.contains_key(bucket)
    }

    pub fn buckets(&self) -> impl Iterator<Item = &str> {
        self.dirs.keys().map(String::as_str)
    }

    fn dir(&self, bucket: &str) -> Result<&Path, String> {
        self.dirs.get(bucket).map(PathBuf::as_path).ok_or_else(|| {
            format!("s3://{bucket}: the bucket is not mapped to a directory (nton run --s3-bucket {bucket}=DIR)")
        })
    }

    /// The file of an object. A key must be a relative path of non-empty segments without
    /// `.` or `..`: S3 allows more, but those cannot name a file inside the directory.
    fn file(&self, bucket: &str, key: &str) -> Result<PathBuf, String> {
        let dir = self.dir(bucket)?;
        if key.is_empty() || key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(format!(
                "s3://{bucket}/{key}: a key mapped to a file must be segments separated by single '/', none empty, '.' or '..'"
            ));
        }
        Ok(dir.join(key))
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn walk(dir: &Path, key: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if key.is_empty() { name } else { format!("{key}/{name}") };
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else {
            out.push((key, entry.path()));
        }
    }
    Ok(())
}

impl ObjectStore for BucketDirs {
    fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        let file = self.file(bucket, key)?;
        std::fs::read(&file).map_err(|e| format!("s3://{bucket}/{key} ({}): {e}", file.display()))
    }

    fn list_objects(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectSummary>, String> {
        let dir = self.dir(bucket)?;
        let mut files = Vec::new();
        match walk(dir, "", &mut files) {
            Ok(()) => {}
            // A bucket with nothing written yet lists nothing, as an empty bucket does.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("s3://{bucket} ({}): {e}", dir.display())),
        }
        // S3 lists keys in UTF-8 binary order, which is byte order.
        files.sort();
        files
            .into_iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, path)| {
                let read =
                    |e: std::io::Error| format!("s3://{bucket}/{key} ({}): {e}", path.display());
                let body = std::fs::read(&path).map_err(read)?;
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(read)?;
                let last_modified = modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                // A single-part upload's ETag is the MD5 of its bytes, quoted.
                let etag = format!("\"{}\"", md5_hex(&body));
                Ok(ObjectSummary { key, etag, last_modified, size: body.len() as u64 })
            })
            .collect()
    }

    fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> Result<(), String> {
        let file = self.file(bucket, key)?;
        let fail = |e: std::io::Error| format!("s3://{bucket}/{key} ({}): {e}", file.display());
        if let Some(parent) = file.parent() {
            nton_core::fsutil::create_dir_all_idempotent(parent).map_err(fail)?;
        }
        nton_core::fsutil::write_atomic(&file, body).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> BucketDirs {
        BucketDirs::new(BTreeMap::from([("data-in".to_string(), dir.to_path_buf())])).unwrap()
    }

    #[test]
    fn objects_are_files_under_the_bucket_directory() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.put_object("data-in", "runs/a.json", b"[1]").unwrap();
        assert_eq!(std::fs::read(dir.path().join("runs/a.json")).unwrap(), b"[1]");
        assert_eq!(s.get_object("data-in", "runs/a.json").unwrap(), b"[1]");
    }

    #[test]
    fn a_listing_is_in_key_order_filtered_by_prefix_with_md5_etags() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        for key in ["p/b.txt", "p/a.txt", "q/c.txt", "p/sub/d.txt"] {
            s.put_object("data-in", key, key.as_bytes()).unwrap();
        }
        let listed = s.list_objects("data-in", "p/").unwrap();
        let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/a.txt", "p/b.txt", "p/sub/d.txt"]);
        // md5 of "p/a.txt", as `printf p/a.txt | md5sum` gives it.
        assert_eq!(listed[0].etag, "\"4d3cf5a31166bf2f0d7aea60c285c77e\"");
        assert_eq!(listed[0].size, 7);
        assert!(listed[0].last_modified > 1_600_000_000);
        assert_eq!(s.list_objects("data-in", "").unwrap().len(), 4);
    }

    #[test]
    fn unmapped_buckets_and_escaping_keys_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let e = s.get_object("other-bucket", "k").unwrap_err();
        assert!(
            e.contains("s3://other-bucket") && e.contains("--s3-bucket other-bucket=DIR"),
            "{e}"
        );
        for key in ["../x", "a//b", "/abs", ""] {
            let e = s.put_object("data-in", key, b"x").unwrap_err();
            assert!(e.contains("a key mapped to a file"), "{key}: {e}");
        }
        assert!(
            BucketDirs::new(BTreeMap::from([("Bad_Bucket".into(), dir.path().into())])).is_err()
        );
        assert!(BucketDirs::new(BTreeMap::from([("good-bucket".into(), "rel".into())])).is_err());
    }
}
