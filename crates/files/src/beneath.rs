//! Paths resolved by the kernel beneath a drive root.
//!
//! A drive root is held as an `O_PATH | O_DIRECTORY` file descriptor. Every path under it is resolved with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)`: the kernel refuses `..` that
//! would leave the root, absolute paths, `/proc` magic links and **every** symbolic link, in any component,
//! at the moment of use. Nothing is checked first and used later, so a path swapped for a symlink between a
//! check and an operation cannot escape: the operation itself fails. Operations on a last component
//! (`stat`, `mkdir`, `rename`, `unlink`) run on the parent's descriptor with the `*at` calls, which never
//! follow a final symlink. Symlinks inside a drive are listed (as what they are) but never followed.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

pub use crate::relpath::{check_name, FsError, RelPath, Result, MAX_NAME, MAX_PATH};
/// The resolution every lookup uses: stay beneath, never follow a symlink or magic link.
pub const RESOLVE: ResolveFlags =
    ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS).union(ResolveFlags::NO_SYMLINKS);

/// What a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// `lstat` of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits only (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub modified_ms: i64,
    pub accessed_ms: i64,
    pub changed_ms: i64,
    pub dev: u64,
    pub ino: u64,
}

impl FileStat {
    // The casts are no-ops on x86_64 only: the stat fields' types vary by architecture.
    #[allow(clippy::unnecessary_cast)]
    fn from_raw(st: &rustix::fs::Stat) -> FileStat {
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        let ms = |s: i64, ns: i64| s.saturating_mul(1000).saturating_add(ns / 1_000_000);
        FileStat {
            kind,
            size: st.st_size.max(0) as u64,
            mode: (st.st_mode as u32) & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            modified_ms: ms(st.st_mtime as i64, st.st_mtime_nsec as i64),
            accessed_ms: ms(st.st_atime as i64, st.st_atime_nsec as i64),
            changed_ms: ms(st.st_ctime as i64, st.st_ctime_nsec as i64),
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// One directory entry with its `lstat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub stat: FileStat,
}

/// How [`Root::open_write`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Fail with [`FsError::Exists`] if the name exists (`O_CREAT | O_EXCL`).
    pub create_new: bool,
    /// Create if missing (`O_CREAT`); implied by `create_new`.
    pub create: bool,
    pub truncate: bool,
    /// Mode for a new file (before the umask).
    pub mode: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { create_new: false, create: true, truncate: true, mode: 0o666 }
    }
}

impl WriteOptions {
    fn flags(&self) -> OFlags {
        let mut f = OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW;
        if self.create_new {
            f |= OFlags::CREATE | OFlags::EXCL;
        } else if self.create {
            f |= OFlags::CREATE;
        }
        if self.truncate {
            f |= OFlags::TRUNC;
        }
        f
    }
}

/// A drive root: a directory descriptor every path is resolved beneath.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    /// The UCloud path of the root (`/12`), for messages.
    label: String,
    /// The host path it was opened from, for logs only (never used to reach files).
    path: PathBuf,
}

impl Root {
    /// Opens a host directory as a root. The path is trusted (it comes from configuration), so it is
    /// resolved normally; everything beneath it is not.
    pub fn open(path: &Path, label: impl Into<String>) -> Result<Root> {
        let label = label.into();
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| FsError::from_errno(e, &label))?;
        Ok(Root { fd, label, path: path.to_path_buf() })
    }

    /// A root at `rel` beneath this one (resolved like every other path: no symlinks).
    pub fn open_sub(&self, rel: &RelPath, label: impl Into<String>) -> Result<Root> {
        let fd = self.resolve(rel, OFlags::PATH | OFlags::DIRECTORY, 0)?;
        Ok(Root { fd, label: label.into(), path: self.path.join(rel.as_str()) })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn host_path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `label/rel`: the UCloud path of `rel`.
    pub fn ucloud_path(&self, rel: &RelPath) -> String {
        if rel.is_root() {
            self.label.clone()
        } else {
            format!("{}/{}", self.label, rel)
        }
    }

    fn resolve(&self, rel: &RelPath, flags: OFlags, mode: u32) -> Result<OwnedFd> {
        rustix::fs::openat2(&self.fd, rel.os(), flags | OFlags::CLOEXEC, Mode::from_raw_mode(mode), RESOLVE)
            .map_err(|e| FsError::from_errno(e, &self.ucloud_path(rel)))
    }

    /// The parent directory (as a [`Dir`] handle) and the last name of `rel`. The root has no parent.
    pub fn parent(&self, rel: &RelPath) -> Result<(Dir, String)> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Err(FsError::BadPath(format!("Not allowed on the drive itself: {}", self.label)));
        };
        let fd = self.resolve(&parent, OFlags::PATH | OFlags::DIRECTORY, 0)?;
        Ok((Dir { fd, ucloud: self.ucloud_path(&parent) }, name.to_string()))
    }

    /// Opens a regular file for reading. FIFOs and devices are refused (opening them could block).
    pub fn open_read(&self, rel: &RelPath) -> Result<File> {
        let fd = self.resolve(rel, OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK, 0)?;
        regular_blocking(fd, &self.ucloud_path(rel))
    }

    /// Opens (or creates) a file for writing.
    pub fn open_write(&self, rel: &RelPath, options: WriteOptions) -> Result<File> {
        if rel.is_root() {
            return Err(FsError::BadPath(format!("Is a folder: {}", self.label)));
        }
        let fd = self.resolve(rel, options.flags() | OFlags::NONBLOCK, options.mode)?;
        regular_blocking(fd, &self.ucloud_path(rel))
    }

    /// Opens a directory for listing and for `*at` operations on its children.
    pub fn open_dir(&self, rel: &RelPath) -> Result<Dir> {
        let fd = self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
        Ok(Dir { fd, ucloud: self.ucloud_path(rel) })
    }

    pub fn mkdir(&self, rel: &RelPath, mode: u32) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        dir.mkdir(&name, mode)
    }

    /// Creates `rel` and missing parents; existing folders are fine, an existing non-folder is not.
    pub fn create_dir_all(&self, rel: &RelPath, mode: u32) -> Result<()> {
        let mut at = RelPath::root();
        for c in rel.components() {
            at = at.join(c)?;
            match self.mkdir(&at, mode) {
                Ok(()) => {}
                Err(FsError::Exists(_)) => {
                    if !self.lstat(&at)?.is_dir() {
                        return Err(FsError::Exists(format!("Exists and is not a folder: {}", self.ucloud_path(&at))));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `lstat`: a symlink is described, not followed.
    pub fn lstat(&self, rel: &RelPath) -> Result<FileStat> {
        if rel.is_root() {
            let st = rustix::fs::fstat(&self.fd).map_err(|e| FsError::from_errno(e, &self.label))?;
            return Ok(FileStat::from_raw(&st));
        }
        let (dir, name) = self.parent(rel)?;
        dir.stat(&name)
    }

    pub fn read_dir(&self, rel: &RelPath) -> Result<Vec<Entry>> {
        self.open_dir(rel)?.entries()
    }

    /// Renames `from` (beneath this root) to `to` beneath `to_root` (which may be this root).
    /// `replace: false` uses `RENAME_NOREPLACE`, so an existing target is never clobbered, atomically.
    pub fn rename(&self, from: &RelPath, to_root: &Root, to: &RelPath, replace: bool) -> Result<()> {
        let (src, src_name) = self.parent(from)?;
        let (dst, dst_name) = to_root.parent(to)?;
        let flags = if replace { RenameFlags::empty() } else { RenameFlags::NOREPLACE };
        rustix::fs::renameat_with(&src.fd, &*src_name, &dst.fd, &*dst_name, flags).map_err(|e| match e {
            Errno::XDEV => FsError::CrossDevice(format!("Cannot move across file systems: {}", self.ucloud_path(from))),
            Errno::EXIST | Errno::NOTEMPTY => FsError::Exists(format!("Already exists: {}", to_root.ucloud_path(to))),
            e => FsError::from_errno(e, &self.ucloud_path(from)),
        })
    }

    pub fn unlink(&self, rel: &RelPath) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        dir.unlink(&name)
    }

    pub fn rmdir(&self, rel: &RelPath) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        dir.rmdir(&name)
    }

    /// Sets the modification time of `rel` (not following a final symlink).
    pub fn set_mtime(&self, rel: &RelPath, modified_ms: i64) -> Result<()> {
        if rel.is_root() {
            return Err(FsError::BadPath(format!("Not allowed on the drive itself: {}", self.label)));
        }
        let (dir, name) = self.parent(rel)?;
        let times = mtime_only(modified_ms);
        rustix::fs::utimensat(&dir.fd, &*name, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FsError::from_errno(e, &self.ucloud_path(rel)))
    }
}

fn mtime_only(modified_ms: i64) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        last_modification: Timespec {
            tv_sec: modified_ms.div_euclid(1000),
            tv_nsec: (modified_ms.rem_euclid(1000) * 1_000_000) as _,
        },
    }
}

/// Sets the modification time of an open file (`futimens`).
pub fn set_file_mtime(file: &File, modified_ms: i64, what: &str) -> Result<()> {
    rustix::fs::futimens(file, &mtime_only(modified_ms)).map_err(|e| FsError::from_errno(e, what))
}

/// Refuses anything but a regular file, then clears `O_NONBLOCK`.
fn regular_blocking(fd: OwnedFd, what: &str) -> Result<File> {
    let st = rustix::fs::fstat(&fd).map_err(|e| FsError::from_errno(e, what))?;
    match FileType::from_raw_mode(st.st_mode as _) {
        FileType::RegularFile => {}
        FileType::Directory => return Err(FsError::BadPath(format!("Is a folder: {what}"))),
        _ => return Err(FsError::BadPath(format!("Not a regular file: {what}"))),
    }
    let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| FsError::from_errno(e, what))?;
    rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK).map_err(|e| FsError::from_errno(e, what))?;
    Ok(File::from(fd))
}

/// An open directory: children are reached by single names, never following symlinks. Used for walks
/// (recursive copy, delete, size, search, archives) so a deep tree costs one lookup per entry.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    ucloud: String,
}

impl Dir {
    /// The UCloud path of this directory.
    pub fn ucloud_path(&self) -> &str {
        &self.ucloud
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn child(&self, name: &str) -> String {
        format!("{}/{}", self.ucloud, name)
    }

    fn open_child(&self, name: &str, flags: OFlags, mode: u32) -> Result<OwnedFd> {
        check_name(name)?;
        rustix::fs::openat2(&self.fd, name, flags | OFlags::CLOEXEC, Mode::from_raw_mode(mode), RESOLVE)
            .map_err(|e| FsError::from_errno(e, &self.child(name)))
    }

    /// Entries with their `lstat`, without `.` and `..`, in directory order. Names that are not UTF-8
    /// are shown lossily (they cannot be named in a UCloud path anyway).
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let reader = rustix::fs::Dir::read_from(&self.fd).map_err(|e| FsError::from_errno(e, &self.ucloud))?;
        for entry in reader {
            let entry = entry.map_err(|e| FsError::from_errno(e, &self.ucloud))?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let stat = match rustix::fs::statat(&self.fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileStat::from_raw(&st),
                // Deleted while we listed: leave it out.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(FsError::from_errno(e, &self.ucloud)),
            };
            out.push(Entry { name: String::from_utf8_lossy(raw).into_owned(), stat });
        }
        Ok(out)
    }

    pub fn open_dir(&self, name: &str) -> Result<Dir> {
        let fd = self.open_child(name, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
        Ok(Dir { fd, ucloud: self.child(name) })
    }

    pub fn open_file(&self, name: &str) -> Result<File> {
        let fd = self.open_child(name, OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK, 0)?;
        regular_blocking(fd, &self.child(name))
    }

    pub fn create_file(&self, name: &str, options: WriteOptions) -> Result<File> {
        let fd = self.open_child(name, options.flags() | OFlags::NONBLOCK, options.mode)?;
        regular_blocking(fd, &self.child(name))
    }

    pub fn mkdir(&self, name: &str, mode: u32) -> Result<()> {
        check_name(name)?;
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode))
            .map_err(|e| FsError::from_errno(e, &self.child(name)))
    }

    pub fn stat(&self, name: &str) -> Result<FileStat> {
        check_name(name)?;
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FsError::from_errno(e, &self.child(name)))?;
        Ok(FileStat::from_raw(&st))
    }

    /// Removes a file or symlink (never a directory).
    pub fn unlink(&self, name: &str) -> Result<()> {
        check_name(name)?;
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(|e| FsError::from_errno(e, &self.child(name)))
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, name: &str) -> Result<()> {
        check_name(name)?;
        rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)
            .map_err(|e| FsError::from_errno(e, &self.child(name)))
    }

    /// Renames a child to a name in `to` (which may be this directory).
    pub fn rename(&self, name: &str, to: &Dir, to_name: &str, replace: bool) -> Result<()> {
        check_name(name)?;
        check_name(to_name)?;
        let flags = if replace { RenameFlags::empty() } else { RenameFlags::NOREPLACE };
        rustix::fs::renameat_with(&self.fd, name, &to.fd, to_name, flags).map_err(|e| match e {
            Errno::XDEV => FsError::CrossDevice(format!("Cannot move across file systems: {}", self.child(name))),
            Errno::EXIST | Errno::NOTEMPTY => FsError::Exists(format!("Already exists: {}", to.child(to_name))),
            e => FsError::from_errno(e, &self.child(name)),
        })
    }

    /// Sets a child's modification time without following a symlink.
    pub fn set_mtime(&self, name: &str, modified_ms: i64) -> Result<()> {
        check_name(name)?;
        rustix::fs::utimensat(&self.fd, name, &mtime_only(modified_ms), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FsError::from_errno(e, &self.child(name)))
    }
}

#[cfg(test)]
#[path = "beneath_tests.rs"]
mod tests;
