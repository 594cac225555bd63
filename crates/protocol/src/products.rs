//! Products (`POST /api/products/v2`) and what the provider supports for them (`retrieveProducts`).

use serde::{Deserialize, Serialize};

/// `{"id": "<product name>", "category": "<category>", "provider": "<P>"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct ProductReference {
    pub id: String,
    pub category: String,
    pub provider: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountingUnit {
    pub name: String,
    pub name_plural: String,
    pub floating_point: bool,
    pub display_frequency_suffix: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProductCategory {
    pub name: String,
    pub provider: String,
    pub product_type: String,
    pub accounting_unit: AccountingUnit,
    pub accounting_frequency: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free_to_use: bool,
    pub allow_sub_allocations: bool,
}

/// A compute product as registered with `products.v2.create` (§5.1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProductV2 {
    #[serde(rename = "type")]
    pub kind: String,
    pub category: ProductCategory,
    pub name: String,
    pub description: String,
    pub product_type: String,
    pub price: i64,
    #[serde(default)]
    pub hidden_in_grant_applications: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_in_gigs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<i64>,
}

impl ProductV2 {
    pub fn reference(&self) -> ProductReference {
        ProductReference {
            id: self.name.clone(),
            category: self.category.name.clone(),
            provider: self.category.provider.clone(),
        }
    }
}

/// Feature flags of one backend. All flags are `omitempty` in the Core: false is left out.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendSupport {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub web: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vnc: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logs: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminal: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub peers: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub time_extension: bool,
    /// Only `virtualMachine.suspension` exists in the Core's Go type; on other backends the Core drops the
    /// flag when it re-encodes the support (the browser reads `native.suspension` but never gets it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspension: bool,
}

/// One entry of `jobs.retrieveProducts` (§4.6).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobSupport {
    pub product: ProductReference,
    #[serde(default)]
    pub docker: BackendSupport,
    #[serde(default)]
    pub virtual_machine: BackendSupport,
    #[serde(default)]
    pub native: BackendSupport,
    #[serde(default)]
    pub queue_status: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn support_omits_false_flags() {
        let s = JobSupport {
            product: ProductReference { id: "cpu-1".into(), category: "cpu".into(), provider: "p".into() },
            docker: BackendSupport::default(),
            virtual_machine: BackendSupport::default(),
            native: BackendSupport { enabled: true, ..Default::default() },
            queue_status: None,
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"product":{"id":"cpu-1","category":"cpu","provider":"p"},"docker":{},"virtualMachine":{},"native":{"enabled":true},"queueStatus":null}"#
        );
        let native = BackendSupport { enabled: true, time_extension: true, suspension: true, ..Default::default() };
        assert_eq!(
            serde_json::to_string(&native).unwrap(),
            r#"{"enabled":true,"timeExtension":true,"suspension":true}"#
        );
    }
}
