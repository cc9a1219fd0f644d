//! Safe file writes and parallel file work, for a data root that may be EFS (NFS).
//!
//! Every file the pipeline writes goes through [`write_atomic`] (or [`copy_atomic`]): readers see
//! the old file or the whole new one, never half of one, and a re-run simply replaces it.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Writes `bytes` to `path` atomically: see [`write_atomic_with`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Copies the file `from` to `to` atomically and returns the bytes copied. `to`'s directory
/// must exist.
pub fn copy_atomic(from: &Path, to: &Path) -> io::Result<u64> {
    let mut source = File::open(from)?;
    let mut copied = 0;
    write_atomic_with(to, |file| {
        // std's copy uses copy_file_range on Linux, so the bytes need not pass through here.
        copied = io::copy(&mut source, file)?;
        Ok(())
    })?;
    Ok(copied)
}

/// Creates a uniquely named temp file beside `path`, lets `fill` write it, closes it, then
/// renames it over `path`. If `fill`, the close or the rename fails, the temp file is removed
/// and `path` is untouched. The directory must exist.
///
/// The file is closed before the rename on purpose: NFS (EFS) flushes a file's data on close
/// (close-to-open consistency), so a reader on another host that sees the new name also sees
/// all its bytes. There is no fsync: a node whose host dies mid-run is re-run, and re-running
/// rewrites every file, so durability of each write is not worth a second round trip per file.
pub fn write_atomic_with<F>(path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    // A dot prefix keeps half-written files out of the way of anything listing `*.json`; the
    // random part (tempfile opens with O_EXCL) keeps two writers of one path apart.
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        // tempfile's default is 0600; the prep files init writes are read by Batch workers
        // that may run as another user, so use the usual 0644 (less the umask).
        .permissions(Permissions::from_mode(0o644))
        .tempfile_in(dir)?;
    fill(temp.as_file_mut())?;
    // into_temp_path closes the file; the TempPath still deletes it on drop if the rename fails.
    let temp_path = temp.into_temp_path();
    temp_path.persist(path).map_err(|err| err.error)?;
    Ok(())
}

/// Creates `path` and its parents, and succeeds if it already exists as a directory
/// (std's `create_dir_all` already does, and is safe when two processes race to create it; this
/// name documents the guarantee the stages rely on: re-running a node is always safe).
pub fn create_dir_all_idempotent(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)
}

/// How many threads to use for file work that waits on the network rather than the CPU.
///
/// On EFS every create, write, rename and unlink is a round trip of about a millisecond, so
/// the time goes in waiting; dozens of threads overlap those waits even on a one-vCPU Lambda.
/// That is why this is not rayon: rayon sizes its pool to the CPUs, which suits CPU-bound work.
pub const IO_THREADS: usize = 32;

/// Runs `work(index)` for every index in `0..count` on up to `threads` scoped threads, each
/// taking the next index as it finishes one (so slow files do not hold up a whole chunk). Stops
/// handing out indices after the first error and returns it; `Ok` means every index ran.
pub fn for_each_parallel<E, F>(count: usize, threads: usize, work: F) -> Result<(), E>
where
    E: Send,
    F: Fn(usize) -> Result<(), E> + Sync,
{
    let threads = threads.clamp(1, count.max(1));
    if threads == 1 {
        return (0..count).try_for_each(work);
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while failed.load(Ordering::Relaxed) == 0 {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    if let Err(err) = work(index) {
                        failed.store(1, Ordering::Relaxed);
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert(err);
                        break;
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_and_rewrites_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"first version, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first version, longer");
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(names(dir.path()), ["a.json"]);
        // Readable by other users as a plain write would be (tempfile alone gives 0600), so
        // Batch workers running as another user can read what init wrote.
        let plain = dir.path().join("plain");
        fs::write(&plain, b"").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain) & 0o644);
    }

    #[test]
    fn a_failure_mid_write_leaves_no_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        let err = write_atomic_with(&path, |file| {
            file.write_all(b"half of it")?;
            Err(io::Error::other("disk fell off"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk fell off");
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn a_failure_mid_rewrite_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic_with(&path, |file| {
            file.write_all(b"new but ")?;
            Err(io::Error::other("interrupted"))
        })
        .unwrap_err();
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory where the file should go: rename(2) over it fails.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomic(&path, b"bytes").is_err());
        assert_eq!(names(dir.path()), ["taken"]);
        assert!(path.is_dir());
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("no/such/a.json"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn copy_atomic_copies_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        let to = dir.path().join("to");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&from, &bytes).unwrap();
        assert_eq!(copy_atomic(&from, &to).unwrap(), bytes.len() as u64);
        assert_eq!(fs::read(&to).unwrap(), bytes);
        let err = copy_atomic(&dir.path().join("missing"), &to).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(fs::read(&to).unwrap(), bytes);
    }

    #[test]
    fn create_dir_all_idempotent_can_run_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c");
        create_dir_all_idempotent(&path).unwrap();
        create_dir_all_idempotent(&path).unwrap();
        assert!(path.is_dir());
        fs::write(dir.path().join("file"), b"").unwrap();
        assert!(create_dir_all_idempotent(&dir.path().join("file")).is_err());
    }

    #[test]
    fn for_each_parallel_runs_every_index_once() {
        let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        for threads in [1, 4, 64] {
            for_each_parallel::<(), _>(hits.len(), threads, |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .unwrap();
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 3));
        for_each_parallel::<(), _>(0, 8, |_| panic!("no work")).unwrap();
    }

    #[test]
    fn for_each_parallel_returns_the_error_and_stops() {
        let done = AtomicUsize::new(0);
        let err = for_each_parallel(100_000, 4, |i| {
            done.fetch_add(1, Ordering::Relaxed);
            if i == 10 { Err(format!("index {i}")) } else { Ok(()) }
        })
        .unwrap_err();
        assert_eq!(err, "index 10");
        assert!(done.load(Ordering::Relaxed) < 100_000);
    }
}
