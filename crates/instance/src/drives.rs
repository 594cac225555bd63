//! File parameters: a UCloud path `/<driveId>/rel` becomes a local path beneath the user's drive, or is
//! refused before anything reaches Slurm.
//!
//! `jobs.create` carries only the path, not the Drive (§4.2), so the drive id alone must name a root.
//! Until the instance knows the user's drives by id (the Drive objects `files::drives::Drives::locate`
//! takes come with file calls, not with jobs), every drive id resolves to the user's home drive (the home
//! locator: the passwd home of the instance's own uid): a path can never leave the home, and the kernel
//! still checks every access as the user when the job runs. NOTE: project and scratch drives are not yet
//! resolvable for jobs; that needs the server's driveId → Drive table.

use std::path::{Path, PathBuf};

use files::beneath::{FsError, Kind, RelPath, Root};

use crate::Instance;

pub fn resolve(me: &Instance, ucloud_path: &str) -> Result<PathBuf, String> {
    resolve_under(&me.home, ucloud_path)
}

/// `ucloud_path` resolved beneath `root` by the kernel (`files::beneath`: openat2 with RESOLVE_BENEATH and
/// no symlinks in any component): no `..`, `.` or empty parts, no NUL, no symlink at all, and it must
/// exist (input files and folders) as a file or folder.
pub fn resolve_under(root: &Path, ucloud_path: &str) -> Result<PathBuf, String> {
    let (drive, rel) = protocol::split_ucloud_path(ucloud_path).ok_or("the path must start with /<drive id>/")?;
    if drive.len() > 32 || !drive.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the path does not start with a drive id".into());
    }
    let rel = RelPath::parse(rel).map_err(|e| format!("the path is not allowed: {}", e.why()))?;
    let dir = Root::open(root, format!("/{drive}")).map_err(|e| format!("the drive is not available: {}", e.why()))?;
    let stat = dir.lstat(&rel).map_err(|e| match e {
        FsError::NotFound(_) => "no such file or folder".to_string(),
        e => format!("the path cannot be used: {}", e.why()),
    })?;
    if !matches!(stat.kind, Kind::File | Kind::Dir) {
        return Err("the path is not a file or folder (symbolic links are not followed)".into());
    }
    Ok(root.join(rel.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_beneath_the_root_and_refuses_the_rest() {
        let dir = std::env::temp_dir().join(format!("ucim-drives-{}", std::process::id()));
        let root = dir.join("home");
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("data/in.csv"), "x").unwrap();
        std::fs::write(dir.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink("data/in.csv", root.join("inside-link")).unwrap();

        assert_eq!(resolve_under(&root, "/12/data/in.csv").unwrap(), root.join("data/in.csv"));
        assert_eq!(resolve_under(&root, "/12/data/").unwrap(), root.join("data"));
        assert_eq!(resolve_under(&root, "/12").unwrap(), root.join(""));
        for (bad, why) in [
            ("/12/../secret", "not allowed"),
            ("/12/data/../../secret", "not allowed"),
            ("/12/escape", "symbolic links"),
            ("/12/inside-link", "symbolic links"),
            ("/12/escape/x", "cannot be used"),
            ("/12/missing", "no such file"),
            ("12/data", "must start with"),
            ("/x/data", "drive id"),
            ("//data", "must start with"),
            ("/12/a//b", "not allowed"),
            ("/12/a\0b", "not allowed"),
        ] {
            let e = resolve_under(&root, bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
