//! Counters kept in atomics (ready for a `/metrics` page) and the access log: one line per request, written
//! when its answer has been sent (so bytes and latency are the real ones).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    /// Answers by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub by_class: [AtomicU64; 5],
    /// Body bytes received from clients and sent to them.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub active_connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub active_tunnels: AtomicU64,
    /// Requests refused by the ingress itself (bad shape, limits, unknown path).
    pub refused: AtomicU64,
    /// Calls that went straight to a user's instance, and those that went to the server.
    pub to_instance: AtomicU64,
    pub to_server: AtomicU64,
    /// An instance refused the connection: the route was dropped.
    pub stale_routes: AtomicU64,
    pub cert_reloads: AtomicU64,
}

impl Metrics {
    pub fn status(&self, status: u16) {
        if let Some(c) = self.by_class.get(usize::from(status / 100).wrapping_sub(1)) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// Where a request went, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Refused or answered by the ingress itself.
    Ingress,
    Server,
    Instance(u16),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Ingress => f.write_str("ingress"),
            Target::Server => f.write_str("server"),
            Target::Instance(port) => write!(f, "instance:{port}"),
        }
    }
}

/// The `tracing` target of access log lines (the binary buffers their writes).
pub const ACCESS_TARGET: &str = "ucim::access";

/// One request's log line, written when it is dropped (after the answer's body ended or was abandoned).
pub struct AccessRecord {
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    pub method: http::Method,
    /// Without the query string: it may carry tokens.
    pub path: String,
    pub target: Target,
    pub status: u16,
    pub bytes_out: u64,
    pub bytes_in: Arc<AtomicU64>,
    /// Handed over to a tunnel, which logs it when it ends.
    silent: bool,
}

impl AccessRecord {
    pub fn new(metrics: Arc<Metrics>, method: http::Method, path: &str) -> AccessRecord {
        metrics.requests.fetch_add(1, Relaxed);
        AccessRecord {
            metrics,
            started: Instant::now(),
            method,
            path: path.to_string(),
            target: Target::Ingress,
            status: 0,
            bytes_out: 0,
            bytes_in: Arc::new(AtomicU64::new(0)),
            silent: false,
        }
    }

    /// The record, for a tunnel to finish; this one then writes nothing.
    pub fn hand_over(&mut self) -> AccessRecord {
        self.silent = true;
        AccessRecord {
            metrics: self.metrics.clone(),
            started: self.started,
            method: self.method.clone(),
            path: std::mem::take(&mut self.path),
            target: self.target,
            status: self.status,
            bytes_out: 0,
            bytes_in: self.bytes_in.clone(),
            silent: false,
        }
    }
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        if self.silent {
            return;
        }
        self.metrics.status(self.status);
        self.metrics.bytes_out.fetch_add(self.bytes_out, Relaxed);
        let bytes_in = self.bytes_in.load(Relaxed);
        self.metrics.bytes_in.fetch_add(bytes_in, Relaxed);
        later::write(AccessLine {
            target: self.target,
            method: std::mem::replace(&mut self.method, http::Method::GET),
            path: std::mem::take(&mut self.path),
            status: self.status,
            bytes_in,
            bytes_out: self.bytes_out,
            micros: self.started.elapsed().as_micros() as u64,
        });
    }
}

/// What an access line says, taken when the answer is done.
struct AccessLine {
    target: Target,
    method: http::Method,
    path: String,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    micros: u64,
}

impl AccessLine {
    fn write(self) {
        tracing::info!(
            target: ACCESS_TARGET,
            to = %self.target,
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            ms = format_args!("{}.{:03}", self.micros / 1000, self.micros % 1000),
        );
    }
}

/// Access lines are formatted after the answer has gone out, not on the way: a record is dropped when
/// hyper takes the last frame of the body, before it writes the answer to the client. On an ingress worker
/// thread (see [`later::writer`]) lines queue and that thread's writer task formats them once the current
/// task yields; anywhere else they are written at once.
pub mod later {
    use std::cell::RefCell;
    use std::sync::Arc;

    use tokio::sync::Notify;

    use super::AccessLine;

    struct Queue {
        lines: Vec<AccessLine>,
        wake: Arc<Notify>,
    }

    thread_local! {
        static QUEUE: RefCell<Option<Queue>> = const { RefCell::new(None) };
    }

    pub(super) fn write(line: AccessLine) {
        let mut line = Some(line);
        // `try_with`: a record dropped while the thread's locals are torn down is written at once.
        let _ = QUEUE.try_with(|q| {
            if let Some(queue) = q.borrow_mut().as_mut() {
                if queue.lines.is_empty() {
                    queue.wake.notify_one();
                }
                queue.lines.extend(line.take());
            }
        });
        if let Some(line) = line {
            line.write();
        }
    }

    /// Writes what this thread has queued.
    fn drain() {
        let lines = QUEUE.with(|q| q.borrow_mut().as_mut().map(|queue| std::mem::take(&mut queue.lines)));
        for line in lines.into_iter().flatten() {
            line.write();
        }
    }

    /// The writer task of a worker thread: from its first poll on, access lines recorded on this thread
    /// queue for it. Run it on a current-thread runtime (it must stay on this thread). When the runtime
    /// drops it, what is queued is written and later lines are written at once, so none is lost at exit.
    pub async fn writer() {
        struct Stop;
        impl Drop for Stop {
            fn drop(&mut self) {
                drain();
                QUEUE.with(|q| *q.borrow_mut() = None);
            }
        }
        let wake = Arc::new(Notify::new());
        QUEUE.with(|q| *q.borrow_mut() = Some(Queue { lines: Vec::with_capacity(64), wake: wake.clone() }));
        let _stop = Stop;
        loop {
            wake.notified().await;
            drain();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let m = Metrics::default();
        for s in [101, 200, 204, 404, 449, 502, 0, 700] {
            m.status(s);
        }
        let c: Vec<u64> = m.by_class.iter().map(Metrics::get).collect();
        assert_eq!(c, [1, 2, 0, 2, 1]);
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn has(&self, path: &str) -> bool {
            String::from_utf8_lossy(&self.0.lock().unwrap()).contains(&format!("path={path} "))
        }
    }

    #[test]
    fn access_lines_wait_for_the_worker_to_yield_and_none_is_lost_when_it_ends() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).without_time().with_writer(move || writer.clone()).finish();
        let metrics = Arc::new(Metrics::default());
        let log = |path: &str| drop(AccessRecord::new(metrics.clone(), http::Method::GET, path));
        tracing::subscriber::with_default(subscriber, || {
            log("/off-worker");
            assert!(sink.has("/off-worker"), "no writer task on this thread: written at once");

            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                tokio::spawn(later::writer());
                tokio::task::yield_now().await;
                log("/queued");
                assert!(!sink.has("/queued"), "queued while the answer's task runs");
                for _ in 0..100 {
                    if sink.has("/queued") {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                assert!(sink.has("/queued"), "written once the task yields");
                log("/at-exit");
            });
            assert!(!sink.has("/at-exit"));
            drop(runtime);
            assert!(sink.has("/at-exit"), "the writer writes what is queued when its runtime ends");
            log("/after");
            assert!(sink.has("/after"), "after the writer ended: written at once");
        });
        assert_eq!(Metrics::get(&metrics.requests), 4);
    }
}
