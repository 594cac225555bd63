//! Logging for every subcommand: one `tracing` subscriber, lines to stderr.
//!
//! The ingress's access log (target `ucim::access`, one line per request) is buffered, like nginx's
//! `access_log … buffer=`: a write(2) per request cost the loaded ingress ~13 % of its throughput. Buffered
//! lines go out when 64 KiB have gathered, every 200 ms, before any other line (so the log keeps its
//! order), and when the process ends through [`flush`].

use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ingress::ACCESS_TARGET;
use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;

const BUFFER_LIMIT: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// The sink and the access lines not yet written to it, behind one lock: whoever holds it writes in order.
struct Inner<W> {
    sink: W,
    pending: Vec<u8>,
}

impl<W: Write> Inner<W> {
    fn flush_pending(&mut self) {
        if !self.pending.is_empty() {
            // A log that cannot be written has nowhere to report it.
            let _ = self.sink.write_all(&self.pending);
            self.pending.clear();
        }
    }
}

pub struct Logs<W> {
    inner: Arc<Mutex<Inner<W>>>,
}

impl<W> Clone for Logs<W> {
    fn clone(&self) -> Self {
        Logs { inner: self.inner.clone() }
    }
}

impl<W: Write> Logs<W> {
    pub fn new(sink: W) -> Logs<W> {
        Logs { inner: Arc::new(Mutex::new(Inner { sink, pending: Vec::new() })) }
    }

    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.flush_pending();
        let _ = inner.sink.flush();
    }
}

/// One formatted line (`tracing`'s fmt layer writes each event whole, then drops the writer).
pub struct Line<'a, W> {
    logs: &'a Logs<W>,
    buffered: bool,
}

impl<W: Write> Write for Line<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut inner = self.logs.inner.lock().unwrap_or_else(|p| p.into_inner());
        if self.buffered {
            inner.pending.extend_from_slice(data);
            if inner.pending.len() >= BUFFER_LIMIT {
                inner.flush_pending();
            }
        } else {
            inner.flush_pending();
            inner.sink.write_all(data)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for Logs<W> {
    type Writer = Line<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        Line { logs: self, buffered: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        Line { logs: self, buffered: meta.target() == ACCESS_TARGET }
    }
}

static STDERR_LOGS: OnceLock<Logs<io::Stderr>> = OnceLock::new();

/// Installs the subscriber (level from `UCIM_LOG`, default `info`). With `buffer_access` (the ingress,
/// the only process that writes access lines) access lines are buffered and a thread writes them out;
/// every other process writes each line at once and runs no such thread.
pub fn init(buffer_access: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UCIM_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // No colour codes in log files and journals.
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    if !buffer_access {
        subscriber.with_writer(io::stderr).init();
        return;
    }
    let logs = STDERR_LOGS.get_or_init(|| Logs::new(io::stderr())).clone();
    let flusher = logs.clone();
    std::thread::Builder::new()
        .name("log-flush".into())
        .spawn(move || loop {
            std::thread::sleep(FLUSH_EVERY);
            flusher.flush();
        })
        .expect("spawn the log flusher");
    subscriber.with_writer(logs).init();
}

/// Writes out what is buffered; call before the process exits.
pub fn flush() {
    if let Some(logs) = STDERR_LOGS.get() {
        logs.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn text(sink: &Sink) -> String {
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn access_lines_wait_and_other_lines_keep_the_order() {
        let sink = Sink::default();
        let logs = Logs::new(sink.clone());
        let subscriber = tracing_subscriber::fmt().with_ansi(false).without_time().with_writer(logs.clone()).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: ACCESS_TARGET, "first request");
            tracing::info!(target: ACCESS_TARGET, "second request");
            assert_eq!(text(&sink), "", "access lines are buffered");
            tracing::warn!("something else");
            let out = text(&sink);
            let (first, second, other) =
                (out.find("first request").unwrap(), out.find("second request").unwrap(), out.find("something else").unwrap());
            assert!(first < second && second < other, "{out}");
            tracing::info!(target: ACCESS_TARGET, "third request");
            assert!(!text(&sink).contains("third request"));
        });
        logs.flush();
        assert!(text(&sink).contains("third request"));
    }

    #[test]
    fn a_full_buffer_is_written_without_waiting() {
        let sink = Sink::default();
        let logs = Logs::new(sink.clone());
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(logs).finish();
        let long = "x".repeat(1000);
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..(BUFFER_LIMIT / long.len() + 1) {
                tracing::info!(target: ACCESS_TARGET, "{long}");
            }
        });
        assert!(sink.0.lock().unwrap().len() >= BUFFER_LIMIT);
    }
}
