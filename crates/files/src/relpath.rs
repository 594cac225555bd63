//! Relative paths beneath a drive root and the file-system error type: the checks that need no kernel.

use std::fmt;

use rustix::io::Errno;


/// Longest file name the kernel takes (bytes).
pub const MAX_NAME: usize = 255;
/// Longest relative path accepted (bytes).
pub const MAX_PATH: usize = 4096;

/// A file-system refusal, with the UCloud path in its message. Maps onto HTTP with [`FsError::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    /// 404
    NotFound(String),
    /// 403: the kernel said no (permission, read-only, a symlink that is not followed).
    Forbidden(String),
    /// 409
    Exists(String),
    /// 400: a path that is malformed or would leave its drive, or an operation that makes no sense.
    BadPath(String),
    /// A rename across file systems (`EXDEV`); callers copy instead. 500 if it reaches a user.
    CrossDevice(String),
    /// 500
    Other(String),
}

impl FsError {
    pub fn status(&self) -> u16 {
        match self {
            FsError::NotFound(_) => 404,
            FsError::Forbidden(_) => 403,
            FsError::Exists(_) => 409,
            FsError::BadPath(_) => 400,
            FsError::CrossDevice(_) | FsError::Other(_) => 500,
        }
    }

    pub fn why(&self) -> &str {
        match self {
            FsError::NotFound(m)
            | FsError::Forbidden(m)
            | FsError::Exists(m)
            | FsError::BadPath(m)
            | FsError::CrossDevice(m)
            | FsError::Other(m) => m,
        }
    }

    /// The error for `errno` while working on `what` (a UCloud path).
    pub fn from_errno(e: Errno, what: &str) -> FsError {
        match e {
            Errno::NOENT => FsError::NotFound(format!("No such file or folder: {what}")),
            Errno::ACCESS | Errno::PERM => FsError::Forbidden(format!("Permission denied: {what}")),
            Errno::ROFS => FsError::Forbidden(format!("Read-only file system: {what}")),
            Errno::LOOP => FsError::Forbidden(format!("Symbolic links are not followed: {what}")),
            Errno::EXIST => FsError::Exists(format!("Already exists: {what}")),
            Errno::NOTEMPTY => FsError::Exists(format!("Folder is not empty: {what}")),
            // From openat2 with RESOLVE_BENEATH: the path would leave the drive.
            Errno::XDEV => FsError::BadPath(format!("Path leaves its drive: {what}")),
            Errno::NOTDIR => FsError::BadPath(format!("Not a folder: {what}")),
            Errno::ISDIR => FsError::BadPath(format!("Is a folder: {what}")),
            Errno::NAMETOOLONG => FsError::BadPath(format!("Name too long: {what}")),
            Errno::INVAL => FsError::BadPath(format!("Invalid operation on {what}")),
            Errno::NOSPC | Errno::DQUOT => FsError::Other(format!("No space left or quota exceeded: {what}")),
            e => FsError::Other(format!("File system error on {what}: {e}")),
        }
    }

    pub fn from_io(e: &std::io::Error, what: &str) -> FsError {
        match e.raw_os_error() {
            Some(n) => FsError::from_errno(Errno::from_raw_os_error(n), what),
            None => FsError::Other(format!("File system error on {what}: {e}")),
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.why())
    }
}

impl std::error::Error for FsError {}

pub type Result<T> = std::result::Result<T, FsError>;

/// Checks one file name: not empty, not `.`/`..`, no `/` or NUL, at most [`MAX_NAME`] bytes.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(FsError::BadPath(format!("{why}: {}", printable(name))));
    if name.is_empty() {
        return bad("Empty file name");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed in paths");
    }
    if name.contains('\0') {
        return bad("NUL is not allowed in file names");
    }
    if name.contains('/') {
        return bad("'/' is not allowed in a file name");
    }
    if name.len() > MAX_NAME {
        return Err(FsError::BadPath(format!("File name longer than {MAX_NAME} bytes: {}…", printable(&name[..floor(name, 40)]))));
    }
    Ok(())
}

fn floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A name fit for an error message (NUL and control characters escaped).
fn printable(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

/// A validated path relative to a drive root: components joined by `/`, none empty, `.` or `..`, no NUL,
/// each ≤ 255 bytes, all ≤ 4096. The empty path is the root itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    pub fn root() -> RelPath {
        RelPath(String::new())
    }

    /// Parses `a/b/c` (one trailing `/` tolerated). Refuses a leading `/`, `..`, `.`, empty components.
    pub fn parse(s: &str) -> Result<RelPath> {
        if s.len() > MAX_PATH {
            return Err(FsError::BadPath(format!("Path longer than {MAX_PATH} bytes")));
        }
        if s.starts_with('/') {
            return Err(FsError::BadPath(format!("Absolute path where a relative one is needed: {}", printable(s))));
        }
        let s = s.strip_suffix('/').unwrap_or(s);
        if s.is_empty() {
            return Ok(RelPath::root());
        }
        for c in s.split('/') {
            check_name(c)?;
        }
        Ok(RelPath(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn join(&self, name: &str) -> Result<RelPath> {
        check_name(name)?;
        let joined = if self.is_root() { name.to_string() } else { format!("{}/{name}", self.0) };
        if joined.len() > MAX_PATH {
            return Err(FsError::BadPath(format!("Path longer than {MAX_PATH} bytes")));
        }
        Ok(RelPath(joined))
    }

    /// The parent; `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => RelPath(self.0[..i].to_string()),
            None => RelPath::root(),
        })
    }

    /// The last component; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            return None;
        }
        Some(self.0.rsplit('/').next().unwrap_or(&self.0))
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// Component-wise prefix test (`a/b` is under `a`, `ab` is not).
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.is_root() || self.0 == other.0 || self.0.starts_with(&format!("{}/", other.0))
    }

    /// The path for `openat2`: `.` for the root.
    pub(crate) fn os(&self) -> &str {
        if self.is_root() {
            "."
        } else {
            &self.0
        }
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
