//! Whole-tree work beneath drive roots: conflict names, recursive copy, move (with a copy fallback across
//! file systems), recursive removal, sizes. Every step goes through [`Dir`] handles one name at a time, so
//! a symlink met on the way is copied or removed as a link, never followed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use protocol::ConflictPolicy;

use crate::beneath::{Dir, FsError, Kind, RelPath, Result, Root, WriteOptions};

/// Progress of a long operation, readable from another thread (logged while it runs in the background).
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }
    fn file(&self, bytes: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> (u64, u64) {
        (self.files.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// `name(n).ext` (the extension is what follows the last dot, unless the name starts with it).
pub fn numbered(name: &str, n: u32) -> String {
    match name.rfind('.') {
        Some(i) if i > 0 => format!("{}({n}){}", &name[..i], &name[i..]),
        _ => format!("{name}({n})"),
    }
}

/// The first of `name`, `name(1).ext`, `name(2).ext`, … that does not exist in `dir`.
pub fn free_name(dir: &Dir, name: &str) -> Result<String> {
    if matches!(dir.stat(name), Err(FsError::NotFound(_))) {
        return Ok(name.to_string());
    }
    for n in 1..10_000 {
        let candidate = numbered(name, n);
        if candidate.len() > crate::beneath::MAX_NAME {
            break;
        }
        match dir.stat(&candidate) {
            Err(FsError::NotFound(_)) => return Ok(candidate),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    Err(FsError::Exists(format!("No free name for {}/{name}", dir.ucloud_path())))
}

/// Removes `name` in `dir` and everything beneath it.
pub fn remove(dir: &Dir, name: &str, progress: &Progress) -> Result<()> {
    let st = dir.stat(name)?;
    if st.kind == Kind::Dir {
        let sub = dir.open_dir(name)?;
        for e in sub.entries()? {
            remove(&sub, &e.name, progress)?;
        }
        drop(sub);
        dir.rmdir(name)?;
    } else {
        dir.unlink(name)?;
    }
    progress.file(st.size);
    Ok(())
}

/// Copies `name` in `src` to `to_name` in `dst`. Files are created exclusively, so nothing existing is
/// overwritten; with `merge`, an existing folder receives the copy and clashing files get free names.
pub fn copy(src: &Dir, name: &str, dst: &Dir, to_name: &str, merge: bool, progress: &Progress) -> Result<()> {
    let st = src.stat(name)?;
    match st.kind {
        Kind::Dir => {
            match dst.mkdir(to_name, (st.mode & 0o777) | 0o700) {
                Ok(()) => {}
                Err(FsError::Exists(_)) if merge && dst.stat(to_name)?.is_dir() => {}
                Err(e) => return Err(e),
            }
            let from = src.open_dir(name)?;
            let to = dst.open_dir(to_name)?;
            for e in from.entries()? {
                let target = if merge { free_name(&to, &e.name)? } else { e.name.clone() };
                let target = if merge && e.stat.is_dir() && to.stat(&e.name).is_ok_and(|s| s.is_dir()) {
                    e.name.clone()
                } else {
                    target
                };
                copy(&from, &e.name, &to, &target, merge, progress)?;
            }
            let _ = dst.set_mtime(to_name, st.modified_ms);
            progress.file(0);
        }
        Kind::File => {
            let mut input = src.open_file(name)?;
            let options = WriteOptions { create_new: true, create: true, truncate: false, mode: st.mode & 0o777 };
            let mut output = dst.create_file(to_name, options)?;
            let what = format!("{}/{to_name}", dst.ucloud_path());
            let bytes = std::io::copy(&mut input, &mut output).map_err(|e| FsError::from_io(&e, &what))?;
            crate::beneath::set_file_mtime(&output, st.modified_ms, &what)?;
            progress.file(bytes);
        }
        Kind::Symlink => {
            // Copied as a link (its target text, unresolved), so a copy cannot reach outside either.
            let target = rustix::fs::readlinkat(src.fd(), name, Vec::new())
                .map_err(|e| FsError::from_errno(e, &format!("{}/{name}", src.ucloud_path())))?;
            rustix::fs::symlinkat(target.as_c_str(), dst.fd(), to_name)
                .map_err(|e| FsError::from_errno(e, &format!("{}/{to_name}", dst.ucloud_path())))?;
            progress.file(0);
        }
        Kind::Other => {
            tracing::info!(path = %format!("{}/{name}", src.ucloud_path()), "skipped a special file while copying");
        }
    }
    Ok(())
}

/// Sizes of a tree: (bytes of all files, files, folders), not counting the top folder itself.
pub fn sizes(dir: &Dir) -> Result<(u64, u64, u64)> {
    let (mut bytes, mut files, mut dirs) = (0u64, 0u64, 0u64);
    for e in dir.entries()? {
        if e.stat.is_dir() {
            dirs += 1;
            // A folder we may not read still counts; its contents do not.
            if let Ok(sub) = dir.open_dir(&e.name) {
                let (b, f, d) = sizes(&sub)?;
                bytes += b;
                files += f;
                dirs += d;
            }
        } else {
            files += 1;
            bytes += e.stat.size;
        }
    }
    Ok((bytes, files, dirs))
}

/// Is `a` the same object as `b` (same root folder and path prefix)? Used to refuse copying or moving a
/// folder into itself.
pub fn inside(src_root: &Root, src: &RelPath, dst_root: &Root, dst: &RelPath) -> Result<bool> {
    let a = src_root.lstat(&RelPath::root())?;
    let b = dst_root.lstat(&RelPath::root())?;
    Ok((a.dev, a.ino) == (b.dev, b.ino) && dst.starts_with(src))
}

/// Where a move or copy lands under `policy`: the target folder handle and the final name, or `None` when
/// nothing is to be done (same file). `REPLACE` removes what is there first; `REJECT` refuses.
pub fn target_name(
    dst: &Dir,
    name: &str,
    source_is_dir: bool,
    policy: ConflictPolicy,
    progress: &Progress,
) -> Result<(String, bool)> {
    let existing = match dst.stat(name) {
        Err(FsError::NotFound(_)) => return Ok((name.to_string(), false)),
        Err(e) => return Err(e),
        Ok(st) => st,
    };
    match policy {
        ConflictPolicy::Reject => Err(FsError::Exists(format!("Already exists: {}/{name}", dst.ucloud_path()))),
        ConflictPolicy::Rename => Ok((free_name(dst, name)?, false)),
        ConflictPolicy::MergeRename if source_is_dir && existing.is_dir() => Ok((name.to_string(), true)),
        ConflictPolicy::MergeRename => Ok((free_name(dst, name)?, false)),
        ConflictPolicy::Replace => {
            remove(dst, name, progress)?;
            Ok((name.to_string(), false))
        }
    }
}

/// Moves `name` from `src` into `dst` as `to_name`; `merge` moves a folder's children into an existing
/// folder (clashes renamed). Across file systems it copies, then removes the source.
pub fn move_entry(src: &Dir, name: &str, dst: &Dir, to_name: &str, merge: bool, progress: &Progress) -> Result<()> {
    if merge {
        let from = src.open_dir(name)?;
        let to = dst.open_dir(to_name)?;
        for e in from.entries()? {
            let both_dirs = e.stat.is_dir() && to.stat(&e.name).is_ok_and(|s| s.is_dir());
            let target = if both_dirs { e.name.clone() } else { free_name(&to, &e.name)? };
            move_entry(&from, &e.name, &to, &target, both_dirs, progress)?;
        }
        drop(from);
        return src.rmdir(name);
    }
    match src.rename(name, dst, to_name, false) {
        Err(FsError::CrossDevice(_)) => {
            copy(src, name, dst, to_name, false, progress)?;
            remove(src, name, progress)
        }
        other => other,
    }
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
