//! Files and drives (§6): the Drive the Core resolves for every file call, the file the provider answers,
//! the requests of browse/retrieve/folder/move/copy/trash/delete/upload/download/search, FSSupport and
//! drive registration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{null_as_default, ProductReference, ResourceOwner};

/// `{"myself": ["ADMIN","READ","EDIT"], "others": [...]}`; `myself` is the caller's (§10.9).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourcePermissions {
    #[serde(default, deserialize_with = "null_as_default")]
    pub myself: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub others: Vec<Value>,
}

impl ResourcePermissions {
    /// May the caller change things (`EDIT` or `ADMIN`)?
    pub fn can_edit(&self) -> bool {
        self.myself.iter().any(|p| p == "EDIT" || p == "ADMIN")
    }
    /// May the caller read (`READ`, `EDIT` or `ADMIN`)?
    pub fn can_read(&self) -> bool {
        self.can_edit() || self.myself.iter().any(|p| p == "READ")
    }
}

/// `specification` of a Drive (FileCollection).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriveSpecification {
    #[serde(default)]
    pub title: String,
    pub product: ProductReference,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A Drive as the Core sends it in `resolvedCollection`. The status (resolved product/support) is kept
/// raw: the provider uses its own product table (§10.16).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Drive {
    pub id: String,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub owner: ResourceOwner,
    #[serde(default)]
    pub permissions: Option<ResourcePermissions>,
    pub specification: DriveSpecification,
    #[serde(default, deserialize_with = "null_as_default")]
    pub updates: Vec<Value>,
    #[serde(default)]
    pub status: Value,
    #[serde(default)]
    pub provider_generated_id: Option<String>,
}

/// `FILE` or `DIRECTORY`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileType {
    #[default]
    File,
    Directory,
    /// Anything else the Core might send (`""` on `files.delete`, §10.13).
    #[serde(other)]
    Unknown,
}

/// `status.metadata`: the Core fills favourites and sensitivity itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileMetadata {
    #[serde(default)]
    pub metadata: Value,
}

/// `status` of a ProviderFile. Timestamps are always integers, never `null` (§10.2).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileStatus {
    #[serde(rename = "type")]
    pub kind: FileType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub icon: String,
    #[serde(default)]
    pub size_in_bytes: Option<i64>,
    #[serde(default)]
    pub size_including_children_in_bytes: Option<i64>,
    #[serde(default)]
    pub file_count: Option<i64>,
    #[serde(default)]
    pub directory_count: Option<i64>,
    #[serde(default)]
    pub modified_at: i64,
    #[serde(default)]
    pub accessed_at: i64,
    #[serde(default)]
    pub unix_mode: i64,
    #[serde(default)]
    pub unix_owner: i64,
    #[serde(default)]
    pub unix_group: i64,
    #[serde(default)]
    pub metadata: FileMetadata,
}

/// What the provider answers for a file (§6.4).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderFile {
    pub id: String,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub legacy_sensitivity: String,
    pub status: FileStatus,
}

/// `DIRECTORY_TRASH` etc.
pub const ICON_TRASH: &str = "DIRECTORY_TRASH";
pub const ICON_JOBS: &str = "DIRECTORY_JOBS";

/// FileFlags: the parts a provider reads; the rest is ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileFlags {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub include_sizes: Option<bool>,
    #[serde(default)]
    pub include_timestamps: Option<bool>,
    #[serde(default)]
    pub include_unix_info: Option<bool>,
    #[serde(default)]
    pub filter_hidden_files: Option<bool>,
    #[serde(default)]
    pub filter_by_file_extension: Option<String>,
    #[serde(default)]
    pub sort_by: Option<String>,
    #[serde(default)]
    pub sort_direction: Option<String>,
}

/// The `Browse` part of `files.browse`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrowseInner {
    #[serde(default)]
    pub flags: FileFlags,
    /// Absent when the browser sent none (§10.12): default it.
    #[serde(default)]
    pub items_per_page: Option<i64>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub sort_by: Option<String>,
    #[serde(default)]
    pub sort_direction: Option<String>,
}

/// `files.browse`: ⚠ the Core sends the key `Browse` with a capital B (§6.4); `browse` is accepted too.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrowseRequest {
    pub resolved_collection: Drive,
    #[serde(rename = "Browse", alias = "browse")]
    pub browse: BrowseInner,
}

/// PageV2 (§1.6).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct PageV2<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_as_default")]
    pub items: Vec<T>,
    pub items_per_page: i64,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RetrieveInner {
    pub id: String,
    #[serde(default)]
    pub flags: FileFlags,
}

/// `files.retrieve`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetrieveRequest {
    pub resolved_collection: Drive,
    pub retrieve: RetrieveInner,
}

/// What to do when a target name exists.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConflictPolicy {
    /// Pick `name(1).ext`, `name(2).ext`, ….
    #[default]
    Rename,
    Reject,
    Replace,
    /// Folders merge into the existing folder; files inside that clash are renamed.
    MergeRename,
}

/// `files.folder` item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CreateFolderItem {
    pub id: String,
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
    pub resolved_collection: Drive,
}

/// `files.move` / `files.copy` item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoveOrCopy {
    pub resolved_old_collection: Drive,
    pub resolved_new_collection: Drive,
    pub old_id: String,
    pub new_id: String,
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
}

/// `files.trash` and `files.emptyTrash` item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrashItem {
    pub id: String,
    pub resolved_collection: Drive,
}

/// `specification` of a UFile.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UFileSpecification {
    #[serde(default)]
    pub collection: String,
    #[serde(default)]
    pub product: ProductReference,
}

/// `files.delete` item: a UFile with id/owner/permissions/specification set; the status is a zero value
/// and is not read (§10.13). It carries no resolved Drive: the provider resolves `specification.collection`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeleteItem {
    pub id: String,
    #[serde(default)]
    pub owner: ResourceOwner,
    #[serde(default)]
    pub permissions: Option<ResourcePermissions>,
    #[serde(default)]
    pub specification: UFileSpecification,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub status: Value,
}

/// `files.createUpload` item (§6.6).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CreateUploadItem {
    pub id: String,
    /// `FILE` or `FOLDER`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub supported_protocols: Vec<String>,
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
    pub resolved_collection: Drive,
}

/// `files.createUpload` answer item. `protocol` is one of `CHUNKED`, `WEBSOCKET`, `WEBSOCKET_V1`,
/// `WEBSOCKET_V2` (§10.24).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CreateUploadResponse {
    pub endpoint: String,
    pub protocol: String,
    pub token: String,
}

/// `files.createDownload` item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CreateDownloadItem {
    pub id: String,
    pub resolved_collection: Drive,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateDownloadResponse {
    pub endpoint: String,
}

/// `category` of a streaming search request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CategoryRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub provider: String,
}

/// First frame payload of `files.provider.{P}.streamingSearch` (§3.2).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamingSearchRequest {
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub owner: ResourceOwner,
    #[serde(default)]
    pub flags: FileFlags,
    #[serde(default)]
    pub category: CategoryRef,
    /// `/12/sub`: where to search.
    #[serde(default)]
    pub current_folder: Option<String>,
}

/// A streaming search message: `{"type":"result","batch":[...]}` or `{"type":"end_of_results"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamingSearchMessage {
    Result { batch: Vec<ProviderFile> },
    EndOfResults {},
}

/// FSSupport `stats` (§6.2).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    pub size_in_bytes: bool,
    pub size_including_children_in_bytes: bool,
    pub visualization: bool,
    pub modified_at: bool,
    pub created_at: bool,
    pub accessed_at: bool,
    pub unix_permissions: bool,
    pub unix_owner: bool,
    pub unix_group: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FsCollectionSupport {
    pub acl_modifiable: bool,
    pub users_can_create: bool,
    pub users_can_delete: bool,
    pub users_can_rename: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FsFilesSupport {
    pub acl_modifiable: bool,
    pub trash_supported: bool,
    pub is_read_only: bool,
    pub search_supported: bool,
    pub streaming_search_supported: bool,
    pub shares_supported: bool,
    pub open_in_terminal: bool,
}

/// One entry of `files.collections.retrieveProducts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FsSupport {
    pub product: ProductReference,
    #[serde(default)]
    pub stats: FsStats,
    #[serde(default)]
    pub collection: FsCollectionSupport,
    #[serde(default)]
    pub files: FsFilesSupport,
}

/// `files.collections.control.register` item: `ProviderRegisteredResource<DriveSpecification>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegisterDrive {
    pub spec: DriveSpecification,
    #[serde(default)]
    pub provider_generated_id: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub project_all_read: bool,
    #[serde(default)]
    pub project_all_write: bool,
}

/// Splits a UCloud path `/<driveId>/rel/path` into the drive id and the rest (without its leading `/`).
/// `None` when it does not start with `/<non-empty id>`.
pub fn split_ucloud_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (drive, rel) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if drive.is_empty() {
        return None;
    }
    Some((drive, rel))
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
