//! The configured machine types as UCloud products, what we support for them, and their registration.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use config::Config;
use protocol::{AccountingUnit, BackendSupport, JobSupport, ProductCategory, ProductReference, ProductV2};

use crate::Server;

/// Compute products, accounted per core-minute.
pub fn products_v2(config: &Config) -> Vec<ProductV2> {
    config
        .products
        .iter()
        .map(|(name, p)| ProductV2 {
            kind: "compute".into(),
            category: ProductCategory {
                name: p.category.clone(),
                provider: config.provider_id.clone(),
                product_type: "COMPUTE".into(),
                accounting_unit: AccountingUnit {
                    name: "Core".into(),
                    name_plural: "Core".into(),
                    floating_point: false,
                    display_frequency_suffix: true,
                },
                accounting_frequency: "PERIODIC_MINUTE".into(),
                free_to_use: false,
                allow_sub_allocations: true,
            },
            name: name.clone(),
            description: if p.description.is_empty() {
                format!("{} CPU, {} GB memory, partition {}", p.cpus, p.memory_gb, p.partition)
            } else {
                p.description.clone()
            },
            product_type: "COMPUTE".into(),
            price: p.price * i64::from(p.cpus),
            hidden_in_grant_applications: false,
            cpu: Some(i64::from(p.cpus)),
            memory_in_gigs: Some(i64::from(p.memory_gb)),
            gpu: (p.gpus > 0).then_some(i64::from(p.gpus)),
        })
        .collect()
}

/// What `jobs.retrieveProducts` answers: native (batch) jobs, with time extension and suspension, and each
/// product's queue status from its partition's load (none when Slurm has not answered lately).
pub fn job_support(config: &Config, queue: &HashMap<String, slurm::QueueStatus>) -> Vec<JobSupport> {
    config
        .products
        .iter()
        .map(|(name, p)| JobSupport {
            product: ProductReference {
                id: name.clone(),
                category: p.category.clone(),
                provider: config.provider_id.clone(),
            },
            docker: BackendSupport::default(),
            virtual_machine: BackendSupport::default(),
            native: BackendSupport { enabled: true, time_extension: true, suspension: true, ..Default::default() },
            queue_status: queue.get(&p.partition).map(|&s| crate::queue_status::wire_name(s).to_string()),
        })
        .collect()
}

/// Registers the products with the Core, retrying with backoff while the Core is unreachable.
pub async fn register_until_done(server: Arc<Server>) {
    let mut products = products_v2(&server.config);
    products.extend(crate::storage::products_v2(&server.config));
    let mut delay = Duration::from_millis(500);
    loop {
        match server.core.register_products(&products).await {
            Ok(()) => {
                tracing::info!(count = products.len(), "products registered with UCloud/Core");
                // Drives need their products to exist in the Core first.
                crate::storage::register_all_mapped(&server);
                return;
            }
            Err(e) => {
                tracing::warn!("product registration failed, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
}
