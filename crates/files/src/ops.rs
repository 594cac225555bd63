//! The file operations of §6.4, as plain blocking functions over a verified caller. The instance runs them
//! on blocking threads (as the user, so the kernel checks permissions too) and turns errors into answers.

use config::DriveKind;
use protocol::{
    ConflictPolicy, CreateFolderItem, DeleteItem, Drive, DriveSpecification, FileMetadata, FileStatus, FileType,
    MoveOrCopy, PageV2, ProductReference, ProviderFile, ResourceOwner, ResourcePermissions, RetrieveRequest,
    StreamingSearchRequest, TrashItem, BrowseRequest, ICON_TRASH,
};

use crate::beneath::{FileStat, FsError, Kind, RelPath, Result, Root};
use crate::drives::{parse_path, Caller, Drives};
use crate::tree::{self, Progress};

/// Page size when the browser sent none (§10.12) or nonsense (§1.6).
pub const DEFAULT_ITEMS_PER_PAGE: i64 = 50;
pub const MAX_ITEMS_PER_PAGE: i64 = 1000;
/// The trash folder at the root of every drive.
pub const TRASH: &str = "Trash";
/// Streaming search stops after this many results.
pub const MAX_SEARCH_RESULTS: usize = 10_000;
const SEARCH_BATCH: usize = 100;

/// A caller's view of this provider's files.
pub struct Files<'a> {
    pub drives: &'a Drives,
    pub caller: Caller<'a>,
}

/// The ProviderFile for `id` with `st`. Timestamps are always integers (§10.2); `createdAt` is the
/// modification time, which is what the Core shows anyway (§10.8).
pub fn provider_file(id: String, st: &FileStat, icon: &str) -> ProviderFile {
    ProviderFile {
        id,
        created_at: st.modified_ms,
        legacy_sensitivity: String::new(),
        status: FileStatus {
            kind: if st.kind == Kind::Dir { FileType::Directory } else { FileType::File },
            icon: icon.to_string(),
            size_in_bytes: Some(st.size as i64),
            size_including_children_in_bytes: None,
            file_count: None,
            directory_count: None,
            modified_at: st.modified_ms,
            accessed_at: st.accessed_ms,
            unix_mode: i64::from(st.mode & 0o777),
            unix_owner: i64::from(st.uid),
            unix_group: i64::from(st.gid),
            metadata: FileMetadata::default(),
        },
    }
}

fn icon(rel: &RelPath, st: &FileStat) -> &'static str {
    if st.is_dir() && rel.as_str() == TRASH {
        ICON_TRASH
    } else {
        ""
    }
}

fn require_edit(drive: &Drive) -> Result<()> {
    match &drive.permissions {
        Some(p) if !p.can_edit() => Err(FsError::Forbidden(format!("No permission to change drive /{}", drive.id))),
        _ => Ok(()),
    }
}

impl<'a> Files<'a> {
    pub fn new(drives: &'a Drives, caller: Caller<'a>) -> Files<'a> {
        Files { drives, caller }
    }

    pub fn open(&self, drive: &Drive) -> Result<Root> {
        self.drives.open(drive, self.caller)
    }

    /// A Drive for calls that carry only its id (`files.delete`, streaming search). Users cannot create
    /// drives here (`usersCanCreate` is false), so a product and an owner name one drive: `h-`/`s-` of the
    /// owning user or `p-` of the owning project. [`Drives::locate`] then checks it is the caller's.
    pub fn drive_from_parts(
        &self,
        id: &str,
        owner: &ResourceOwner,
        product_id: Option<&str>,
        category: Option<&str>,
        permissions: Option<ResourcePermissions>,
    ) -> Result<Drive> {
        let l = self
            .drives
            .locators
            .iter()
            .filter(|l| product_id.is_none_or(|p| p == l.product) && category.is_none_or(|c| c == l.category))
            .find(|l| (l.kind == DriveKind::Project) == owner.project.is_some())
            .ok_or_else(|| FsError::NotFound(format!("Drive /{id} is not managed by this provider")))?;
        let name = match (&owner.project, l.kind) {
            (Some(p), _) => p.clone(),
            (None, _) if owner.created_by.is_empty() => self.caller.ucloud_user.to_string(),
            (None, _) => owner.created_by.clone(),
        };
        Ok(Drive {
            id: id.to_string(),
            owner: owner.clone(),
            permissions,
            specification: DriveSpecification { title: String::new(), product: self.drives.product_ref(l), labels: None },
            provider_generated_id: Some(Drives::provider_generated_id(l.kind, &name)),
            ..Default::default()
        })
    }

    /// `files.browse`: one page of a folder, sorted and filtered.
    pub fn browse(&self, req: &BrowseRequest) -> Result<PageV2<ProviderFile>> {
        let drive = &req.resolved_collection;
        let b = &req.browse;
        let path = b.flags.path.as_deref().ok_or_else(|| FsError::BadPath("flags.path is missing".into()))?;
        let rel = parse_path(drive, path)?;
        let root = self.open(drive)?;
        let dir = root.open_dir(&rel)?;
        let hide = b.flags.filter_hidden_files == Some(true);
        let ext = b.flags.filter_by_file_extension.as_deref().filter(|e| !e.is_empty());
        let mut entries: Vec<_> = dir
            .entries()?
            .into_iter()
            .filter(|e| !(hide && e.name.starts_with('.')))
            .filter(|e| ext.is_none_or(|x| e.stat.is_dir() || e.name.ends_with(x)))
            .collect();
        let sort_by = b.sort_by.as_deref().or(b.flags.sort_by.as_deref()).unwrap_or("PATH").to_ascii_uppercase();
        let direction = b.sort_direction.as_deref().or(b.flags.sort_direction.as_deref()).unwrap_or("ascending");
        match sort_by.as_str() {
            "SIZE" => entries.sort_by(|x, y| x.stat.size.cmp(&y.stat.size).then_with(|| x.name.cmp(&y.name))),
            "MODIFIED_AT" => {
                entries.sort_by(|x, y| x.stat.modified_ms.cmp(&y.stat.modified_ms).then_with(|| x.name.cmp(&y.name)))
            }
            _ => entries.sort_by(|x, y| x.name.cmp(&y.name)),
        }
        if direction.eq_ignore_ascii_case("descending") {
            entries.reverse();
        }
        let per_page = match b.items_per_page {
            Some(n) if n > 0 => n.min(MAX_ITEMS_PER_PAGE),
            _ => DEFAULT_ITEMS_PER_PAGE,
        };
        let offset = match b.next.as_deref() {
            None | Some("") => 0,
            Some(n) => n.parse::<usize>().map_err(|_| FsError::BadPath(format!("Malformed page token: {n}")))?,
        };
        let end = (offset + per_page as usize).min(entries.len());
        let items = entries
            .get(offset.min(end)..end)
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let child = rel.join(&e.name).unwrap_or_default();
                provider_file(root.ucloud_path(&child), &e.stat, icon(&child, &e.stat))
            })
            .collect();
        let next = (end < entries.len()).then(|| end.to_string());
        Ok(PageV2 { items, items_per_page: per_page, next })
    }

    /// `files.retrieve`, with the recursive size and counts of a folder when `includeSizes` is set.
    pub fn retrieve(&self, req: &RetrieveRequest) -> Result<ProviderFile> {
        let drive = &req.resolved_collection;
        let rel = parse_path(drive, &req.retrieve.id)?;
        let root = self.open(drive)?;
        let st = root.lstat(&rel)?;
        let mut file = provider_file(root.ucloud_path(&rel), &st, icon(&rel, &st));
        if st.is_dir() && req.retrieve.flags.include_sizes == Some(true) {
            let (bytes, files, dirs) = tree::sizes(&root.open_dir(&rel)?)?;
            file.status.size_including_children_in_bytes = Some(bytes as i64);
            file.status.file_count = Some(files as i64);
            file.status.directory_count = Some(dirs as i64);
        }
        Ok(file)
    }

    /// `files.folder`.
    pub fn create_folder(&self, item: &CreateFolderItem) -> Result<()> {
        let drive = &item.resolved_collection;
        require_edit(drive)?;
        let rel = parse_path(drive, &item.id)?;
        let root = self.open(drive)?;
        let (dir, name) = root.parent(&rel)?;
        for _ in 0..5 {
            let name = match item.conflict_policy {
                ConflictPolicy::Rename => tree::free_name(&dir, &name)?,
                _ => name.clone(),
            };
            match dir.mkdir(&name, 0o777) {
                Err(FsError::Exists(_)) if item.conflict_policy == ConflictPolicy::Rename => continue,
                Err(FsError::Exists(e)) => {
                    let st = dir.stat(&name)?;
                    return match item.conflict_policy {
                        ConflictPolicy::Reject => Err(FsError::Exists(e)),
                        _ if st.is_dir() => Ok(()),
                        ConflictPolicy::Replace => {
                            tree::remove(&dir, &name, &Progress::default())?;
                            dir.mkdir(&name, 0o777)
                        }
                        _ => dir.mkdir(&tree::free_name(&dir, &name)?, 0o777),
                    };
                }
                other => return other,
            }
        }
        Err(FsError::Exists(format!("Already exists: {}", item.id)))
    }

    /// `files.move` and `files.copy`, across drives of this provider, with the conflict policies.
    pub fn move_or_copy(&self, item: &MoveOrCopy, copy: bool, progress: &Progress) -> Result<()> {
        let (old, new) = (&item.resolved_old_collection, &item.resolved_new_collection);
        if !copy {
            require_edit(old)?;
        }
        require_edit(new)?;
        let from = parse_path(old, &item.old_id)?;
        let to = parse_path(new, &item.new_id)?;
        let src_root = self.open(old)?;
        let dst_root = if old.id == new.id { self.open(old)? } else { self.open(new)? };
        let (src, name) = src_root.parent(&from)?;
        let (dst, to_name) = dst_root.parent(&to)?;
        let st = src.stat(&name)?;
        if tree::inside(&src_root, &from, &dst_root, &to)? {
            if from == to && (!copy || item.conflict_policy == ConflictPolicy::Replace) {
                return Ok(()); // onto itself: nothing to do
            }
            if from != to && st.is_dir() {
                return Err(FsError::BadPath(format!("Cannot put a folder inside itself: {}", item.old_id)));
            }
        }
        if let Ok(existing) = dst.stat(&to_name) {
            if (existing.dev, existing.ino) == (st.dev, st.ino) && item.conflict_policy == ConflictPolicy::Replace {
                return Ok(()); // the same file under two names: replacing it would destroy the source
            }
        }
        for _ in 0..5 {
            let (target, merge) = tree::target_name(&dst, &to_name, st.is_dir(), item.conflict_policy, progress)?;
            let done = if copy {
                tree::copy(&src, &name, &dst, &target, merge, progress)
            } else {
                tree::move_entry(&src, &name, &dst, &target, merge, progress)
            };
            match done {
                // Someone took the name between our check and the exclusive create: pick again.
                Err(FsError::Exists(_))
                    if !merge && matches!(item.conflict_policy, ConflictPolicy::Rename | ConflictPolicy::MergeRename) =>
                {
                    continue
                }
                other => return other,
            }
        }
        Err(FsError::Exists(format!("Already exists: {}", item.new_id)))
    }

    /// `files.trash`: moves to `/<drive>/Trash` (renamed on conflict). Something already in the trash is
    /// deleted for good.
    pub fn trash(&self, item: &TrashItem, progress: &Progress) -> Result<()> {
        let drive = &item.resolved_collection;
        require_edit(drive)?;
        let rel = parse_path(drive, &item.id)?;
        let root = self.open(drive)?;
        let trash = RelPath::root().join(TRASH)?;
        if rel == trash {
            return Err(FsError::BadPath("The trash folder itself cannot be trashed (empty it instead)".into()));
        }
        let (src, name) = root.parent(&rel)?;
        if rel.starts_with(&trash) {
            return tree::remove(&src, &name, progress);
        }
        match root.mkdir(&trash, 0o700) {
            Ok(()) | Err(FsError::Exists(_)) => {}
            Err(e) => return Err(e),
        }
        let dst = root.open_dir(&trash)?;
        for _ in 0..5 {
            let target = tree::free_name(&dst, &name)?;
            match tree::move_entry(&src, &name, &dst, &target, false, progress) {
                Err(FsError::Exists(_)) => continue,
                other => return other,
            }
        }
        Err(FsError::Exists(format!("No free name in the trash for {}", item.id)))
    }

    /// `files.emptyTrash`: removes everything in the trash folder named by `id`.
    pub fn empty_trash(&self, item: &TrashItem, progress: &Progress) -> Result<()> {
        let drive = &item.resolved_collection;
        require_edit(drive)?;
        let rel = parse_path(drive, &item.id)?;
        if rel.file_name() != Some(TRASH) {
            return Err(FsError::BadPath(format!("Not a trash folder: {}", item.id)));
        }
        let root = self.open(drive)?;
        let dir = root.open_dir(&rel)?;
        for e in dir.entries()? {
            tree::remove(&dir, &e.name, progress)?;
        }
        Ok(())
    }

    /// `files.delete` (§10.13): removes the file or tree for good.
    pub fn delete(&self, item: &DeleteItem, progress: &Progress) -> Result<()> {
        let spec = &item.specification;
        let drive = self.drive_from_parts(
            &spec.collection,
            &item.owner,
            Some(spec.product.id.as_str()).filter(|p| !p.is_empty()),
            None,
            item.permissions.clone(),
        )?;
        require_edit(&drive)?;
        let rel = parse_path(&drive, &item.id)?;
        let root = self.open(&drive)?;
        let (dir, name) = root.parent(&rel)?;
        tree::remove(&dir, &name, progress)
    }

    /// Streaming search: files whose name contains `query` (case-insensitive) under `currentFolder`, in
    /// batches handed to `emit`; `emit` returns false when the client has gone, which stops the walk.
    pub fn search(&self, req: &StreamingSearchRequest, mut emit: impl FnMut(Vec<ProviderFile>) -> bool) -> Result<()> {
        let folder = req.current_folder.as_deref().ok_or_else(|| FsError::BadPath("currentFolder is missing".into()))?;
        let (drive_id, _) = protocol::split_ucloud_path(folder)
            .ok_or_else(|| FsError::BadPath(format!("Not a UCloud path: {}", folder.escape_default())))?;
        let category = Some(req.category.name.as_str()).filter(|c| !c.is_empty());
        let read = ResourcePermissions { myself: vec!["READ".into()], others: vec![] };
        let drive = self.drive_from_parts(drive_id, &req.owner, None, category, Some(read))?;
        let rel = parse_path(&drive, folder)?;
        let root = self.open(&drive)?;
        let query = req.query.to_lowercase();
        if query.is_empty() {
            return Err(FsError::BadPath("Empty search".into()));
        }
        let hide = req.flags.filter_hidden_files == Some(true);
        let (mut found, mut batch) = (0usize, Vec::new());
        let mut stack = vec![rel];
        while let Some(at) = stack.pop() {
            let Ok(dir) = root.open_dir(&at) else { continue };
            let Ok(entries) = dir.entries() else { continue };
            for e in entries {
                if hide && e.name.starts_with('.') {
                    continue;
                }
                let Ok(child) = at.join(&e.name) else { continue };
                if e.name.to_lowercase().contains(&query) {
                    batch.push(provider_file(root.ucloud_path(&child), &e.stat, ""));
                    found += 1;
                }
                if e.stat.is_dir() {
                    stack.push(child);
                }
                if batch.len() >= SEARCH_BATCH && !emit(std::mem::take(&mut batch)) {
                    return Ok(());
                }
                if found >= MAX_SEARCH_RESULTS {
                    break;
                }
            }
            if found >= MAX_SEARCH_RESULTS {
                break;
            }
        }
        if !batch.is_empty() {
            emit(batch);
        }
        Ok(())
    }
}

/// The product reference of a drive kind, for tests and the sim.
pub fn product_of(drives: &Drives, kind: DriveKind) -> Option<ProductReference> {
    drives.by_kind(kind).map(|l| drives.product_ref(l))
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
