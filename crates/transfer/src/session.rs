//! One WEBSOCKET_V2 upload session as a state machine over an [`UploadFs`]: files are discovered by
//! listings, answered SKIP (already there: same size, mtime within a minute) or OK (send it), written
//! to a temporary name, and renamed into place when their last byte arrives. At most
//! [`Limits::max_open_files`] files are OK'd and unfinished at once: the rest wait, which is the
//! protocol's back-pressure on open files (the browser only sends what was OK'd).

use std::collections::{HashMap, VecDeque};
use std::io;

use crate::codec::{ClientFrame, ListingEntry, ServerMessage};
use crate::relpath::join;

/// Same size and an mtime this close (ms) means "already uploaded".
pub const SKIP_MTIME_TOLERANCE_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_open_files: usize,
    /// Bytes of chunks read from the socket but not yet written; enforced by the caller (it stops reading
    /// frames while over), declared here so both sides use one figure.
    pub max_buffered_bytes: u64,
    /// Files one session may announce in total.
    pub max_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_open_files: 64, max_buffered_bytes: 64 << 20, max_files: 10_000_000 }
    }
}

/// File operations of one session, all relative to its target (validated relative paths). The real
/// implementation resolves them beneath the drive root with the kernel's help.
pub trait UploadFs {
    type File;
    /// Size and mtime (ms) of a regular file at `path`, `None` if there is none.
    fn existing(&mut self, path: &str) -> io::Result<Option<(u64, i64)>>;
    /// Creates (or truncates) the temporary file for `path`, making parent directories.
    fn create_temp(&mut self, path: &str) -> io::Result<Self::File>;
    fn write(&mut self, file: &mut Self::File, data: &[u8]) -> io::Result<()>;
    /// Sets the mtime and renames the temporary file to `path`, replacing what is there.
    fn commit(&mut self, path: &str, file: Self::File, modified_at_ms: i64) -> io::Result<()>;
    /// Removes the temporary file of an abandoned transfer.
    fn discard(&mut self, path: &str, file: Self::File);
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("file id {0} announced twice")]
    DuplicateId(i32),
    #[error("chunk for file {0}, which was not OK'd")]
    NotOpen(i32),
    #[error("file {id} got more than its announced {size} bytes")]
    TooMuchData { id: i32, size: u64 },
    #[error("more than {0} files in one session")]
    TooManyFiles(u64),
    #[error("a FILE upload announces exactly one file with an empty path")]
    FileUploadShape,
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

enum State<F> {
    Waiting(ListingEntry),
    Open { entry: ListingEntry, file: F, written: u64 },
    Done,
}

pub struct Session<Fs: UploadFs> {
    fs: Fs,
    limits: Limits,
    /// `FILE` upload: one file, path "".
    single_file: bool,
    files: HashMap<i32, State<Fs::File>>,
    waiting: VecDeque<i32>,
    open: usize,
    discovered: u64,
    completed: u64,
    out: Vec<ServerMessage>,
}

impl<Fs: UploadFs> Session<Fs> {
    pub fn new(fs: Fs, limits: Limits, single_file: bool) -> Self {
        Session {
            fs,
            limits,
            single_file,
            files: HashMap::new(),
            waiting: VecDeque::new(),
            open: 0,
            discovered: 0,
            completed: 0,
            out: Vec::new(),
        }
    }

    /// Messages to send, in order (several per frame).
    pub fn take_messages(&mut self) -> Vec<ServerMessage> {
        std::mem::take(&mut self.out)
    }

    pub fn discovered(&self) -> u64 {
        self.discovered
    }
    pub fn completed(&self) -> u64 {
        self.completed
    }
    pub fn open_files(&self) -> usize {
        self.open
    }
    /// Everything announced has been written, skipped or given up.
    pub fn all_done(&self) -> bool {
        self.completed >= self.discovered
    }

    /// Handles one decoded frame. `Close` is the caller's business (it ends the session).
    pub fn handle(&mut self, frame: ClientFrame<'_>) -> Result<(), SessionError> {
        let before = self.completed;
        match frame {
            ClientFrame::Listing(entries) => self.listing(entries)?,
            ClientFrame::Chunk { file_id, data } => self.chunk(file_id, data)?,
            ClientFrame::Skip { file_id } => self.give_up(file_id),
            ClientFrame::Close => {}
        }
        self.pump()?;
        if self.completed != before {
            self.out.push(ServerMessage::FilesCompleted(self.completed.min(i32::MAX as u64) as i32));
        }
        Ok(())
    }

    fn listing(&mut self, entries: Vec<ListingEntry>) -> Result<(), SessionError> {
        for entry in entries {
            if self.single_file && (!entry.relative_path.is_empty() || self.discovered > 0) {
                return Err(SessionError::FileUploadShape);
            }
            if !self.single_file && entry.relative_path.is_empty() {
                return Err(SessionError::FileUploadShape);
            }
            if self.files.contains_key(&entry.file_id) {
                return Err(SessionError::DuplicateId(entry.file_id));
            }
            if self.discovered >= self.limits.max_files {
                return Err(SessionError::TooManyFiles(self.limits.max_files));
            }
            self.discovered += 1;
            let existing = self.fs.existing(&entry.relative_path).map_err(|source| io_err(&entry, source))?;
            let up_to_date = existing.is_some_and(|(size, mtime)| {
                size == entry.size && (mtime - entry.modified_at_ms).abs() <= SKIP_MTIME_TOLERANCE_MS
            });
            let id = entry.file_id;
            if up_to_date {
                self.completed += 1;
                self.out.push(ServerMessage::Skip(id));
                self.files.insert(id, State::Done);
            } else {
                self.files.insert(id, State::Waiting(entry));
                self.waiting.push_back(id);
            }
        }
        Ok(())
    }

    /// OKs waiting files while fewer than the limit are open.
    fn pump(&mut self) -> Result<(), SessionError> {
        while self.open < self.limits.max_open_files {
            let Some(id) = self.waiting.pop_front() else { break };
            let Some(State::Waiting(entry)) = self.files.remove(&id) else {
                continue; // given up while waiting
            };
            let file = self.fs.create_temp(&entry.relative_path).map_err(|source| io_err(&entry, source))?;
            self.open += 1;
            self.out.push(ServerMessage::Ok(id));
            self.files.insert(id, State::Open { entry, file, written: 0 });
        }
        Ok(())
    }

    fn chunk(&mut self, id: i32, data: &[u8]) -> Result<(), SessionError> {
        let Some(State::Open { entry, file, written }) = self.files.get_mut(&id) else {
            return Err(SessionError::NotOpen(id));
        };
        let after = *written + data.len() as u64;
        if after > entry.size {
            return Err(SessionError::TooMuchData { id, size: entry.size });
        }
        self.fs.write(file, data).map_err(|source| io_err(entry, source))?;
        *written = after;
        if after == entry.size {
            let Some(State::Open { entry, file, .. }) = self.files.insert(id, State::Done) else { unreachable!() };
            self.open -= 1;
            self.completed += 1;
            self.fs.commit(&entry.relative_path, file, entry.modified_at_ms).map_err(|source| io_err(&entry, source))?;
        }
        Ok(())
    }

    fn give_up(&mut self, id: i32) {
        match self.files.insert(id, State::Done) {
            Some(State::Open { entry, file, .. }) => {
                self.open -= 1;
                self.completed += 1;
                self.fs.discard(&entry.relative_path, file);
            }
            Some(State::Waiting(_)) => self.completed += 1,
            Some(State::Done) => {}
            None => {
                self.files.remove(&id);
            }
        }
    }

    /// The connection ended: unfinished temporary files are removed (a resume rewrites them anyway).
    pub fn abort(mut self) {
        for (_, state) in self.files.drain() {
            if let State::Open { entry, file, .. } = state {
                self.fs.discard(&entry.relative_path, file);
            }
        }
    }
}

fn io_err(entry: &ListingEntry, source: io::Error) -> SessionError {
    SessionError::Io { path: join("", &entry.relative_path), source }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
