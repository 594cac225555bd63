//! Drives and files. `beneath` resolves every path beneath a drive root in the kernel (openat2), `drives`
//! maps a UCloud Drive to its root from the configuration, `ops` are the file operations the per-user
//! instance runs (as the user, so the kernel enforces permissions as well).

pub mod beneath;
mod relpath;
pub mod drives;
pub mod ops;
pub mod tree;

#[cfg(test)]
mod testdir;
