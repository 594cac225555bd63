//! Uploads and downloads, the parts that need no network or file system: the WEBSOCKET_V2 codec
//! (provider-api §6.6), the upload session state machine over a file-system trait, CHUNKED offsets, HTTP
//! Range and Content-Disposition, and the signed transfer tokens (lead's decision 4). The instance
//! (`crates/instance/src/transfers*.rs`) puts them on the wire and on disk.

pub mod codec;
pub mod http;
pub mod relpath;
pub mod session;
pub mod token;
