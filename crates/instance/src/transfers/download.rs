//! The browser's download endpoint: a file with `Content-Length`, `Content-Disposition`, CORS and a
//! single HTTP Range (§6.7; ranges let large downloads resume), or a folder as a tar stream. Bytes are
//! read by a blocking thread into a small bounded channel, so memory per download is a few buffers
//! whatever the size.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use files::beneath::{Dir, Kind, RelPath, Root};
use tokio::sync::mpsc;
use transfer::http::{content_disposition, parse_range, RangeAnswer};

use super::fs_error;

/// Read size and channel depth: 4 × 256 KiB in flight per download.
const BUF: usize = 256 << 10;
const DEPTH: usize = 4;

type Chunk = Result<Bytes, io::Error>;

fn body_from(rx: mpsc::Receiver<Chunk>) -> Body {
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }))
}

fn base(status: StatusCode, name: &str) -> axum::http::response::Builder {
    Response::builder()
        .status(status)
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .header(header::ACCESS_CONTROL_EXPOSE_HEADERS, "Content-Length, Content-Range, Content-Disposition, Accept-Ranges")
        .header(header::CONTENT_DISPOSITION, content_disposition(name))
}

/// Answers a GET for `rel` beneath `root`.
pub fn download(root: Root, rel: RelPath, headers: &HeaderMap) -> Result<Response, (StatusCode, String)> {
    let st = root.lstat(&rel).map_err(fs_error)?;
    let name = rel.file_name().unwrap_or("drive").to_string();
    match st.kind {
        Kind::File => file(&root, &rel, &name, headers),
        Kind::Dir => {
            let dir = root.open_dir(&rel).map_err(fs_error)?;
            Ok(folder(dir, &name))
        }
        _ => Err((StatusCode::BAD_REQUEST, format!("Not a regular file or folder: {}", root.ucloud_path(&rel)))),
    }
}

fn file(root: &Root, rel: &RelPath, name: &str, headers: &HeaderMap) -> Result<Response, (StatusCode, String)> {
    let mut f = root.open_read(rel).map_err(fs_error)?;
    // The size of the file we hold open, not of whatever the name points at later.
    let size = f.metadata().map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match parse_range(range, size) {
        RangeAnswer::Full => (StatusCode::OK, 0, size),
        RangeAnswer::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeAnswer::Unsatisfiable => {
            return Ok(base(StatusCode::RANGE_NOT_SATISFIABLE, name)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .header(header::ACCEPT_RANGES, "bytes")
                .body(Body::empty())
                .expect("valid response"));
        }
    };
    if start > 0 {
        f.seek(SeekFrom::Start(start)).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    let (tx, rx) = mpsc::channel::<Chunk>(DEPTH);
    tokio::task::spawn_blocking(move || send_file(f, len, tx));
    let mut response = base(status, name)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{size}", start + len - 1));
    }
    Ok(response.body(body_from(rx)).expect("valid response"))
}

/// Sends exactly `len` bytes; a file that shrank meanwhile ends the body early (the client sees a short
/// read against Content-Length rather than silently wrong data).
fn send_file(mut f: File, mut len: u64, tx: mpsc::Sender<Chunk>) {
    while len > 0 {
        let mut buf = vec![0u8; BUF.min(len as usize)];
        match f.read(&mut buf) {
            Ok(0) => {
                let _ = tx.blocking_send(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank during download")));
                return;
            }
            Ok(n) => {
                buf.truncate(n);
                len -= n as u64;
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return; // the client went away
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

fn folder(dir: Dir, name: &str) -> Response {
    let (tx, rx) = mpsc::channel::<Chunk>(DEPTH);
    let top = name.to_string();
    tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(ChannelWriter { buf: Vec::with_capacity(BUF), tx: tx.clone() });
        let result = walk(&dir, &top, &mut builder).and_then(|()| builder.into_inner()).and_then(|mut w| w.flush());
        if let Err(e) = result {
            if e.kind() != io::ErrorKind::BrokenPipe {
                tracing::warn!("folder download of {} stopped: {e}", dir.ucloud_path());
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    base(StatusCode::OK, &format!("{name}.tar"))
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(body_from(rx))
        .expect("valid response")
}

/// Depth-first through directory descriptors (no path is resolved twice, no symlink followed). Entries
/// the user cannot read are left out; symlinks and special files are left out.
fn walk<W: Write>(dir: &Dir, prefix: &str, builder: &mut tar::Builder<W>) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    builder.append_data(&mut header, format!("{prefix}/"), io::empty())?;
    let mut entries = match dir.entries() {
        Ok(e) => e,
        Err(e) => {
            tracing::info!("folder download skips {}: {e}", dir.ucloud_path());
            return Ok(());
        }
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for entry in entries {
        let path = format!("{prefix}/{}", entry.name);
        match entry.stat.kind {
            Kind::Dir => match dir.open_dir(&entry.name) {
                Ok(sub) => walk(&sub, &path, builder)?,
                Err(e) => tracing::info!("folder download skips {path}: {e}"),
            },
            Kind::File => {
                let f = match dir.open_file(&entry.name) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::info!("folder download skips {path}: {e}");
                        continue;
                    }
                };
                let size = f.metadata()?.len();
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                header.set_mode(entry.stat.mode & 0o777);
                header.set_mtime((entry.stat.modified_ms.max(0) / 1000) as u64);
                builder.append_data(&mut header, &path, Exactly { inner: f, left: size })?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Exactly `left` bytes: a file that grew is cut, one that shrank is padded with zeros, so the archive
/// stays well-formed whatever happens to the file while it is read.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// `Write` into the bounded channel in BUF-sized pieces; blocks (this is a blocking thread) while the
/// client is slower than the disk.
struct ChannelWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Chunk>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(BUF));
        self.tx.blocking_send(Ok(Bytes::from(full))).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BUF - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BUF {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

