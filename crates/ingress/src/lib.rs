//! `ucim ingress`: the public HTTPS entry point in front of the server and the per-user instances.
//!
//! It terminates TLS (rustls; certificate reloaded on SIGHUP or file change), routes each request to the
//! server or to the instance of the UCloud user it is about (asking the server over its socket, with a
//! short cache), and streams bodies and upgraded connections both ways. It holds no secret but its TLS key
//! and verifies no token: the server and every instance verify each call themselves, so the ingress can
//! only misroute a request, never authorise one.

pub mod conn;
mod framing;
pub mod metrics;
pub mod proxy;
pub mod route;
pub mod tls;
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use metrics::{Metrics, ACCESS_TARGET};
pub use route::{IpcLookup, RouteLookup};

/// Everything the ingress needs, from the `[ingress]` section and the rest of the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub provider: String,
    pub listen: SocketAddr,
    /// The server's HTTP listener (always reached over loopback).
    pub server: SocketAddr,
    /// Certificate chain and key (PEM); `None` serves plain HTTP (local development only).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub tunnel_idle_timeout: Duration,
    pub max_connections: usize,
    pub route_cache: Duration,
}

impl Settings {
    pub fn from_config(config: &config::Config) -> anyhow::Result<Settings> {
        let ingress = config.ingress.as_ref().context("the config has no [ingress] section")?;
        let tls = match (&ingress.tls_cert, &ingress.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => None,
        };
        // The server may listen on a wildcard address; the ingress reaches it over loopback.
        let mut server = config.server.listen;
        if server.ip().is_unspecified() {
            server.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(Settings {
            provider: config.provider_id.clone(),
            listen: ingress.listen,
            server,
            tls,
            max_header_bytes: ingress.max_header_bytes,
            max_body_bytes: ingress.max_body_bytes,
            header_read_timeout: Duration::from_secs(ingress.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(ingress.idle_timeout_secs),
            tunnel_idle_timeout: Duration::from_secs(ingress.websocket_idle_timeout_secs),
            max_connections: ingress.max_connections,
            route_cache: Duration::from_millis(ingress.route_cache_ms),
        })
    }
}

/// A running ingress.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub certs: Option<Arc<tls::CertStore>>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish (at most `grace`), then returns.
    pub async fn stop(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

/// Binds and serves in the background.
pub async fn start(settings: Settings, lookup: Arc<dyn RouteLookup>) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::default());
    let (certs, acceptor) = match &settings.tls {
        Some((cert, key)) => {
            let store = tls::CertStore::open(cert, key)?;
            let config = tls::server_config(store.clone())?;
            tokio::spawn(store.clone().watch(metrics.clone()));
            (Some(store), Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
        }
        None => {
            tracing::warn!(
                listen = %settings.listen,
                "ingress serves PLAIN HTTP: for local development only; UCloud requires TLS in production"
            );
            (None, None)
        }
    };
    // One single-threaded runtime per CPU, each with its own listener on the same port (SO_REUSEPORT, the
    // kernel spreads connections) and its own pool of backend connections: a request is read, routed,
    // forwarded and answered on one thread, without cross-thread wake-ups.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let listeners = bind_listeners(settings.listen, threads).with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listeners[0].local_addr()?;
    let cache = Arc::new(route::RouteCache::new(settings.route_cache));
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(settings.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    // At the limit the ingress stops serving new clients: each worker holds one back, the rest wait in the
    // kernel's backlog.
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut workers = Vec::with_capacity(threads);
    for (i, listener) in listeners.into_iter().enumerate() {
        let proxy = Arc::new(proxy::Proxy {
            provider: settings.provider.clone(),
            server: settings.server,
            lookup: lookup.clone(),
            cache: cache.clone(),
            upstream: Arc::new(upstream::Upstream::default()),
            metrics: metrics.clone(),
            max_body: settings.max_body_bytes,
            tunnel_idle: settings.tunnel_idle_timeout,
            scheme: if acceptor.is_some() { "https" } else { "http" },
        });
        let (acceptor, builder, settings, metrics, slots, shutdown_rx) =
            (acceptor.clone(), builder.clone(), settings.clone(), metrics.clone(), slots.clone(), shutdown_rx.clone());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("ingress runtime")?;
        workers.push(std::thread::Builder::new().name(format!("ingress-{i}")).spawn(move || {
            runtime.block_on(async move {
                tokio::spawn(heartbeat(proxy.upstream.clone()));
                tokio::spawn(metrics::later::writer());
                match TcpListener::from_std(listener) {
                    Ok(listener) => accept_loop(listener, acceptor, builder, proxy, settings, metrics, slots, shutdown_rx).await,
                    Err(e) => tracing::error!("ingress worker {i} cannot use its listener: {e}"),
                }
            });
            // Ends the worker's tasks, the access log writer among them (it writes what is queued).
            drop(runtime);
        })?);
    }
    let task = tokio::task::spawn_blocking(move || {
        for worker in workers {
            let _ = worker.join();
        }
    });
    tracing::info!(%addr, tls = certs.is_some(), "ucim ingress listening");
    Ok(Running { addr, metrics, certs, shutdown, task })
}

/// A worker's housekeeping, once a second: closes idle backend connections past their time.
///
/// It also keeps a timer due within a second on the worker's runtime, which matters for speed. A parked
/// runtime sleeps until its earliest timer, and a timer set for earlier than that must wake the driver (a
/// write to its eventfd and one more epoll_wait). Every request sets hyper's header-read timer (10 s);
/// without a nearer timer, each one did exactly that.
async fn heartbeat(upstream: Arc<upstream::Upstream>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        upstream.prune();
    }
}

/// `count` listeners on `addr` sharing its port (the first one's, if `addr` asks for any port).
fn bind_listeners(mut addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        // Only sockets of the same uid can join the group (Linux), i.e. other ingress workers.
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener = std::net::TcpListener::from(socket);
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    builder: Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>,
    proxy: Arc<proxy::Proxy>,
    settings: Settings,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        // Accept first, then wait for a slot: with one listener per thread, a thread holding a slot while it
        // waits in accept() could starve a connection the kernel queued on another thread's listener. So each
        // thread holds at most one accepted connection back (no TLS, no reads) until a slot frees.
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, builder, proxy, metrics, shutdown) = (acceptor.clone(), builder.clone(), proxy.clone(), metrics.clone(), shutdown.clone());
        let (handshake_timeout, idle) = (settings.header_read_timeout, settings.idle_timeout);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let _permit = permit;
            metrics.active_connections.fetch_add(1, Relaxed);
            metrics.connections_total.fetch_add(1, Relaxed);
            let conn = conn::ConnInfo::new(peer.ip());
            let service = {
                let conn = conn.clone();
                hyper::service::service_fn(move |req| proxy::handle(proxy.clone(), conn.clone(), req))
            };
            match acceptor {
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => conn::serve(tls, conn, builder, service, idle, shutdown).await,
                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
                None => conn::serve(tcp, conn, builder, service, idle, shutdown).await,
            }
            metrics.active_connections.fetch_sub(1, Relaxed);
        });
    }
    // Open connections finish their requests (graceful shutdown was signalled to each).
    while tasks.join_next().await.is_some() {}
}

/// `ucim ingress`: runs until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = config::Config::load(config_path)?;
    let settings = Settings::from_config(&config)?;
    let lookup = Arc::new(IpcLookup { socket: config.server.socket.clone() });
    let running = start(settings, lookup).await?;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("ingress stopping; requests in flight finish (30 s at most)");
    running.stop(Duration::from_secs(30)).await;
    Ok(())
}
