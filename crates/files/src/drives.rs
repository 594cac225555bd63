//! Drives: storage products from the configuration, the Drive the Core sends → its root folder, and
//! UCloud paths (`/<driveId>/rel/path`) → paths beneath that root.
//!
//! `providerGeneratedId` scheme (stable, so registration is idempotent across restarts):
//! - `h-<UCloud user>`: the user's home drive (the product of kind `home`);
//! - `s-<UCloud user>`: the user's scratch drive (kind `scratch`);
//! - `p-<project id>`: a project's drive (kind `project`).
//!
//! A personal drive belongs to exactly the UCloud user in its id: any other caller is refused, whatever
//! the Core sent. That is what confines users to their own folders in many-to-one mode, where the kernel
//! cannot tell them apart.

use std::path::PathBuf;

use config::{Config, DriveKind, StorageProduct};
use protocol::{split_ucloud_path, Drive, DriveSpecification, ProductReference, RegisterDrive};

use crate::beneath::{check_name, FsError, RelPath, Result, Root};

/// One storage product and where its drives are.
#[derive(Debug, Clone, PartialEq)]
pub struct Locator {
    pub product: String,
    pub category: String,
    pub kind: DriveKind,
    pub pattern: String,
    pub title: Option<String>,
}

/// Who is calling: the UCloud user from the verified header and the unix user this instance runs as.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub ucloud_user: &'a str,
    pub local_user: &'a str,
}

/// The drives of this provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Drives {
    pub provider: String,
    pub locators: Vec<Locator>,
}

/// A Drive mapped onto the host: the trusted prefix (from configuration, resolved normally) and the part
/// filled from UCloud names, resolved beneath the prefix without following symlinks.
#[derive(Debug, Clone, PartialEq)]
pub struct DriveLocation {
    pub kind: DriveKind,
    pub product: String,
    /// The Core's drive id (`12`); UCloud paths on this drive start with `/12`.
    pub drive_id: String,
    pub prefix: PathBuf,
    pub rest: RelPath,
}

impl DriveLocation {
    pub fn host_path(&self) -> PathBuf {
        self.prefix.join(self.rest.as_str())
    }

    /// `/<driveId>`
    pub fn label(&self) -> String {
        format!("/{}", self.drive_id)
    }
}

impl Drives {
    pub fn from_config(config: &Config) -> Drives {
        Drives::new(&config.provider_id, &config.storage)
    }

    pub fn new(provider: &str, storage: &std::collections::BTreeMap<String, StorageProduct>) -> Drives {
        let locators = storage
            .iter()
            .map(|(name, p)| Locator {
                product: name.clone(),
                category: p.category_name(name).to_string(),
                kind: p.kind,
                pattern: p.path.clone(),
                title: p.title.clone(),
            })
            .collect();
        Drives { provider: provider.to_string(), locators }
    }

    pub fn by_kind(&self, kind: DriveKind) -> Option<&Locator> {
        self.locators.iter().find(|l| l.kind == kind)
    }

    pub fn is_empty(&self) -> bool {
        self.locators.is_empty()
    }

    /// The `providerGeneratedId` of a drive of `kind` named `name` (UCloud user or project id).
    pub fn provider_generated_id(kind: DriveKind, name: &str) -> String {
        format!("{}{name}", kind.id_prefix())
    }

    /// The registrations a UCloud user's personal drives need (home, scratch), for
    /// `files.collections.control.register`.
    pub fn personal_registrations(&self, ucloud_user: &str) -> Vec<RegisterDrive> {
        [DriveKind::Home, DriveKind::Scratch]
            .into_iter()
            .filter_map(|kind| self.by_kind(kind))
            .map(|l| RegisterDrive {
                spec: DriveSpecification {
                    title: l.title.clone().unwrap_or_else(|| if l.kind == DriveKind::Home { "Home" } else { "Scratch" }.into()),
                    product: self.product_ref(l),
                    labels: None,
                },
                provider_generated_id: Some(Drives::provider_generated_id(l.kind, ucloud_user)),
                created_by: Some(ucloud_user.to_string()),
                project: None,
                project_all_read: false,
                project_all_write: false,
            })
            .collect()
    }

    /// The registration of a project's drive, if project drives are configured.
    pub fn project_registration(&self, project: &str, title: Option<&str>) -> Option<RegisterDrive> {
        let l = self.by_kind(DriveKind::Project)?;
        Some(RegisterDrive {
            spec: DriveSpecification {
                title: title.or(l.title.as_deref()).unwrap_or(project).to_string(),
                product: self.product_ref(l),
                labels: None,
            },
            provider_generated_id: Some(Drives::provider_generated_id(DriveKind::Project, project)),
            created_by: None,
            project: Some(project.to_string()),
            project_all_read: true,
            project_all_write: true,
        })
    }

    pub fn product_ref(&self, l: &Locator) -> ProductReference {
        ProductReference { id: l.product.clone(), category: l.category.clone(), provider: self.provider.clone() }
    }

    /// Where a Drive is, after checking it is ours and the caller's. Refusals: a drive without a
    /// `providerGeneratedId` of ours (404), another provider's or product's drive (400), a personal drive of
    /// another UCloud user (403), a project drive the caller has no permission on (403).
    pub fn locate(&self, drive: &Drive, caller: Caller<'_>) -> Result<DriveLocation> {
        let label = format!("/{}", drive.id);
        if drive.id.is_empty() || check_name(&drive.id).is_err() {
            return Err(FsError::BadPath("Malformed drive id".into()));
        }
        let pgid = drive.provider_generated_id.as_deref().unwrap_or("");
        let (kind, name) = DriveKind::ALL
            .into_iter()
            .find_map(|k| pgid.strip_prefix(k.id_prefix()).map(|n| (k, n)))
            .ok_or_else(|| FsError::NotFound(format!("Drive {label} is not managed by this provider")))?;
        let l = self
            .by_kind(kind)
            .ok_or_else(|| FsError::NotFound(format!("Drive {label}: no {} drives are configured", kind.as_str())))?;
        let product = &drive.specification.product;
        if product.provider != self.provider || product.id != l.product {
            return Err(FsError::BadPath(format!("Drive {label} is not a {} drive of this provider", l.product)));
        }
        check_name(name).map_err(|_| FsError::BadPath(format!("Drive {label} has a malformed id")))?;
        match kind {
            DriveKind::Home | DriveKind::Scratch => {
                if name != caller.ucloud_user {
                    tracing::warn!(drive = %drive.id, owner = name, caller = caller.ucloud_user, "refused another user's drive");
                    return Err(FsError::Forbidden(format!("Drive {label} belongs to another user")));
                }
            }
            DriveKind::Project => {
                let readable = drive.permissions.as_ref().is_some_and(|p| p.can_read());
                if drive.owner.project.as_deref() != Some(name) || !readable {
                    return Err(FsError::Forbidden(format!("No access to project drive {label}")));
                }
            }
        }
        let (prefix, rest) = fill(&l.pattern, caller.local_user, name)?;
        Ok(DriveLocation { kind, product: l.product.clone(), drive_id: drive.id.clone(), prefix, rest })
    }

    /// Opens a Drive's root for the caller. Personal folders named after the UCloud user (many-to-one)
    /// are created (0700) on first use; anything else must exist.
    pub fn open(&self, drive: &Drive, caller: Caller<'_>) -> Result<Root> {
        let loc = self.locate(drive, caller)?;
        let label = loc.label();
        let prefix = Root::open(&loc.prefix, label.clone()).map_err(|e| match e {
            FsError::NotFound(_) => FsError::NotFound(format!("The folder of drive {label} does not exist")),
            e => e,
        })?;
        if loc.rest.is_root() {
            return Ok(prefix);
        }
        match prefix.open_sub(&loc.rest, label.clone()) {
            Err(FsError::NotFound(_)) if loc.kind != DriveKind::Project => {
                prefix.create_dir_all(&loc.rest, 0o700)?;
                prefix.open_sub(&loc.rest, label)
            }
            other => other,
        }
    }
}

/// Fills a pattern. The prefix before the first component filled from a UCloud name is trusted; that
/// component and everything after it become a [`RelPath`] resolved beneath the prefix.
fn fill(pattern: &str, local_user: &str, name: &str) -> Result<(PathBuf, RelPath)> {
    check_name(local_user)?;
    let mut prefix = PathBuf::from("/");
    let mut rest: Option<RelPath> = None;
    for c in pattern.split('/').filter(|c| !c.is_empty()) {
        let (value, from_ucloud) = match c {
            "{localUser}" => (local_user, false),
            "{ucloudUser}" | "{project}" => (name, true),
            c => (c, false),
        };
        match rest.as_mut() {
            Some(r) => *r = r.join(value)?,
            None if from_ucloud => rest = Some(RelPath::root().join(value)?),
            None => prefix.push(value),
        }
    }
    Ok((prefix, rest.unwrap_or_default()))
}

/// Parses a UCloud path that must lie on `drive`: `/<drive.id>/rel`. A path naming another drive is
/// refused (400), as is anything [`RelPath::parse`] refuses.
pub fn parse_path(drive: &Drive, path: &str) -> Result<RelPath> {
    let (id, rel) = split_ucloud_path(path)
        .ok_or_else(|| FsError::BadPath(format!("Not a UCloud path (/<drive>/<path>): {}", path.escape_default())))?;
    if id != drive.id {
        return Err(FsError::BadPath(format!("Path {} is not on drive /{}", path.escape_default(), drive.id)));
    }
    RelPath::parse(rel)
}

#[cfg(test)]
#[path = "drives_tests.rs"]
mod tests;
