use super::*;

const DRIVE: &str = r#"{"id":"12","createdAt":1755000000000,"owner":{"createdBy":"alice#1234","project":null},
  "permissions":{"myself":["ADMIN","READ","EDIT"],"others":[]},
  "specification":{"title":"Home","product":{"id":"home","category":"home","provider":"hpc"},"labels":{}},
  "updates":[],"status":{"preferredDrive":true,"resolvedSupport":null,"resolvedProduct":null},
  "providerGeneratedId":"h-alice#1234","unknownField":1}"#;

#[test]
fn browse_uses_the_capital_key_and_defaults() {
    let body = format!(
        r#"{{"resolvedCollection":{DRIVE},"Browse":{{"flags":{{"path":"/12/data","filterHiddenFiles":true,
        "sortBy":null,"filterLabels":{{}}}},"next":null,"sortBy":null,"sortDirection":null}}}}"#
    );
    let r: BrowseRequest = serde_json::from_str(&body).unwrap();
    assert_eq!(r.browse.flags.path.as_deref(), Some("/12/data"));
    assert_eq!(r.browse.items_per_page, None);
    assert_eq!(r.resolved_collection.provider_generated_id.as_deref(), Some("h-alice#1234"));
    assert!(r.resolved_collection.permissions.unwrap().can_edit());
    let out = serde_json::to_value(BrowseRequest { resolved_collection: Drive::default(), browse: BrowseInner::default() })
        .unwrap();
    assert!(out.get("Browse").is_some());
    // The lower-case key is accepted as well.
    let lower = body.replace("\"Browse\"", "\"browse\"");
    assert!(serde_json::from_str::<BrowseRequest>(&lower).is_ok());
}

#[test]
fn provider_file_timestamps_are_integers() {
    let f = ProviderFile {
        id: "/12/a".into(),
        created_at: 5,
        legacy_sensitivity: String::new(),
        status: FileStatus { kind: FileType::Directory, modified_at: 5, accessed_at: 6, ..Default::default() },
    };
    let v = serde_json::to_value(&f).unwrap();
    assert_eq!(v["createdAt"], 5);
    assert_eq!(v["status"]["modifiedAt"], 5);
    assert_eq!(v["status"]["accessedAt"], 6);
    assert_eq!(v["status"]["type"], "DIRECTORY");
    assert!(v.get("legacySensitivity").is_none());
    assert!(v["status"].get("icon").is_none());
}

#[test]
fn delete_items_with_zero_status_parse() {
    let body = r#"{"items":[{"id":"/12/a","createdAt":-62135596800000,"owner":{"createdBy":"alice#1234","project":null},
      "permissions":{"myself":["ADMIN"],"others":null},"specification":{"collection":"12",
      "product":{"id":"home","category":"home","provider":"hpc"}},
      "status":{"type":"","modifiedAt":-62135596800000}}]}"#;
    let r: crate::BulkRequest<DeleteItem> = serde_json::from_str(body).unwrap();
    assert_eq!(r.items[0].specification.collection, "12");
}

#[test]
fn conflict_policies_and_search_messages() {
    let m: MoveOrCopy = serde_json::from_str(&format!(
        r#"{{"resolvedOldCollection":{DRIVE},"resolvedNewCollection":{DRIVE},"oldId":"/12/a","newId":"/12/b",
        "conflictPolicy":"MERGE_RENAME"}}"#
    ))
    .unwrap();
    assert_eq!(m.conflict_policy, ConflictPolicy::MergeRename);
    assert_eq!(
        serde_json::to_string(&StreamingSearchMessage::EndOfResults {}).unwrap(),
        r#"{"type":"end_of_results"}"#
    );
    let r = serde_json::to_value(StreamingSearchMessage::Result { batch: vec![] }).unwrap();
    assert_eq!(r["type"], "result");
}

#[test]
fn ucloud_paths_split() {
    assert_eq!(split_ucloud_path("/12/a/b"), Some(("12", "a/b")));
    assert_eq!(split_ucloud_path("/12"), Some(("12", "")));
    assert_eq!(split_ucloud_path("/12/"), Some(("12", "")));
    assert_eq!(split_ucloud_path("12/a"), None);
    assert_eq!(split_ucloud_path("//a"), None);
}
