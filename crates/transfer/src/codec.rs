//! The WEBSOCKET_V2 upload protocol's binary frames (provider-api §6.6): big-endian integers, strings as a
//! u32 length and UTF-8. Frames from the browser are untrusted: every length is checked against what is
//! left of the frame and every path is validated before anything else sees it.

use crate::relpath::{validate_relative, PathError};

pub const OP_OK: u8 = 0;
pub const OP_CHECKSUM: u8 = 1;
pub const OP_CHUNK: u8 = 2;
pub const OP_SKIP: u8 = 3;
pub const OP_LISTING: u8 = 4;
pub const OP_FILES_COMPLETED: u8 = 5;
pub const OP_CLOSE: u8 = 6;

/// The browser batches at most 5000 files per listing; a little slack, then refuse.
pub const MAX_LISTING_ENTRIES: usize = 10_000;

/// One file the browser announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingEntry {
    pub file_id: i32,
    pub size: u64,
    pub modified_at_ms: i64,
    /// Validated: relative, no `.`/`..`/empty components, no NUL, components ≤ 255 bytes. Empty for a
    /// FILE upload (the target itself).
    pub relative_path: String,
}

/// A frame from the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    Listing(Vec<ListingEntry>),
    Chunk { file_id: i32, data: &'a [u8] },
    /// The browser gives up on this file.
    Skip { file_id: i32 },
    Close,
}

/// A message from the server; several go in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMessage {
    /// Send me this file.
    Ok(i32),
    /// Already up to date; don't send.
    Skip(i32),
    /// Cumulative number of files processed (completed, skipped or given up).
    FilesCompleted(i32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty frame")]
    Empty,
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    #[error("opcode {0} is not sent by browsers")]
    WrongDirection(u8),
    #[error("frame truncated")]
    Truncated,
    #[error("trailing bytes after a {0} frame")]
    Trailing(&'static str),
    #[error("negative size in listing")]
    NegativeSize,
    #[error("listing with no entries")]
    EmptyListing,
    #[error("listing with more than {MAX_LISTING_ENTRIES} entries")]
    ListingTooLong,
    #[error("path is not UTF-8")]
    NotUtf8,
    #[error("bad path {path:?}: {reason}")]
    BadPath { path: String, reason: PathError },
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self) -> Result<&'a str, DecodeError> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        // The length is checked against what is left before anything is taken: no allocation from it.
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::NotUtf8)
    }
    fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(what))
        }
    }
}

/// Parses one binary frame from the browser. A chunk's data borrows from the frame.
pub fn decode_client(frame: &[u8]) -> Result<ClientFrame<'_>, DecodeError> {
    let (&op, rest) = frame.split_first().ok_or(DecodeError::Empty)?;
    let mut r = Reader { buf: rest };
    match op {
        OP_CHUNK => {
            let file_id = r.i32()?;
            Ok(ClientFrame::Chunk { file_id, data: r.buf })
        }
        OP_SKIP => {
            let file_id = r.i32()?;
            r.finish("SKIP")?;
            Ok(ClientFrame::Skip { file_id })
        }
        OP_CLOSE => {
            r.finish("CLOSE")?;
            Ok(ClientFrame::Close)
        }
        OP_LISTING => {
            let mut entries = Vec::new();
            while !r.buf.is_empty() {
                if entries.len() == MAX_LISTING_ENTRIES {
                    return Err(DecodeError::ListingTooLong);
                }
                let file_id = r.i32()?;
                let size = r.i64()?;
                let modified_at_ms = r.i64()?;
                let path = r.string()?;
                let size = u64::try_from(size).map_err(|_| DecodeError::NegativeSize)?;
                validate_relative(path).map_err(|reason| DecodeError::BadPath { path: path.into(), reason })?;
                entries.push(ListingEntry { file_id, size, modified_at_ms, relative_path: path.to_string() });
            }
            if entries.is_empty() {
                return Err(DecodeError::EmptyListing);
            }
            Ok(ClientFrame::Listing(entries))
        }
        OP_OK | OP_FILES_COMPLETED | OP_CHECKSUM => Err(DecodeError::WrongDirection(op)),
        other => Err(DecodeError::UnknownOpcode(other)),
    }
}

/// One server frame holding several messages, each with its own opcode.
pub fn encode_server(messages: &[ServerMessage]) -> Vec<u8> {
    let mut out = Vec::with_capacity(messages.len() * 5);
    for m in messages {
        let (op, v) = match *m {
            ServerMessage::Ok(id) => (OP_OK, id),
            ServerMessage::Skip(id) => (OP_SKIP, id),
            ServerMessage::FilesCompleted(n) => (OP_FILES_COMPLETED, n),
        };
        out.push(op);
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// The browser's side of the server frame (for test clients and benches).
pub fn decode_server(frame: &[u8]) -> Result<Vec<ServerMessage>, DecodeError> {
    let mut r = Reader { buf: frame };
    let mut out = Vec::new();
    while !r.buf.is_empty() {
        let op = r.take(1)?[0];
        let v = r.i32()?;
        out.push(match op {
            OP_OK => ServerMessage::Ok(v),
            OP_SKIP => ServerMessage::Skip(v),
            OP_FILES_COMPLETED => ServerMessage::FilesCompleted(v),
            other => return Err(DecodeError::UnknownOpcode(other)),
        });
    }
    Ok(out)
}

/// Browser-side encoders (test clients, benches). Paths are not validated here: tests send bad ones.
pub mod client {
    use super::*;

    pub fn listing<'a>(entries: impl IntoIterator<Item = (i32, i64, i64, &'a str)>) -> Vec<u8> {
        let mut out = vec![OP_LISTING];
        for (id, size, mtime, path) in entries {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(&mtime.to_be_bytes());
            out.extend_from_slice(&(path.len() as u32).to_be_bytes());
            out.extend_from_slice(path.as_bytes());
        }
        out
    }

    pub fn chunk(file_id: i32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + data.len());
        out.push(OP_CHUNK);
        out.extend_from_slice(&file_id.to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    pub fn skip(file_id: i32) -> Vec<u8> {
        let mut out = vec![OP_SKIP];
        out.extend_from_slice(&file_id.to_be_bytes());
        out
    }

    pub fn close() -> Vec<u8> {
        vec![OP_CLOSE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_with_many_entries_after_one_opcode() {
        let f = client::listing([(1, 10, 1000, "a/b.txt"), (2, 0, -5, "empty"), (3, 1 << 40, 7, "x/y/z")]);
        let ClientFrame::Listing(e) = decode_client(&f).unwrap() else { panic!() };
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], ListingEntry { file_id: 1, size: 10, modified_at_ms: 1000, relative_path: "a/b.txt".into() });
        assert_eq!(e[2].size, 1 << 40);
        assert_eq!(e[1].modified_at_ms, -5);
    }

    #[test]
    fn file_upload_listing_has_empty_path() {
        let f = client::listing([(0, 3, 0, "")]);
        let ClientFrame::Listing(e) = decode_client(&f).unwrap() else { panic!() };
        assert_eq!(e[0].relative_path, "");
    }

    #[test]
    fn chunk_skip_close_round_trip() {
        assert_eq!(decode_client(&client::chunk(7, b"hello")).unwrap(), ClientFrame::Chunk { file_id: 7, data: b"hello" });
        assert_eq!(decode_client(&client::chunk(-1, b"")).unwrap(), ClientFrame::Chunk { file_id: -1, data: b"" });
        assert_eq!(decode_client(&client::skip(9)).unwrap(), ClientFrame::Skip { file_id: 9 });
        assert_eq!(decode_client(&client::close()).unwrap(), ClientFrame::Close);
    }

    #[test]
    fn server_frames_batch_messages() {
        let msgs = [ServerMessage::Ok(1), ServerMessage::Skip(2), ServerMessage::FilesCompleted(2), ServerMessage::Ok(-3)];
        let f = encode_server(&msgs);
        assert_eq!(f.len(), 20);
        assert_eq!(&f[..5], &[0, 0, 0, 0, 1]);
        assert_eq!(&f[5..10], &[3, 0, 0, 0, 2]);
        assert_eq!(decode_server(&f).unwrap(), msgs);
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(decode_client(&[]), Err(DecodeError::Empty));
        assert_eq!(decode_client(&[99]), Err(DecodeError::UnknownOpcode(99)));
        assert_eq!(decode_client(&[OP_OK, 0, 0, 0, 1]), Err(DecodeError::WrongDirection(OP_OK)));
        assert_eq!(decode_client(&[OP_CHUNK, 0, 0]), Err(DecodeError::Truncated));
        assert_eq!(decode_client(&[OP_SKIP, 0, 0, 0, 1, 5]), Err(DecodeError::Trailing("SKIP")));
        assert_eq!(decode_client(&[OP_CLOSE, 0]), Err(DecodeError::Trailing("CLOSE")));
        assert_eq!(decode_client(&[OP_LISTING]), Err(DecodeError::EmptyListing));
        // A string length beyond the frame: refused without allocating it.
        let mut f = client::listing([(1, 1, 1, "abc")]);
        let n = f.len();
        f[n - 7..n - 3].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_client(&f), Err(DecodeError::Truncated));
        // An entry cut in the middle.
        let f = client::listing([(1, 1, 1, "abc")]);
        assert_eq!(decode_client(&f[..f.len() - 1]), Err(DecodeError::Truncated));
        assert_eq!(decode_client(&f[..10]), Err(DecodeError::Truncated));
        assert_eq!(decode_client(&client::listing([(1, -1, 1, "a")])), Err(DecodeError::NegativeSize));
        let mut bad = client::listing([(1, 1, 1, "ab")]);
        let n = bad.len();
        bad[n - 1] = 0xff;
        assert_eq!(decode_client(&bad), Err(DecodeError::NotUtf8));
        assert!(decode_server(&[OP_OK, 0, 0]).is_err());
        assert!(decode_server(&[OP_CHUNK, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn listing_paths_are_validated() {
        let long = "a".repeat(256);
        for bad in ["../etc/passwd", "a/../../b", "/etc/passwd", "a\0b", "a//b", "./a", "a/.", long.as_str(), "a/"] {
            let f = client::listing([(1, 1, 1, "ok/file"), (2, 1, 1, bad)]);
            assert!(matches!(decode_client(&f), Err(DecodeError::BadPath { .. })), "{bad:?} accepted");
        }
        let ok = "b".repeat(255);
        assert!(decode_client(&client::listing([(1, 1, 1, ok.as_str())])).is_ok());
    }

    #[test]
    fn huge_listing_refused() {
        let names: Vec<String> = (0..=MAX_LISTING_ENTRIES).map(|i| format!("f{i}")).collect();
        let f = client::listing(names.iter().enumerate().map(|(i, n)| (i as i32, 1, 1, n.as_str())));
        assert_eq!(decode_client(&f), Err(DecodeError::ListingTooLong));
    }
}
