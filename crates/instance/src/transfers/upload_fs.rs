//! [`transfer::session::UploadFs`] on the real file system: every path resolved beneath the drive root
//! by the kernel (`files::beneath`), data written to a hidden temporary name in the final directory and
//! renamed into place (atomically, replacing) once complete, with the browser's mtime.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};

use files::beneath::{set_file_mtime, Dir, FsError, Kind, RelPath, Root, WriteOptions};

pub struct BeneathFs {
    pub root: Root,
    /// The session's target: the file (FILE upload) or the folder (FOLDER upload).
    pub target: RelPath,
    /// Makes temporary names unique per session (the token's signature).
    pub session: Vec<u8>,
    /// Folders known to exist, so a 10,000-file upload does not re-create parents for every file.
    made: HashSet<RelPath>,
}

pub struct Open {
    file: File,
    dir: Dir,
    temp: String,
    name: String,
}

impl BeneathFs {
    pub fn new(root: Root, target: RelPath, session: Vec<u8>) -> BeneathFs {
        BeneathFs { root, target, session, made: HashSet::new() }
    }

    fn full(&self, path: &str) -> io::Result<RelPath> {
        if path.is_empty() {
            return Ok(self.target.clone());
        }
        let mut at = self.target.clone();
        for c in path.split('/') {
            at = at.join(c).map_err(to_io)?;
        }
        Ok(at)
    }
}

pub fn to_io(e: FsError) -> io::Error {
    let kind = match e.status() {
        404 => io::ErrorKind::NotFound,
        403 => io::ErrorKind::PermissionDenied,
        409 => io::ErrorKind::AlreadyExists,
        400 => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.why().to_string())
}

impl transfer::session::UploadFs for BeneathFs {
    type File = Open;

    fn existing(&mut self, path: &str) -> io::Result<Option<(u64, i64)>> {
        let full = self.full(path)?;
        match self.root.lstat(&full) {
            Ok(st) if st.kind == Kind::File => Ok(Some((st.size, st.modified_ms))),
            Ok(_) | Err(FsError::NotFound(_)) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    }

    fn create_temp(&mut self, path: &str) -> io::Result<Open> {
        let full = self.full(path)?;
        let parent = full.parent().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the drive itself"))?;
        if !self.made.contains(&parent) {
            self.root.create_dir_all(&parent, 0o777).map_err(to_io)?;
            self.made.insert(parent);
        }
        let (dir, name) = self.root.parent(&full).map_err(to_io)?;
        let temp = transfer::relpath::temp_name(&self.session, full.as_str());
        let file = dir
            .create_file(&temp, WriteOptions { create_new: false, create: true, truncate: true, mode: 0o666 })
            .map_err(to_io)?;
        Ok(Open { file, dir, temp, name })
    }

    fn write(&mut self, open: &mut Open, data: &[u8]) -> io::Result<()> {
        open.file.write_all(data)
    }

    fn commit(&mut self, _path: &str, open: Open, modified_at_ms: i64) -> io::Result<()> {
        set_file_mtime(&open.file, modified_at_ms, &open.name).map_err(to_io)?;
        drop(open.file);
        open.dir.rename(&open.temp, &open.dir, &open.name, true).map_err(to_io)
    }

    fn discard(&mut self, _path: &str, open: Open) {
        drop(open.file);
        if let Err(e) = open.dir.unlink(&open.temp) {
            tracing::warn!("cannot remove temporary upload file {}: {e}", open.temp);
        }
    }
}
