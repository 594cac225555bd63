//! The `[storage.<product>]` sections: the drives UCloud offers on this centre's file systems.

use serde::{Deserialize, Serialize};

use crate::{valid_name, UserMode};

/// Which drives a storage product makes, and how their `providerGeneratedId`s look.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum DriveKind {
    /// One per UCloud user, registered when the user is mapped: `h-<UCloud user>`.
    Home,
    /// One per UCloud project: `p-<project id>`.
    Project,
    /// A second personal drive (scratch space): `s-<UCloud user>`.
    Scratch,
}

impl DriveKind {
    pub const ALL: [DriveKind; 3] = [DriveKind::Home, DriveKind::Project, DriveKind::Scratch];

    /// The `providerGeneratedId` prefix.
    pub fn id_prefix(self) -> &'static str {
        match self {
            DriveKind::Home => "h-",
            DriveKind::Project => "p-",
            DriveKind::Scratch => "s-",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DriveKind::Home => "home",
            DriveKind::Project => "project",
            DriveKind::Scratch => "scratch",
        }
    }
}

/// Placeholders a drive path may use, each as a whole path component.
pub const PLACEHOLDERS: [&str; 3] = ["{localUser}", "{ucloudUser}", "{project}"];

/// A storage product: one kind of drive and where its folders are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageProduct {
    pub kind: DriveKind,
    /// Absolute folder pattern, e.g. `/home/{localUser}`, `/work/projects/{project}`,
    /// `/home/ucimshared/ucloud/{ucloudUser}` (many-to-one).
    pub path: String,
    /// Product category; defaults to the product name.
    #[serde(default)]
    pub category: Option<String>,
    /// Drive title shown in UCloud; defaults to "Home", "Scratch" or the project id.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: String,
}

impl StorageProduct {
    pub fn category_name<'a>(&'a self, product: &'a str) -> &'a str {
        self.category.as_deref().unwrap_or(product)
    }
}

pub(crate) fn validate(
    storage: &std::collections::BTreeMap<String, StorageProduct>,
    mode: UserMode,
) -> Result<(), (String, String)> {
    let mut seen = std::collections::BTreeMap::new();
    for (name, p) in storage {
        let key = |field: &str| format!("storage.{name}.{field}");
        if !valid_name(name) {
            return Err((format!("storage.{name}"), "product names are 1-64 characters of a-z, A-Z, 0-9, '-' or '_'".into()));
        }
        if let Some(other) = seen.insert(p.kind, name) {
            return Err((key("kind"), format!("`{}` is already used by storage.{other}: one product per kind", p.kind.as_str())));
        }
        if let Some(c) = &p.category {
            if !valid_name(c) {
                return Err((key("category"), "must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'".into()));
            }
        }
        if !p.path.starts_with('/') || p.path.contains('\0') {
            return Err((key("path"), "must be an absolute path".into()));
        }
        let components: Vec<&str> = p.path.split('/').skip(1).collect();
        if components.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
            return Err((key("path"), "must not contain empty, '.' or '..' components".into()));
        }
        for c in &components {
            if c.contains('{') && !PLACEHOLDERS.contains(c) {
                return Err((key("path"), format!("`{c}`: placeholders are whole components, one of {}", PLACEHOLDERS.join(", "))));
            }
        }
        let has = |ph: &str| components.contains(&ph);
        let ok = match p.kind {
            DriveKind::Project => has("{project}"),
            DriveKind::Home | DriveKind::Scratch if mode == UserMode::ManyToOne => has("{ucloudUser}"),
            DriveKind::Home | DriveKind::Scratch => has("{localUser}") || has("{ucloudUser}"),
        };
        if !ok {
            let need = match p.kind {
                DriveKind::Project => "{project}",
                _ if mode == UserMode::ManyToOne => "{ucloudUser} (many-to-one: every UCloud user needs a folder of their own)",
                _ => "{localUser} or {ucloudUser}",
            };
            return Err((key("path"), format!("a {} drive path must contain {need}", p.kind.as_str())));
        }
        if p.kind != DriveKind::Project && has("{project}") {
            return Err((key("path"), "{project} is only for project drives".into()));
        }
    }
    Ok(())
}
