//! File parameters: a UCloud path `/<driveId>/rel` becomes a local path beneath the user's drive, or is
//! refused before anything reaches Slurm.
//!
//! `jobs.create` carries only the path, not the Drive (§4.2), so the drive id alone must name a root.
//! Until the instance knows the user's drives by id, every drive id resolves to the user's home drive
//! (the home locator: the passwd home of the instance's own uid): a path can never leave the home, and
//! the kernel still checks every access as the user when the job runs.

use std::path::{Path, PathBuf};

use crate::Instance;

pub fn resolve(me: &Instance, ucloud_path: &str) -> Result<PathBuf, String> {
    resolve_under(&me.home, ucloud_path)
}

/// `ucloud_path` resolved beneath `root`: no `..`, `.` or empty components, no NUL, no symlink leading
/// out of the root, and it must exist (input files and folders).
pub fn resolve_under(root: &Path, ucloud_path: &str) -> Result<PathBuf, String> {
    let rest = ucloud_path.strip_prefix('/').ok_or("the path must start with /<drive id>/")?;
    let (drive, rel) = rest.split_once('/').unwrap_or((rest, ""));
    if drive.is_empty() || drive.len() > 32 || !drive.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the path does not start with a drive id".into());
    }
    if ucloud_path.contains('\0') || ucloud_path.len() > 4096 {
        return Err("the path is malformed".into());
    }
    let rel = rel.trim_end_matches('/');
    let mut local = root.to_path_buf();
    for part in rel.split('/').filter(|_| !rel.is_empty()) {
        if part.is_empty() || part == "." || part == ".." {
            return Err("the path must not contain '..', '.' or empty parts".into());
        }
        local.push(part);
    }
    let real_root = root.canonicalize().map_err(|e| format!("the drive is not available: {e}"))?;
    let real = local.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => format!("cannot be used: {e}"),
    })?;
    if !real.starts_with(&real_root) {
        return Err("the path leads outside the drive".into());
    }
    Ok(real)
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
        let real = root.canonicalize().unwrap();

        assert_eq!(resolve_under(&root, "/12/data/in.csv").unwrap(), real.join("data/in.csv"));
        assert_eq!(resolve_under(&root, "/12/data/").unwrap(), real.join("data"));
        assert_eq!(resolve_under(&root, "/12").unwrap(), real);
        assert_eq!(resolve_under(&root, "/12/inside-link").unwrap(), real.join("data/in.csv"));
        for (bad, why) in [
            ("/12/../secret", "'..'"),
            ("/12/data/../../secret", "'..'"),
            ("/12/escape", "outside the drive"),
            ("/12/missing", "no such file"),
            ("12/data", "must start with"),
            ("/x/data", "drive id"),
            ("//data", "drive id"),
            ("/12/a//b", "empty parts"),
            ("/12/a\0b", "malformed"),
        ] {
            let e = resolve_under(&root, bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
