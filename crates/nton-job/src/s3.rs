//! Egress to S3: uploads a node's result files, each to `[prefix/]<wf>/<node>/results/<id>.json`.
//!
//! Uploads run [`UploadOptions::concurrency`] at a time (a node has tens to thousands of small
//! files: one at a time would spend the job waiting on round trips). Files from
//! [`UploadOptions::multipart_threshold`] up go as multipart uploads streamed from disk part by
//! part, so memory stays bounded whatever the file size. The SDK retries each request
//! (standard mode). Re-running egress writes the same keys with the same bytes: safe.

use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};
use nton_core::stage::{EgressItem, StageReport};

/// Attempts per request (the first plus retries) in the SDK's standard retry mode.
pub const MAX_ATTEMPTS: u32 = 4;

/// S3's smallest part (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// S3's most parts per upload.
const MAX_PARTS: u64 = 10_000;

/// How egress uploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadOptions {
    /// Uploads in flight at once.
    pub concurrency: usize,
    /// Files of this many bytes or more go up as multipart uploads.
    pub multipart_threshold: u64,
    /// Bytes per part (at least [`MIN_PART_SIZE`]; grown when a file would need more than
    /// 10,000 parts).
    pub part_size: u64,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            concurrency: 16,
            multipart_threshold: 8 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
        }
    }
}

/// One result failed to upload.
#[derive(Debug, thiserror::Error)]
#[error("egress of {} to s3://{bucket}/{key}: {message}", path.display())]
pub struct UploadError {
    pub bucket: String,
    pub key: String,
    pub path: std::path::PathBuf,
    pub message: String,
}

/// An S3 client from shared SDK config: standard retries, and path-style addressing when asked
/// (emulators such as moto serve buckets only by path).
pub fn client(config: &aws_config::SdkConfig, force_path_style: bool) -> Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(force_path_style)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .build();
    Client::from_conf(conf)
}

/// The object key of an item under an optional prefix.
pub fn object_key(prefix: Option<&str>, item_key: &str) -> String {
    match prefix {
        Some(prefix) => format!("{prefix}/{item_key}"),
        None => item_key.to_string(),
    }
}

/// Uploads every item; stops at the first failure (Batch retries the whole node).
pub async fn upload(
    client: &Client,
    bucket: &str,
    prefix: Option<&str>,
    items: &[EgressItem],
    options: &UploadOptions,
) -> Result<StageReport, UploadError> {
    futures::stream::iter(items)
        .map(|item| upload_one(client, bucket, prefix, item, options))
        .buffer_unordered(options.concurrency.max(1))
        .try_fold(StageReport::default(), |mut report, bytes| async move {
            report.add(bytes);
            Ok(report)
        })
        .await
}

async fn upload_one(
    client: &Client,
    bucket: &str,
    prefix: Option<&str>,
    item: &EgressItem,
    options: &UploadOptions,
) -> Result<u64, UploadError> {
    let key = object_key(prefix, &item.key);
    let fail = |message: String| UploadError {
        bucket: bucket.to_string(),
        key: key.clone(),
        path: item.path.clone(),
        message,
    };
    // The size now, not at listing time: the file is what gets sent.
    let len = tokio::fs::metadata(&item.path)
        .await
        .map_err(|err| fail(format!("reading {}: {err}", item.path.display())))?
        .len();
    if len >= options.multipart_threshold {
        upload_multipart(client, bucket, &key, &item.path, len, options).await.map_err(fail)?;
    } else {
        let body = ByteStream::read_from()
            .path(&item.path)
            .build()
            .await
            .map_err(|err| fail(format!("reading {}: {err}", item.path.display())))?;
        client
            .put_object()
            .bucket(bucket)
            .key(&key)
            .content_type("application/json")
            .content_length(len as i64)
            .body(body)
            .send()
            .await
            .map_err(|err| fail(sdk_message(err)))?;
    }
    tracing::debug!(key = %key, bytes = len, "uploaded");
    Ok(len)
}

/// Parts of `part_size` bytes (grown so there are at most 10,000), the last one shorter.
pub fn part_ranges(len: u64, part_size: u64) -> Vec<(u64, u64)> {
    let size = part_size.max(MIN_PART_SIZE).max(len.div_ceil(MAX_PARTS));
    let mut ranges = Vec::new();
    let mut offset = 0;
    while offset < len {
        let this = size.min(len - offset);
        ranges.push((offset, this));
        offset += this;
    }
    if ranges.is_empty() {
        // An empty file still needs one (empty) part.
        ranges.push((0, 0));
    }
    ranges
}

async fn upload_multipart(
    client: &Client,
    bucket: &str,
    key: &str,
    path: &Path,
    len: u64,
    options: &UploadOptions,
) -> Result<(), String> {
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        // Declared up front so the parts' CRC32s and the completion agree on one algorithm.
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .map_err(sdk_message)?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| "CreateMultipartUpload returned no upload id".to_string())?
        .to_string();

    let result = send_parts(client, bucket, key, path, len, &upload_id, options).await;
    if result.is_err() {
        // Best effort: an abandoned upload's parts cost storage until aborted (a bucket
        // lifecycle rule catches any this misses).
        let _ = client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .send()
            .await;
    }
    result
}

async fn send_parts(
    client: &Client,
    bucket: &str,
    key: &str,
    path: &Path,
    len: u64,
    upload_id: &str,
    options: &UploadOptions,
) -> Result<(), String> {
    let mut parts = Vec::new();
    for (index, (offset, size)) in part_ranges(len, options.part_size).into_iter().enumerate() {
        let number = index as i32 + 1;
        let body = ByteStream::read_from()
            .path(path)
            .offset(offset)
            .length(Length::Exact(size))
            .build()
            .await
            .map_err(|err| format!("reading {} at {offset}: {err}", path.display()))?;
        let part = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .content_length(size as i64)
            .body(body)
            .send()
            .await
            .map_err(|err| format!("part {number}: {}", sdk_message(err)))?;
        let mut completed = CompletedPart::builder().part_number(number);
        if let Some(etag) = part.e_tag() {
            completed = completed.e_tag(etag);
        }
        // Each part went up with a CRC32 checksum; completing with it lets S3 check the whole.
        if let Some(crc) = part.checksum_crc32() {
            completed = completed.checksum_crc32(crc);
        }
        parts.push(completed.build());
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .map_err(sdk_message)?;
    Ok(())
}

/// "Code: message" from the service, or the whole cause chain when no answer came back.
fn sdk_message<E>(error: SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error.code() {
        Some(code) => format!("{code}: {}", error.message().unwrap_or("no message")),
        None => DisplayErrorContext(&error).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn keys_sit_under_the_prefix() {
        assert_eq!(object_key(None, "wf/3/results/a.json"), "wf/3/results/a.json");
        assert_eq!(
            object_key(Some("runs/daily"), "wf/3/results/a.json"),
            "runs/daily/wf/3/results/a.json"
        );
    }

    #[test]
    fn parts_cover_the_file_exactly() {
        assert_eq!(part_ranges(0, 8 * MIB), vec![(0, 0)]);
        assert_eq!(part_ranges(100, 8 * MIB), vec![(0, 100)]);
        assert_eq!(
            part_ranges(12 * MIB, 5 * MIB),
            vec![(0, 5 * MIB), (5 * MIB, 5 * MIB), (10 * MIB, 2 * MIB)]
        );
        // Below S3's minimum, the part size is raised to 5 MiB.
        assert_eq!(part_ranges(6 * MIB, MIB), vec![(0, 5 * MIB), (5 * MIB, MIB)]);
        // A file that would need more than 10,000 parts gets bigger parts.
        let huge = 100_000 * MIB;
        let ranges = part_ranges(huge, 8 * MIB);
        assert_eq!(ranges.len(), 10_000);
        assert_eq!(ranges.iter().map(|(_, size)| size).sum::<u64>(), huge);
    }
}
