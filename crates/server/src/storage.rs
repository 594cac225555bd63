//! Storage products: what `files.collections.retrieveProducts` answers, their registration as products,
//! and the registration of each mapped user's personal drives with the Core.
//!
//! Drives are registered with stable `providerGeneratedId`s (`h-<UCloud user>`, `s-<UCloud user>`), and
//! the Core answers 409 to a reused one, so registering again (every start, every new mapping) is
//! harmless: 409 counts as done. Failures are retried with backoff until the Core takes them.

use std::sync::Arc;
use std::time::Duration;

use config::Config;
use files::drives::Drives;
use protocol::{
    AccountingUnit, FsCollectionSupport, FsFilesSupport, FsStats, FsSupport, ProductCategory, ProductReference,
    ProductV2,
};

use crate::Server;

/// What is implemented, and nothing more: sizes (recursive on retrieve), timestamps, unix info, trash and
/// streaming search. Drives are made by the provider (no user-created, renamed or deleted drives), there
/// are no ACLs or shares, and no terminal.
pub fn fs_support(config: &Config) -> Vec<FsSupport> {
    config
        .storage
        .iter()
        .map(|(name, p)| FsSupport {
            product: ProductReference {
                id: name.clone(),
                category: p.category_name(name).to_string(),
                provider: config.provider_id.clone(),
            },
            stats: FsStats {
                size_in_bytes: true,
                size_including_children_in_bytes: true,
                visualization: false,
                modified_at: true,
                created_at: false,
                accessed_at: true,
                unix_permissions: true,
                unix_owner: true,
                unix_group: true,
            },
            collection: FsCollectionSupport::default(),
            files: FsFilesSupport {
                acl_modifiable: false,
                trash_supported: true,
                is_read_only: false,
                search_supported: false,
                streaming_search_supported: true,
                shares_supported: false,
                open_in_terminal: false,
            },
        })
        .collect()
}

/// Storage products for `products.v2.create`: free, accounted in GB per day.
pub fn products_v2(config: &Config) -> Vec<ProductV2> {
    config
        .storage
        .iter()
        .map(|(name, p)| ProductV2 {
            kind: "storage".into(),
            category: ProductCategory {
                name: p.category_name(name).to_string(),
                provider: config.provider_id.clone(),
                product_type: "STORAGE".into(),
                accounting_unit: AccountingUnit {
                    name: "GB".into(),
                    name_plural: "GB".into(),
                    floating_point: false,
                    display_frequency_suffix: false,
                },
                accounting_frequency: "ONCE".into(),
                free_to_use: true,
                allow_sub_allocations: true,
            },
            name: name.clone(),
            description: if p.description.is_empty() { format!("{} drives", p.kind.as_str()) } else { p.description.clone() },
            product_type: "STORAGE".into(),
            price: 0,
            hidden_in_grant_applications: false,
            cpu: None,
            memory_in_gigs: None,
            gpu: None,
        })
        .collect()
}

/// Registers `ucloud_user`'s personal drives once; a 409 (already registered) counts as done.
pub async fn register_personal(server: &Server, ucloud_user: &str) -> Result<(), core_client::CoreError> {
    let drives = Drives::from_config(&server.config);
    for registration in drives.personal_registrations(ucloud_user) {
        let pgid = registration.provider_generated_id.clone().unwrap_or_default();
        match server.core.register_drives(std::slice::from_ref(&registration)).await {
            Ok(ids) => tracing::info!(ucloud_user, pgid, ids = ?ids, "drive registered"),
            Err(e) if e.status() == Some(409) => tracing::info!(ucloud_user, pgid, "drive already registered"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// [`register_personal`] in the background, retried with backoff until the Core takes it.
pub fn register_soon(server: Arc<Server>, ucloud_user: String) {
    if server.config.storage.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(500);
        while let Err(e) = register_personal(&server, &ucloud_user).await {
            tracing::warn!(ucloud_user, "drive registration failed, retrying in {delay:?}: {e}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(300));
        }
    });
}

/// At start: the drives of every user mapped so far.
pub fn register_all_mapped(server: &Arc<Server>) {
    for user in server.users.list() {
        register_soon(server.clone(), user.ucloud_user);
    }
}
