//! The call catalogue: which method and path each call uses, and the headers that carry identity.

use base64::Engine;

/// The header that names the end-user a Core call is made for: standard padded base64 of the username.
pub const USERNAME_HEADER: &str = "ucloud-username";

/// Encodes a UCloud username as the Core puts it in [`USERNAME_HEADER`].
pub fn encode_username_header(username: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(username.as_bytes())
}

/// Decodes [`USERNAME_HEADER`]. `None` for anything that is not base64 of valid UTF-8 without control
/// characters; such a header is refused, never guessed at.
pub fn decode_username_header(value: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    let name = String::from_utf8(bytes).ok()?;
    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control()) {
        return None;
    }
    Some(name)
}

/// Core → provider calls the module serves, relative to `/ucloud/{providerId}`.
pub mod provider {
    pub const RETRIEVE_MANIFEST: &str = "/integration/retrieveManifest";
    pub const INIT: &str = "/integration/init";
    pub const CONNECT: &str = "/integration/connect";
    pub const UNLINKED: &str = "/integration/unlinked";
    pub const JOBS_RETRIEVE_PRODUCTS: &str = "/jobs/retrieveProducts";
    pub const JOBS_CREATE: &str = "/jobs";
    pub const JOBS_TERMINATE: &str = "/jobs/terminate";
    pub const JOBS_EXTEND: &str = "/jobs/extend";
    pub const JOBS_SUSPEND: &str = "/jobs/suspend";
    pub const JOBS_UNSUSPEND: &str = "/jobs/unsuspend";
    pub const FILES_COLLECTIONS_RETRIEVE_PRODUCTS: &str = "/files/collections/retrieveProducts";
    pub const FILES_BROWSE: &str = "/files/browse";
    pub const FILES_RETRIEVE: &str = "/files/retrieve";
    pub const FILES_FOLDER: &str = "/files/folder";
    pub const FILES_MOVE: &str = "/files/move";
    pub const FILES_COPY: &str = "/files/copy";
    pub const FILES_TRASH: &str = "/files/trash";
    pub const FILES_EMPTY_TRASH: &str = "/files/emptyTrash";
    /// `DELETE` = `files.delete`; `GET` with Upgrade = streaming search (WebSocket, `usernameHint`).
    pub const FILES: &str = "/files";
    pub const FILES_UPLOAD: &str = "/files/upload";
    pub const FILES_DOWNLOAD: &str = "/files/download";
    /// Every `files.*` call a user makes (forwarded to the user's instance).
    pub const FILES_USER_CALLS: &[&str] = &[
        FILES_BROWSE,
        FILES_RETRIEVE,
        FILES_FOLDER,
        FILES_MOVE,
        FILES_COPY,
        FILES_TRASH,
        FILES_EMPTY_TRASH,
        FILES,
        FILES_UPLOAD,
        FILES_DOWNLOAD,
    ];
    /// Other product kinds a compute provider does not offer; answered with an empty bulk response.
    pub const OTHER_RETRIEVE_PRODUCTS: &[&str] = &[
        "/ingresses/retrieveProducts",
        "/networkips/retrieveProducts",
        "/licenses/retrieveProducts",
        "/private-networks/retrieveProducts",
    ];
}

/// Provider → Core calls, relative to the Core's base URL.
pub mod core {
    pub const AUTH_REFRESH: &str = "/auth/providers/refresh";
    pub const PRODUCTS_CREATE: &str = "/api/products/v2";
    pub const JOBS_CONTROL_UPDATE: &str = "/api/jobs/control/update";
    /// Provider-created jobs (jobs submitted outside UCloud): Bulk<RegisterJob> → Bulk<{"id"}>.
    pub const JOBS_CONTROL_REGISTER: &str = "/api/jobs/control/register";
    pub const APPROVE_CONNECTION: &str = "/api/providers/integration/control/approveConnection";
    pub const CLEAR_CONNECTION: &str = "/api/providers/integration/control/clearConnection";
    pub const DRIVES_REGISTER: &str = "/api/files/collections/control/register";
    /// `GET ?id=…`
    pub const DRIVES_RETRIEVE: &str = "/api/files/collections/control/retrieve";
}

/// `/ucloud/{providerId}` + `suffix`.
pub fn provider_path(provider_id: &str, suffix: &str) -> String {
    format!("/ucloud/{provider_id}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_header_round_trip() {
        let h = encode_username_header("alice#1234");
        assert_eq!(h, "YWxpY2UjMTIzNA==");
        assert_eq!(decode_username_header(&h).as_deref(), Some("alice#1234"));
    }

    #[test]
    fn bad_username_headers_are_refused() {
        assert_eq!(decode_username_header("not base64!"), None);
        assert_eq!(decode_username_header(""), None);
        // "a\nb" smuggles a control character.
        assert_eq!(decode_username_header(&encode_username_header("a\nb")), None);
        // Invalid UTF-8.
        assert_eq!(decode_username_header("/w=="), None);
    }
}
