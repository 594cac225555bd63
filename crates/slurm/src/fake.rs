//! Fake Slurm tools for unit tests: shell scripts in a private bin dir, to test the process plumbing (argv,
//! exit codes, stderr) without Slurm.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Writes `script` as the tool `name` into a directory of its own for `test` (tests run in parallel) and
/// returns the directory, for [`crate::SlurmClient::new`]. Call again with the same `test` to add tools.
pub(crate) fn fake_bin(test: &str, name: &str, script: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ucim-slurm-fake-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write fake");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A fake tool body that records its arguments, one per line, in `DIR/NAME.argv`, then runs `then`.
pub(crate) fn recording(then: &str) -> String {
    format!("printf '%s\\n' \"$@\" > \"$0.argv\"\n{then}")
}

/// What a [`recording`] tool was called with.
pub(crate) fn recorded(dir: &std::path::Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("{name}.argv")))
        .expect("tool was called")
        .lines()
        .map(str::to_string)
        .collect()
}
