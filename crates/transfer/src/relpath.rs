//! Relative paths from the network. This is the first check only: the kernel resolves every path beneath
//! the drive root as well (`files::beneath`), so a symlink cannot lead out either.

use sha2::{Digest, Sha256};

/// Longest path accepted (Linux's PATH_MAX less the terminator).
pub const MAX_PATH: usize = 4095;
/// Longest name of one component (NAME_MAX).
pub const MAX_NAME: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("absolute path")]
    Absolute,
    #[error("`..` or `.` component")]
    Dots,
    #[error("empty component")]
    EmptyComponent,
    #[error("NUL byte")]
    Nul,
    #[error("a name longer than {MAX_NAME} bytes")]
    NameTooLong,
    #[error("longer than {MAX_PATH} bytes")]
    TooLong,
}

/// Accepts `""` (the target itself) and `a/b/c` with ordinary names only.
pub fn validate_relative(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    for c in path.split('/') {
        match c {
            "" => return Err(PathError::EmptyComponent),
            "." | ".." => return Err(PathError::Dots),
            c if c.len() > MAX_NAME => return Err(PathError::NameTooLong),
            _ => {}
        }
    }
    Ok(())
}

/// Joins a validated base (may be empty) and a validated relative path.
pub fn join(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}/{rel}"),
    }
}

/// `("a/b", "c")` for `a/b/c`; `("", "c")` for `c`.
pub fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", path),
    }
}

/// The name data is written under until the last byte arrives, in the same directory as the final name
/// (so the rename is atomic). Deterministic per session and file: a resumed upload reuses (truncates) the
/// same temporary file instead of leaving one behind per attempt. Dot-prefixed, so hidden in listings.
pub fn temp_name(session: &[u8], path: &str) -> String {
    let (_, name) = split_parent(path);
    let mut h = Sha256::new();
    h.update(session);
    h.update([0]);
    h.update(path.as_bytes());
    let digest = h.finalize();
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let full = format!(".{name}.ucim-upload-{hash}");
    if full.len() <= MAX_NAME {
        full
    } else {
        format!(".ucim-upload-{hash}")
    }
}

/// Whether a name is one of our temporary names (hidden from nothing, but recognisable for cleanup).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.rsplit_once(".ucim-upload-").is_some_and(|(_, h)| h.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_and_bad_paths() {
        for ok in ["", "a", "a/b/c", "with space/ü.txt", ".hidden", "a..b", "...", &"x".repeat(255)] {
            assert_eq!(validate_relative(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(validate_relative("/a"), Err(PathError::Absolute));
        assert_eq!(validate_relative(".."), Err(PathError::Dots));
        assert_eq!(validate_relative("a/../b"), Err(PathError::Dots));
        assert_eq!(validate_relative("a/./b"), Err(PathError::Dots));
        assert_eq!(validate_relative("a//b"), Err(PathError::EmptyComponent));
        assert_eq!(validate_relative("a/"), Err(PathError::EmptyComponent));
        assert_eq!(validate_relative("a\0"), Err(PathError::Nul));
        assert_eq!(validate_relative(&"x".repeat(256)), Err(PathError::NameTooLong));
        assert_eq!(validate_relative(&"abc/".repeat(1100)), Err(PathError::TooLong));
    }

    #[test]
    fn temp_names_are_per_session_and_file() {
        let a = temp_name(b"s1", "dir/file.bin");
        assert!(a.starts_with(".file.bin.ucim-upload-"), "{a}");
        assert!(is_temp_name(&a));
        assert_eq!(a, temp_name(b"s1", "dir/file.bin"));
        assert_ne!(a, temp_name(b"s2", "dir/file.bin"));
        assert_ne!(a, temp_name(b"s1", "other/file.bin"));
        let long = temp_name(b"s", &"n".repeat(250));
        assert!(long.len() <= MAX_NAME && is_temp_name(&long));
        assert!(!is_temp_name("file.txt"));
    }

    #[test]
    fn join_and_split() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", ""), "a");
        assert_eq!(join("a", "b/c"), "a/b/c");
        assert_eq!(split_parent("a/b/c"), ("a/b", "c"));
        assert_eq!(split_parent("c"), ("", "c"));
    }
}
