//! A SQLite VFS that writes each transaction's WAL frames with one system call.
//!
//! SQLite appends a committed transaction to the WAL one frame at a time, and each
//! frame with two `pwrite`s (its 24-byte header, then the page): a group commit of
//! 60 pages is 120 system calls on the single writer thread, which under load spent
//! a quarter of its time in them. This VFS wraps the platform's and, for WAL files
//! only, gathers consecutive writes in memory and hands them to the file in one
//! write when the transaction's commit frame is complete (or before anything that
//! could observe the file: a read, a sync, a size query, a truncation, closing).
//!
//! Nothing is acknowledged earlier than before. SQLite makes the frames visible to
//! other connections (the WAL index) only after writing the commit frame, by which
//! time they are in the file; with `synchronous=full` the sync that follows the
//! commit frame writes them first. A crash before the commit frame's write loses
//! only an uncommitted transaction, which WAL recovery ignores anyway.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open the database with.
pub const VFS_NAME: &str = "payground-wal";
const NAME: &CStr = c"payground-wal";

/// Writes gathered past this size go out at once, commit frame or not.
const MAX_BUFFER: usize = 8 << 20;
/// The most the platform VFS writes in one call: SQLite's unix VFS keeps only the
/// low 17 bits of a write's length (a 128 KiB write would write nothing and be
/// reported as a full disk), so what was gathered goes out in pieces below that.
const MAX_WRITE: usize = 124 << 10;
/// A WAL frame header: page number, then the database size in pages after a
/// commit (0 in every other frame), salts and checksums.
const FRAME_HEADER: usize = 24;

/// What SQLite holds for an open file: our methods, the platform file behind it,
/// and, for a WAL file, the writes not yet made.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    wal: *mut WalWrites,
}

#[derive(Default)]
struct WalWrites {
    bytes: Vec<u8>,
    /// File offset of `bytes[0]`.
    start: i64,
    /// The last write was a commit frame's header: its page ends the transaction.
    commit_page_next: bool,
}

static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();

/// Registers the VFS (once per process); afterwards connections may be opened with
/// [`NAME`].
pub fn register() -> Result<(), String> {
    let registered = REGISTERED.get_or_init(|| {
        // SAFETY: plain SQLite API calls; the VFS object is leaked, so it outlives
        // every connection that uses it.
        unsafe {
            let inner = ffi::sqlite3_vfs_find(std::ptr::null());
            if inner.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let inner_size = usize::try_from((*inner).szOsFile).unwrap_or(0);
            let own = std::mem::size_of::<ShimFile>().next_multiple_of(16);
            let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
                iVersion: (*inner).iVersion,
                szOsFile: c_int::try_from(own + inner_size).unwrap_or(c_int::MAX),
                mxPathname: (*inner).mxPathname,
                pNext: std::ptr::null_mut(),
                zName: NAME.as_ptr(),
                pAppData: inner.cast(),
                xOpen: Some(open),
                xDelete: (*inner).xDelete.map(|_| delete as _),
                xAccess: (*inner).xAccess.map(|_| access as _),
                xFullPathname: (*inner).xFullPathname.map(|_| full_pathname as _),
                xDlOpen: None,
                xDlError: None,
                xDlSym: None,
                xDlClose: None,
                xRandomness: (*inner).xRandomness.map(|_| randomness as _),
                xSleep: (*inner).xSleep.map(|_| sleep as _),
                xCurrentTime: (*inner).xCurrentTime.map(|_| current_time as _),
                xGetLastError: (*inner).xGetLastError.map(|_| last_error as _),
                xCurrentTimeInt64: (*inner).xCurrentTimeInt64.map(|_| current_time_i64 as _),
                xSetSystemCall: None,
                xGetSystemCall: None,
                xNextSystemCall: None,
            }));
            match ffi::sqlite3_vfs_register(vfs, 0) {
                ffi::SQLITE_OK => Ok(()),
                rc => Err(rc),
            }
        }
    });
    match registered {
        Ok(_) => Ok(()),
        Err(rc) => Err(format!("registering the WAL-batching VFS failed: {rc}")),
    }
}

fn inner_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: pAppData was set to the wrapped VFS at registration.
    unsafe { (*vfs).pAppData.cast() }
}

macro_rules! forward_vfs {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            let inner = inner_vfs(vfs);
            // SAFETY: registration only installs this method when the wrapped VFS
            // has it.
            unsafe { ((*inner).$field.expect("wrapped VFS method"))(inner $(, $arg)*) }
        }
    };
}

forward_vfs!(delete, xDelete, (name: *const c_char, sync_dir: c_int) -> c_int);
forward_vfs!(access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int);
forward_vfs!(full_pathname, xFullPathname, (name: *const c_char, n: c_int, out: *mut c_char) -> c_int);
forward_vfs!(randomness, xRandomness, (n: c_int, out: *mut c_char) -> c_int);
forward_vfs!(sleep, xSleep, (us: c_int) -> c_int);
forward_vfs!(current_time, xCurrentTime, (out: *mut f64) -> c_int);
forward_vfs!(last_error, xGetLastError, (n: c_int, out: *mut c_char) -> c_int);
forward_vfs!(current_time_i64, xCurrentTimeInt64, (out: *mut ffi::sqlite3_int64) -> c_int);

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let inner = inner_vfs(vfs);
    let shim = file.cast::<ShimFile>();
    // SAFETY: SQLite allocated `szOsFile` bytes at `file`: our struct, then room
    // for the wrapped VFS's file at the next 16-byte boundary.
    unsafe {
        let own = std::mem::size_of::<ShimFile>().next_multiple_of(16);
        let inner_file = file.cast::<u8>().add(own).cast::<ffi::sqlite3_file>();
        (*shim).base.pMethods = std::ptr::null();
        (*shim).inner = inner_file;
        (*shim).wal = std::ptr::null_mut();
        let Some(inner_open) = (*inner).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        let rc = inner_open(inner, name, inner_file, flags, out_flags);
        if rc != ffi::SQLITE_OK || (*inner_file).pMethods.is_null() {
            return rc;
        }
        if flags & ffi::SQLITE_OPEN_WAL != 0 {
            (*shim).wal = Box::into_raw(Box::default());
        }
        (*shim).base.pMethods = methods_for((*inner_file).pMethods);
        rc
    }
}

/// Our methods, with the wrapped file's version: SQLite checks `iVersion` before
/// calling the shared-memory and memory-map methods.
fn methods_for(inner: *const ffi::sqlite3_io_methods) -> *const ffi::sqlite3_io_methods {
    static METHODS: OnceLock<[Methods; 4]> = OnceLock::new();
    let all = METHODS.get_or_init(|| [0, 1, 2, 3].map(|v| Methods(io_methods(v))));
    // SAFETY: `inner` is the wrapped file's live method table.
    let version = unsafe { (*inner).iVersion }.clamp(0, 3);
    &all[usize::try_from(version).unwrap_or(0)].0
}

struct Methods(ffi::sqlite3_io_methods);
// SAFETY: a table of function pointers, never written after it is built.
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}

fn io_methods(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(close),
        xRead: Some(read),
        xWrite: Some(write),
        xTruncate: Some(truncate),
        xSync: Some(sync),
        xFileSize: Some(file_size),
        xLock: Some(lock),
        xUnlock: Some(unlock),
        xCheckReservedLock: Some(check_reserved_lock),
        xFileControl: Some(file_control),
        xSectorSize: Some(sector_size),
        xDeviceCharacteristics: Some(device_characteristics),
        xShmMap: Some(shm_map),
        xShmLock: Some(shm_lock),
        xShmBarrier: Some(shm_barrier),
        xShmUnmap: Some(shm_unmap),
        xFetch: Some(fetch),
        xUnfetch: Some(unfetch),
    }
}

/// The wrapped file and its method table.
///
/// # Safety
/// `file` must be a [`ShimFile`] that [`open`] set up.
unsafe fn inner_of(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: per the function's contract; the wrapped methods live as long as
    // the process (they are the platform VFS's static tables).
    unsafe {
        let inner = (*file.cast::<ShimFile>()).inner;
        (inner, &*(*inner).pMethods)
    }
}

/// Writes out what a WAL file has gathered; the platform's error, if any.
///
/// # Safety
/// As [`inner_of`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the function's contract.
    unsafe {
        let wal = (*file.cast::<ShimFile>()).wal;
        if wal.is_null() || (*wal).bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let (inner, methods) = inner_of(file);
        let writes = &mut *wal;
        let mut rc = ffi::SQLITE_OK;
        let mut offset = writes.start;
        for piece in writes.bytes.chunks(MAX_WRITE) {
            rc = match (methods.xWrite, c_int::try_from(piece.len())) {
                (Some(write), Ok(n)) => write(inner, piece.as_ptr().cast(), n, offset),
                _ => ffi::SQLITE_IOERR_WRITE,
            };
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += piece.len() as i64;
        }
        writes.bytes.clear();
        writes.commit_page_next = false;
        rc
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes the file it opened through [`open`] and `amount`
    // readable bytes at `data`.
    unsafe {
        let wal = (*file.cast::<ShimFile>()).wal;
        let (inner, methods) = inner_of(file);
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        if wal.is_null() {
            return methods
                .xWrite
                .map_or(ffi::SQLITE_IOERR_WRITE, |w| w(inner, data, amount, offset));
        }
        let contiguous = {
            let w = &*wal;
            w.bytes.is_empty() || w.start + w.bytes.len() as i64 == offset
        };
        if !contiguous {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let writes = &mut *wal;
        if writes.bytes.is_empty() {
            writes.start = offset;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        writes.bytes.extend_from_slice(bytes);
        let ends_transaction = writes.commit_page_next && len != FRAME_HEADER;
        writes.commit_page_next =
            len == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0] && !ends_transaction;
        if ends_transaction || writes.bytes.len() >= MAX_BUFFER {
            return flush(file);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each file it opened once; the WAL buffer was made by
    // `Box::into_raw` in [`open`].
    unsafe {
        let flushed = flush(file);
        let shim = file.cast::<ShimFile>();
        if !(*shim).wal.is_null() {
            drop(Box::from_raw((*shim).wal));
            (*shim).wal = std::ptr::null_mut();
        }
        let (inner, methods) = inner_of(file);
        let rc = methods.xClose.map_or(ffi::SQLITE_OK, |c| c(inner));
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            rc
        }
    }
}

/// A method that first writes out what the WAL gathered, then forwards.
macro_rules! flushing {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite passes a file it opened through [`open`].
            unsafe {
                let rc = flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                let (inner, methods) = inner_of(file);
                methods.$field.map_or(ffi::SQLITE_ERROR, |m| m(inner $(, $arg)*))
            }
        }
    };
}

flushing!(read, xRead, (data: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64));
flushing!(truncate, xTruncate, (size: ffi::sqlite3_int64));
flushing!(sync, xSync, (flags: c_int));
flushing!(file_size, xFileSize, (size: *mut ffi::sqlite3_int64));
flushing!(file_control, xFileControl, (op: c_int, arg: *mut c_void));
flushing!(fetch, xFetch, (offset: ffi::sqlite3_int64, amount: c_int, out: *mut *mut c_void));

/// A method passed straight to the wrapped file.
macro_rules! forward {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: SQLite passes a file it opened through [`open`].
            unsafe {
                let (inner, methods) = inner_of(file);
                methods.$field.map_or($missing, |m| m(inner $(, $arg)*))
            }
        }
    };
}

forward!(lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_OK);
forward!(unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_OK);
forward!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_OK);
forward!(sector_size, xSectorSize, () -> c_int, 4096);
forward!(device_characteristics, xDeviceCharacteristics, () -> c_int, 0);
forward!(shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR);
forward!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int) -> c_int, ffi::SQLITE_IOERR);
forward!(shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
forward!(unfetch, xUnfetch, (offset: ffi::sqlite3_int64, p: *mut c_void) -> c_int, ffi::SQLITE_OK);

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite passes a file it opened through [`open`].
    unsafe {
        let (inner, methods) = inner_of(file);
        if let Some(barrier) = methods.xShmBarrier {
            barrier(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("payground-vfs-{}", crate::ids::new_id("t")));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join(name)
    }

    /// Every commit made through the VFS is in the files when it returns: another
    /// connection, through the platform VFS, sees it at once, whatever the size of
    /// the transaction (one row, or megabytes written in many pieces), and the
    /// database checks out whole.
    #[test]
    fn commits_are_in_the_files_when_they_return() {
        register().expect("register");
        let path = temp_path("vfs.db");
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let writer = Connection::open_with_flags_and_vfs(&path, flags, VFS_NAME).expect("open");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
            )
            .expect("schema");
        let reader = Connection::open(&path).expect("plain open");
        let mut expected = 0i64;
        // Row sizes from a few bytes to 3 MB: transactions of one frame up to
        // hundreds, across the platform's 128 KiB write limit and this VFS's buffer.
        for (i, size) in [10usize, 4_000, 130_000, 131_072, 700_000, 3_000_000, 50]
            .into_iter()
            .enumerate()
        {
            let body = vec![u8::try_from(i).unwrap_or(0); size];
            writer
                .execute("INSERT INTO t (body) VALUES (?1)", [&body])
                .expect("insert");
            expected += i64::try_from(size).unwrap_or(0);
            let seen: i64 = reader
                .query_row("SELECT COALESCE(SUM(length(body)), 0) FROM t", [], |r| {
                    r.get(0)
                })
                .expect("read");
            assert_eq!(seen, expected, "after the commit of a {size}-byte row");
        }
        // A transaction of many small frames, then the whole file checked.
        writer.execute_batch("BEGIN").expect("begin");
        for _ in 0..2_000 {
            writer
                .execute("INSERT INTO t (body) VALUES (randomblob(300))", [])
                .expect("insert");
        }
        writer.execute_batch("COMMIT").expect("commit");
        let rows: i64 = reader
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 2_007);
        let check: String = reader
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(check, "ok");
        drop((writer, reader));
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// A transaction of a hundred pages, gathered in memory, is in the WAL file
    /// whole by the time its commit returns, as the file system (not the VFS) sees
    /// it.
    #[test]
    fn a_transaction_reaches_the_wal_at_its_commit() {
        register().expect("register");
        let path = temp_path("batch.db");
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let writer = Connection::open_with_flags_and_vfs(&path, flags, VFS_NAME).expect("open");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 PRAGMA cache_size = -65536;
                 CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
            )
            .expect("schema");
        let wal = format!("{}-wal", path.display());
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let before = size();
        writer.execute_batch("BEGIN").expect("begin");
        for _ in 0..100 {
            writer
                .execute("INSERT INTO t (body) VALUES (randomblob(2000))", [])
                .expect("insert");
        }
        // Nothing is written before the commit (the cache holds every page)...
        assert_eq!(size(), before);
        writer.execute_batch("COMMIT").expect("commit");
        // ...and all of it by the time the commit returns.
        assert!(size() > before + 200_000, "{} -> {}", before, size());
        drop(writer);
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
