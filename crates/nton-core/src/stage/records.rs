//! The per-record loop every stage runs over a node's ids.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{StageError, StageReport};
use crate::fsutil;

/// Threads per node for per-record file work. A Batch child has one vCPU, but on EFS each
/// record costs several network round trips (create, write, close, rename), so overlapping a
/// few of them pays more than the threads cost; locally the stages still take a few ms.
pub const RECORD_THREADS: usize = 8;

/// Runs `one(index)` for every index in `0..count` (records of one node) in parallel and adds
/// up the bytes each returns. Stops at the first error and returns it.
pub(crate) fn for_each_record<F>(count: usize, one: F) -> Result<StageReport, StageError>
where
    F: Fn(usize) -> Result<u64, StageError> + Sync,
{
    let files = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    fsutil::for_each_parallel(count, RECORD_THREADS, |index| {
        let written = one(index)?;
        files.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(written, Ordering::Relaxed);
        Ok(())
    })?;
    Ok(StageReport { files: files.into_inner(), bytes: bytes.into_inner() })
}
