//! The running server: start-up in a fixed order (data directory lock, catalog, users,
//! listener, plugins), the accept loop, and graceful shutdown. The binary and the tests both drive it
//! through [`Server::start`] and [`ServerHandle`].

use crate::backup::continuous::{CommitClocks, Continuous};
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backup::Backups;
use crate::backup::destination::Destinations;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::credentials::UserDirectory;
use crate::data_dir_lock::{DataDirLock, Holder};
use crate::disk_space::DataDisk;
use crate::error::Error;
use crate::pg::{ConnectionHandlers, Shared, own_thread};
use crate::plugin::Plugins;
use crate::session::registry::Registry;
use crate::user_store::UserStore;
use cairn_plugin_api::EventKind;

/// Entry point of the server library.
#[derive(Debug)]
pub struct Server;

/// A started server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    plugins: std::sync::Weak<Plugins>,
}

impl Server {
    /// Starts serving `config`: returns once the listener is bound.
    pub async fn start(config: Config) -> Result<ServerHandle, Error> {
        let started_at = chrono::Utc::now().timestamp();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(|source| Error::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
        let lock = DataDirLock::acquire(&config.data_dir)?;
        lock.set_state("starting");
        // Before anything else writes: on a full disk the reserve is what lets us start.
        let disk = Arc::new(DataDisk::new(&config.data_dir, config.reserved_space));
        if let Err(e) = disk.check() {
            tracing::warn!(path = %config.data_dir.display(), error = %e, "cannot read the free space of the data disk");
        }
        // Before any connection opens: a watched database's connections stamp each commit.
        let clocks = config
            .continuous
            .as_ref()
            .map(|c| Arc::new(CommitClocks::new(c.databases.clone())));
        let mut catalog = Catalog::open(&config.data_dir, config.busy_timeout, Arc::clone(&disk))?
            .with_temp_storage_limit(config.temp_storage_limit)
            .with_mmap_size(config.mmap_size);
        if let Some(clocks) = &clocks {
            catalog = catalog.with_commit_observer(Arc::clone(clocks) as _);
        }
        let catalog = Arc::new(catalog);
        // Before the socket is bound: a certificate that cannot be used stops the start.
        let tls = config
            .tls
            .as_ref()
            .map(crate::pg::tls::Tls::load)
            .transpose()?;
        if let Some(t) = &config.tls {
            tracing::info!(certificate = %t.certificate.display(), required = t.required, "TLS for client connections");
        }
        let users = Arc::new(
            UserDirectory::resolve(&config.users, &config.data_dir, |var| {
                std::env::var(var).ok()
            })?
            .with_store(UserStore::open(&config.data_dir)?)?,
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Listen {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;

        tracing::info!(path = %config.source.display(), "config file");
        tracing::info!(path = %config.data_dir.display(), "data directory");
        tracing::info!(path = %catalog.dir().display(), "databases");
        tracing::info!(path = %lock.path().display(), "lock file");
        let destinations = Destinations::connect(&config.destinations, &Handle::current())
            .map_err(Error::Destination)?;
        let backups = Arc::new(
            Backups::open(
                Arc::clone(&catalog),
                &config.data_dir,
                config.backup.clone(),
                destinations,
                config.busy_timeout,
            )?
            .with_default_destination(config.default_destination.clone())
            .with_keys(
                crate::backup::encryption::Keyring::load(&config.keys).map_err(Error::Keys)?,
            ),
        );
        for k in &config.keys {
            tracing::info!(key = %k.name, "backup key");
        }
        tracing::info!(path = %config.backup.directory.display(), "backups");
        for d in &config.destinations {
            tracing::info!(destination = %d.name, url = %d.url(), endpoint = d.endpoint.as_deref().unwrap_or("AWS"), "backup destination");
        }
        backups.destinations().remove_stale_temporaries();
        let plugins = Plugins::new(&config, Arc::clone(&catalog), Arc::clone(&backups)).await;
        let events = Arc::downgrade(&plugins);
        backups.set_event_sink(Box::new(move |kind, database, detail| {
            if let Some(plugins) = events.upgrade() {
                plugins.emit(kind, database, detail);
            }
        }));
        plugins.load_declared().await;
        plugins.emit(EventKind::Startup, "", "");
        let continuous = config
            .continuous
            .clone()
            .zip(clocks)
            .map(|(settings, clocks)| {
                Continuous::start(settings, Arc::clone(&backups), Arc::clone(&catalog), clocks)
            });
        // Last, once plugins are up: tests and operators take this line to mean "ready".
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            sqlite = rusqlite::version(),
            "listening on {local_addr}"
        );

        let shutdown = CancellationToken::new();
        tokio::spawn(watch_disk(disk, shutdown.clone()));
        let reloader = Arc::downgrade(&plugins);
        let per_user = config
            .users
            .iter()
            .filter_map(|u| Some((u.name.clone(), u.max_connections?)))
            .collect();
        let registry = Arc::new(Registry::new(config.max_connections, per_user));
        let user_timeouts = config
            .users
            .iter()
            .filter(|u| !u.timeouts.is_empty())
            .map(|u| {
                let mut timeouts = config.timeouts;
                for (setting, value) in &u.timeouts {
                    timeouts.set(*setting, *value);
                }
                (u.name.clone(), timeouts)
            })
            .collect();
        let mut shared = Shared::new(
            Arc::clone(&catalog),
            plugins,
            backups,
            users,
            registry,
            config.timeouts,
            user_timeouts,
        );
        if let Some(tls) = tls {
            shared = shared.with_tls(tls);
        }
        let shared = Arc::new(shared);
        // The operators' endpoint answers until the server has stopped, so that `/health/ready`
        // says "shutting down" during the grace period.
        let http_stop = CancellationToken::new();
        let mut http_addr = None;
        if let Some(addr) = config.http_listen {
            let (http_listener, bound) = crate::http::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, source })?;
            let observed = crate::http::Observed {
                catalog: Arc::clone(&shared.catalog),
                plugins: Arc::clone(&shared.plugins),
                backups: Arc::clone(&shared.backups),
                registry: Arc::clone(&shared.registry),
                stopping: shared.stopping.clone(),
            };
            tracing::info!(url = %format!("http://{bound}"), "metrics and health endpoint: /metrics, /status, /health/live, /health/ready");
            http_addr = Some(bound);
            tokio::spawn(crate::http::serve(
                http_listener,
                observed,
                http_stop.clone(),
            ));
        }
        lock.publish(&Holder {
            pid: Some(std::process::id()),
            started_at: Some(started_at),
            listen: Some(local_addr.to_string()),
            http: http_addr.map(|a| a.to_string()),
            state: Some("ready".into()),
        });
        let served = serve(listener, shared, shutdown.clone(), config, lock, continuous);
        let task = tokio::spawn(async move {
            served.await;
            http_stop.cancel();
        });
        Ok(ServerHandle {
            local_addr,
            shutdown,
            task,
            plugins: reloader,
        })
    }
}

impl ServerHandle {
    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Reloads every plugin that is running or failed, as `RELOAD PLUGIN` does for
    /// one: what SIGHUP does. A plugin that refuses its new config keeps running the old one.
    pub async fn reload_plugins(&self) {
        if let Some(plugins) = self.plugins.upgrade() {
            plugins.reload_all().await;
        }
    }

    /// Stops accepting, lets running statements finish (up to the configured grace),
    /// checkpoints every database and releases the data directory.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task ended abnormally");
        }
    }
}

/// Looks at the data disk's free space every second until shutdown (see `disk_space`).
async fn watch_disk(disk: Arc<DataDisk>, shutdown: CancellationToken) {
    let mut every_second = tokio::time::interval(std::time::Duration::from_secs(1));
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every_second.tick() => {}
        }
        let disk = Arc::clone(&disk);
        // Making the reserve writes: off the async threads.
        let looked = tokio::task::spawn_blocking(move || disk.check()).await;
        if let Ok(Err(e)) = looked {
            tracing::debug!(error = %e, "reading the data disk's free space");
        }
    }
}

/// How long the accept loop pauses after a failed accept (out of file descriptors).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// Failed accepts are logged at most this often.
const ACCEPT_WARNING_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    config: Config,
    lock: DataDirLock,
    continuous: Option<Arc<Continuous>>,
) {
    let connections = TaskTracker::new();
    let disconnect = CancellationToken::new();
    // Failed accepts since the last warning, and when that was.
    let mut failed_accepts: u64 = 0;
    let mut last_warning: Option<std::time::Instant> = None;
    let limits = crate::pg::limits::Limits {
        after_login: config.max_message_size,
        logging_in: config.max_connections + crate::session::registry::RESERVED_FOR_ADMIN,
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let handlers = Arc::new(ConnectionHandlers::new(Arc::clone(&shared)));
                    let disconnect = disconnect.clone();
                    // Shutdown waits for every connection's thread through this token.
                    let tracked = connections.token();
                    let served = own_thread::spawn(socket, peer, move |socket| async move {
                        let _tracked = tracked;
                        tracing::debug!(%peer, "connection opened");
                        tokio::select! {
                            result = handlers.serve(socket, limits) => {
                                if let Err(e) = result {
                                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                                }
                            }
                            () = disconnect.cancelled() => {}
                        }
                    });
                    if let Err(e) = served {
                        tracing::warn!(%peer, error = %e, "a thread for the connection could not be started; it is closed (raise the limit on threads, ulimit -u, or lower max_connections)");
                    }
                }
                // Running out of file descriptors must not end the server, nor spin: the
                // failed accept leaves the connection queued, so pause before the next one,
                // and log once per burst rather than once per try.
                Err(e) => {
                    failed_accepts += 1;
                    let now = std::time::Instant::now();
                    if last_warning.is_none_or(|at| now.duration_since(at) >= ACCEPT_WARNING_EVERY) {
                        tracing::warn!(error = %e, failed = failed_accepts, "accepting a connection failed; retrying every 100 ms until it works (raise the file descriptor limit, ulimit -n, or lower max_connections); warned at most once a minute");
                        last_warning = Some(now);
                        failed_accepts = 0;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                    continue;
                }
            },
        }
    }
    drop(listener);
    lock.set_state("stopping");
    tracing::info!("shutting down: no new connections; waiting for running statements");
    shared.stopping.cancel();
    shared.statements.close();
    if tokio::time::timeout(config.shutdown_grace, shared.statements.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = config.shutdown_grace.as_millis() as u64,
            "statements still running after the grace period are abandoned; their transactions roll back"
        );
    }
    disconnect.cancel();
    connections.close();
    connections.wait().await;
    let backups = Arc::clone(&shared.backups);
    if let Err(e) = tokio::task::spawn_blocking(move || backups.abort_all()).await {
        tracing::warn!(error = %e, "stopping running backups failed");
    }
    shared.plugins.stop_all().await;
    // The last commits are shipped before the final checkpoint copies them back.
    if let Some(continuous) = continuous
        && let Err(e) = tokio::task::spawn_blocking(move || continuous.stop()).await
    {
        tracing::warn!(error = %e, "stopping continuous archiving failed");
    }
    let catalog = Arc::clone(&shared.catalog);
    match tokio::task::spawn_blocking(move || catalog.checkpoint_all()).await {
        Ok(failures) => {
            for (database, why) in failures {
                tracing::warn!(%database, %why, "checkpoint at shutdown incomplete; the log is replayed at next start");
            }
        }
        Err(e) => tracing::warn!(error = %e, "checkpoint at shutdown failed"),
    }
    drop(lock);
    tracing::info!("stopped");
}
