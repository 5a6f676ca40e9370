//! The set of plugins, their state, and what they registered.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use cairn_plugin_api::abi;
use cairn_plugin_api::ffi::crash::{self, InPlugin};
use cairn_plugin_api::ffi::host::{
    CommitBatch, ForeignJob, ForeignProcedure, HostTable, LoadError, PluginInstance, PluginLibrary,
    StatementRecord, inspect,
};
use cairn_plugin_api::{Column, ColumnType, EventKind, PluginError as ApiError, Value};
use sha2::Digest;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};

use super::services::PluginServices;
use crate::catalog::Catalog;
use crate::config::{Config, LibrarySource, PluginConfigSource, PluginDecl};

/// Why a plugin statement failed. Each message says what, where, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("no plugin named \"{0}\"; SHOW PLUGINS lists them")]
    Unknown(String),
    #[error("plugin library {path} does not exist; copy it into the plugin directory {dir}")]
    MissingFile { path: PathBuf, dir: PathBuf },
    #[error(
        "plugin library {path} is outside the plugin directory {dir}; plugins load only from there"
    )]
    OutsideDir { path: PathBuf, dir: PathBuf },
    #[error("plugin file name {0:?} must be a plain file name in the plugin directory")]
    BadFileName(String),
    #[error("no builtin plugin named \"{0}\"; use a library file name instead of \"builtin\"")]
    NoBuiltin(String),
    #[error(
        "library {path} holds plugin \"{found}\" but the config declares it as \"{declared}\"; rename the [plugins.{declared}] table to [plugins.{found}], or point it at the library of {declared}"
    )]
    NameMismatch {
        path: PathBuf,
        found: String,
        declared: String,
    },
    #[error("plugin \"{0}\" is already running; use RELOAD PLUGIN {0} to load a new copy")]
    AlreadyRunning(String),
    #[error(
        "plugin \"{plugin}\" is being {doing} by another statement; try again once that has finished (SHOW PLUGINS shows its state)"
    )]
    Busy { plugin: String, doing: &'static str },
    #[error("the server is shutting down; plugins are no longer loaded, reloaded or unloaded")]
    ShuttingDown,
    #[error("plugin \"{0}\" is not running (it is {1})")]
    NotRunning(String, &'static str),
    #[error("cannot read the config file {path} of plugin \"{plugin}\": {message}")]
    ConfigFile {
        plugin: String,
        path: PathBuf,
        message: String,
    },
    #[error("the server config no longer parses, so nothing was reloaded: {0}")]
    ServerConfig(String),
    #[error(
        "plugin \"{plugin}\" could not be created (its `create`/`new` failed: a config it refuses, or what it needs is missing): {message}"
    )]
    Create { plugin: String, message: String },
    #[error("plugin \"{plugin}\" failed to start: {message}")]
    Start { plugin: String, message: String },
    #[error(
        "plugin \"{plugin}\" failed to start: {message}; the previous instance (its library and config as before the reload) was started again and runs on"
    )]
    Restored { plugin: String, message: String },
    #[error("cannot read or copy plugin library {path}: {message}")]
    Copy { path: PathBuf, message: String },
    #[error("no procedure {plugin}.{procedure}{hint}")]
    UnknownProcedure {
        plugin: String,
        procedure: String,
        hint: String,
    },
    #[error("{plugin}.{procedure}: {message}")]
    Procedure {
        plugin: String,
        procedure: String,
        message: String,
    },
    #[error(
        "{plugin}.{procedure} panicked: {message}; plugin \"{plugin}\" is now failed and its procedures and jobs are disabled (RELOAD PLUGIN {plugin} to restart it)"
    )]
    Panicked {
        plugin: String,
        procedure: String,
        message: String,
    },
}

/// A plugin's state as `SHOW PLUGINS` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its `start` has been called and has not finished yet.
    Starting,
    Running,
    Disabled,
    Failed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Disabled => "disabled",
            State::Failed => "failed",
        }
    }
}

/// One row of `SHOW PLUGINS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRow {
    pub name: String,
    pub version: String,
    pub abi: String,
    pub state: &'static str,
    pub library: String,
    pub last_error: Option<String>,
    pub description: String,
    /// The role its SQL and host calls run with (NULL when nothing is loaded).
    pub role: Option<&'static str>,
}

struct Entry {
    library: LibrarySource,
    version: String,
    abi: String,
    description: String,
    state: State,
    last_error: Option<String>,
    loaded: Option<Loaded>,
}

impl Entry {
    /// An entry with nothing loaded (yet).
    fn empty(library: LibrarySource, state: State) -> Entry {
        Entry {
            library,
            version: String::new(),
            abi: String::new(),
            description: String::new(),
            state,
            last_error: None,
            loaded: None,
        }
    }
}

/// An event waiting for an instance's event task.
struct QueuedEvent {
    kind: EventKind,
    database: String,
    detail: String,
    /// Told once the instance has handled the event (or will never handle it).
    handled: Option<tokio::sync::oneshot::Sender<()>>,
}

/// How long shutdown waits for plugins to handle the shutdown event.
const SHUTDOWN_EVENT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// A running (or failed, not yet unloaded) instance.
struct Loaded {
    generation: u64,
    instance: Arc<PluginInstance>,
    services: Arc<PluginServices>,
    events: mpsc::UnboundedSender<QueuedEvent>,
    origin: Origin,
}

/// What an instance was made from: enough to make it again when its replacement fails to
/// start after it was stopped.
#[derive(Clone)]
struct Origin {
    library: PluginLibrary,
    source: LibrarySource,
    /// The library file as the operator named it ("builtin" for a builtin).
    path: PathBuf,
    config: String,
    /// How long `start` and `stop` may take.
    start_timeout: Option<std::time::Duration>,
    /// What its SQL and host calls may do.
    role: crate::roles::Role,
}

/// An instance made and checked (its `create` and `prepare` accepted), not yet started.
struct Created {
    generation: u64,
    instance: Arc<PluginInstance>,
    services: Arc<PluginServices>,
}

struct RegisteredProcedure {
    plugin: String,
    generation: u64,
    procedure: ForeignProcedure,
}

struct JobRunner {
    plugin: String,
    generation: u64,
    job: ForeignJob,
    /// Cleared when the job is unregistered: a firing that races the removal does nothing.
    active: AtomicBool,
    running: AtomicBool,
    /// Whether the current run's overlap with later firings was logged.
    /// Firings skipped because the previous run was still going.
    skipped: AtomicU64,
    plugins: Weak<Plugins>,
}

/// The builtin plugins: linked into the server, loaded through the same descriptor.
fn builtin(name: &str) -> Option<&'static abi::CairnPluginDescriptor> {
    match name {
        "automatic_backup" => Some(&automatic_backup::cairn_plugin_v1),
        _ => None,
    }
}

/// (plugin, job name).
type JobKey = (String, String);

/// All plugins of one server.
pub struct Plugins {
    me: Weak<Plugins>,
    config_source: PathBuf,
    plugin_dir: PathBuf,
    /// Private copies of libraries are made here to be mapped (emptied at start-up).
    copies_dir: PathBuf,
    /// `<data_dir>/plugin-state`: one private directory per plugin, kept across runs.
    state_root: PathBuf,
    /// Every library mapped so far, by the SHA-256 of its bytes.
    mapped: Mutex<HashMap<[u8; 32], PluginLibrary>>,
    /// The plugins the config declared at start-up (LOAD and RELOAD read the config anew).
    declared: Mutex<Vec<PluginDecl>>,
    catalog: Arc<Catalog>,
    backups: Arc<crate::backup::Backups>,
    runtime: Handle,
    log_dispatch: tracing::Dispatch,
    scheduler: Option<JobScheduler>,
    generations: AtomicU64,
    /// The plugins being loaded, reloaded or unloaded, and which of the three: one operation
    /// per plugin at a time, and no lock held across a plugin's code (its `start` may load
    /// another plugin).
    changing: Mutex<HashMap<String, &'static str>>,
    /// Set when shutdown begins: no more loads.
    closing: AtomicBool,
    /// Told whenever a claim ends.
    released: tokio::sync::Notify,
    /// Reloads that made a new instance run (or the previous one run again), by plugin.
    reloads: Mutex<HashMap<String, u64>>,
    /// What plugin instances publish at `/metrics` (ABI 1.4).
    gauges: super::gauges::PluginGauges,
    entries: Mutex<BTreeMap<String, Entry>>,
    procedures: Mutex<HashMap<String, Arc<RegisteredProcedure>>>,
    /// The scalar SQL functions plugins registered, for every session's connection.
    functions: Arc<super::functions::SqlFunctions>,
    /// The statements sessions run, for the plugins that subscribed (ABI 1.10).
    statements: Arc<crate::statements::StatementFeed>,
    jobs: Mutex<HashMap<JobKey, (uuid::Uuid, Arc<JobRunner>)>>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("plugin_dir", &self.plugin_dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Plugins {
    /// The plugin system of a server; loads nothing yet.
    pub async fn new(
        config: &Config,
        catalog: Arc<Catalog>,
        backups: Arc<crate::backup::Backups>,
    ) -> Arc<Plugins> {
        let scheduler = match JobScheduler::new().await {
            Ok(s) => match s.start().await {
                Ok(()) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "the plugin job scheduler did not start; plugins cannot schedule jobs");
                    None
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "the plugin job scheduler did not start; plugins cannot schedule jobs");
                None
            }
        };
        let copies_dir = config.data_dir.join("plugin-copies");
        // Copies from a previous run are no longer mapped by anyone.
        let _ = std::fs::remove_dir_all(&copies_dir);
        Arc::new_cyclic(|me| Plugins {
            me: me.clone(),
            config_source: config.source.clone(),
            plugin_dir: config.plugin_dir.clone(),
            copies_dir,
            state_root: config.data_dir.join("plugin-state"),
            mapped: Mutex::new(HashMap::new()),
            declared: Mutex::new(config.plugins.clone()),
            catalog,
            backups,
            runtime: plugin_runtime(),
            log_dispatch: tracing::dispatcher::get_default(tracing::Dispatch::clone),
            scheduler,
            generations: AtomicU64::new(1),
            changing: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            released: tokio::sync::Notify::new(),
            reloads: Mutex::new(HashMap::new()),
            gauges: Default::default(),
            entries: Mutex::new(BTreeMap::new()),
            procedures: Mutex::new(HashMap::new()),
            functions: Default::default(),
            statements: Default::default(),
            jobs: Mutex::new(HashMap::new()),
        })
    }

    /// Loads every plugin the config declares (disabled ones are only listed). A plugin
    /// that fails is logged and marked failed; the others load regardless.
    pub async fn load_declared(&self) {
        tracing::info!(path = %self.plugin_dir.display(), "plugin directory");
        let declared = lock(&self.declared).clone();
        for decl in declared {
            if !decl.enabled {
                lock(&self.entries).insert(
                    decl.name.clone(),
                    Entry::empty(decl.library.clone(), State::Disabled),
                );
                tracing::info!(plugin = %decl.name, "plugin disabled in the config; not loaded");
                continue;
            }
            let claim = match self.claim(&decl.name, "loaded") {
                Ok(claim) => claim,
                Err(e) => {
                    tracing::error!(plugin = %decl.name, error = %e, "plugin not loaded");
                    continue;
                }
            };
            if let Err(e) = self.load(&decl, false).await {
                tracing::error!(plugin = %decl.name, error = %e, "plugin not loaded; the server goes on without it");
            }
            drop(claim);
        }
    }

    /// Marks `name` as being `doing` (loaded, reloaded, unloaded) until the claim is dropped;
    /// refused while another statement is at it, or once shutdown has begun.
    fn claim(&self, name: &str, doing: &'static str) -> Result<Claim<'_>, PluginError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(PluginError::ShuttingDown);
        }
        self.mark(name, doing)
    }

    /// [`Plugins::claim`], even while shutting down.
    fn mark(&self, name: &str, doing: &'static str) -> Result<Claim<'_>, PluginError> {
        let mut changing = lock(&self.changing);
        if let Some(other) = changing.get(name) {
            return Err(PluginError::Busy {
                plugin: name.to_owned(),
                doing: other,
            });
        }
        changing.insert(name.to_owned(), doing);
        Ok(Claim {
            plugins: self,
            name: name.to_owned(),
        })
    }

    /// `LOAD PLUGIN 'file'`: loads a library from the plugin directory. Its config is the
    /// `[plugins.NAME]` table of the server config, if there is one.
    pub async fn load_file(&self, file: &str) -> Result<String, PluginError> {
        if file.is_empty() || file.contains('/') || file == "." || file == ".." {
            return Err(PluginError::BadFileName(file.to_owned()));
        }
        let path = self.library_path(file)?;
        // Only the name is needed here; `load` maps the library.
        let info = inspect(&path)?;
        let _claim = self.claim(&info.name, "loaded")?;
        // The config as it is now, as RELOAD reads it.
        let fresh = Config::load(&self.config_source)
            .map_err(|e| PluginError::ServerConfig(e.to_string()))?;
        let decl = fresh
            .plugins
            .iter()
            .find(|d| d.name == info.name)
            .cloned()
            .map(|mut d| {
                d.library = LibrarySource::File(file.to_owned());
                d
            })
            .unwrap_or(PluginDecl {
                name: info.name.clone(),
                library: LibrarySource::File(file.to_owned()),
                enabled: true,
                config: PluginConfigSource::None,
                start_timeout: Some(crate::config::DEFAULT_START_TIMEOUT),
                role: PluginDecl::default_role(&info.name),
            });
        self.load(&decl, false).await?;
        Ok(info.name)
    }

    /// `UNLOAD PLUGIN name`: stops it and unregisters everything it registered.
    pub async fn unload(&self, name: &str) -> Result<(), PluginError> {
        let _claim = self.claim(name, "unloaded")?;
        let unloaded = self.unload_claimed(name).await;
        if unloaded.is_ok() {
            // No next instance will hear of what it missed.
            self.catalog.changes().forget(name);
            self.statements.forget(name);
        }
        unloaded
    }

    /// `RELOAD PLUGIN name` (and SIGHUP, for each plugin): re-reads the plugin's config and
    /// loads a fresh copy of its library. A library or config the new copy refuses leaves the
    /// running one untouched. The outcome is logged, whoever asked.
    pub async fn reload(&self, name: &str) -> Result<(), PluginError> {
        let result = self.reload_unlogged(name).await;
        if matches!(result, Ok(()) | Err(PluginError::Restored { .. })) {
            *lock(&self.reloads).entry(name.to_owned()).or_default() += 1;
        }
        match &result {
            Ok(()) => tracing::info!(plugin = %name, "plugin reloaded"),
            Err(e @ (PluginError::Restored { .. } | PluginError::Start { .. })) => {
                tracing::error!(plugin = %name, error = %e, "plugin reload failed")
            }
            Err(e @ (PluginError::Busy { .. } | PluginError::ShuttingDown)) => {
                tracing::error!(plugin = %name, error = %e, "plugin reload refused")
            }
            Err(e) => {
                let running = lock(&self.entries)
                    .get(name)
                    .is_some_and(|e| e.state == State::Running);
                if running {
                    tracing::error!(plugin = %name, error = %e, "plugin reload refused; the running instance goes on")
                } else {
                    tracing::error!(plugin = %name, error = %e, "plugin reload refused; the plugin stays failed")
                }
            }
        }
        result
    }

    async fn reload_unlogged(&self, name: &str) -> Result<(), PluginError> {
        let _claim = self.claim(name, "reloaded")?;
        let library = lock(&self.entries)
            .get(name)
            .map(|e| e.library.clone())
            .ok_or_else(|| PluginError::Unknown(name.to_owned()))?;
        let fresh = Config::load(&self.config_source)
            .map_err(|e| PluginError::ServerConfig(e.to_string()))?;
        // A plugin loaded by hand (not in the config) reloads with no config.
        let mut decl = fresh
            .plugins
            .iter()
            .find(|d| d.name == name)
            .cloned()
            .unwrap_or_else(|| PluginDecl {
                name: name.to_owned(),
                role: PluginDecl::default_role(name),
                library,
                enabled: true,
                config: PluginConfigSource::None,
                start_timeout: Some(crate::config::DEFAULT_START_TIMEOUT),
            });
        // RELOAD is an explicit request to run it, whatever `enabled` says.
        decl.enabled = true;
        self.load(&decl, true).await
    }

    /// Reloads every plugin that is running or failed (SIGHUP); each outcome is logged.
    pub async fn reload_all(&self) {
        let names: Vec<String> = lock(&self.entries)
            .iter()
            .filter(|(_, e)| e.loaded.is_some() || e.state == State::Failed)
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            // Each outcome is logged by `reload`.
            let _ = self.reload(&name).await;
        }
    }

    /// Loads `decl`. With `replace`, an instance already running under that name is stopped
    /// once the new one has been created (so a refused config keeps the old one).
    async fn load(&self, decl: &PluginDecl, replace: bool) -> Result<(), PluginError> {
        let result = self.try_load(decl, replace).await;
        if let Err(e) = &result {
            let mut entries = lock(&self.entries);
            let keep_running = entries
                .get(&decl.name)
                .is_some_and(|e| e.state == State::Running);
            if !keep_running {
                let entry = entries
                    .entry(decl.name.clone())
                    .or_insert_with(|| Entry::empty(decl.library.clone(), State::Failed));
                entry.state = State::Failed;
                entry.library = decl.library.clone();
                entry.last_error = Some(e.to_string());
            }
        }
        result
    }

    async fn try_load(&self, decl: &PluginDecl, replace: bool) -> Result<(), PluginError> {
        let running = lock(&self.entries)
            .get(&decl.name)
            .is_some_and(|e| e.state == State::Running);
        if running && !replace {
            return Err(PluginError::AlreadyRunning(decl.name.clone()));
        }
        let (library, path) = match &decl.library {
            LibrarySource::Builtin => {
                let descriptor =
                    builtin(&decl.name).ok_or_else(|| PluginError::NoBuiltin(decl.name.clone()))?;
                (
                    PluginLibrary::builtin(descriptor)?,
                    PathBuf::from("builtin"),
                )
            }
            LibrarySource::File(file) => {
                let path = self.library_path(file)?;
                (self.map(&path)?, path)
            }
        };
        let info = library.info().clone();
        if info.name != decl.name {
            return Err(PluginError::NameMismatch {
                path,
                found: info.name,
                declared: decl.name.clone(),
            });
        }
        let origin = Origin {
            library,
            source: decl.library.clone(),
            path,
            config: self.plugin_config(decl)?,
            start_timeout: decl.start_timeout,
            role: decl.role,
        };
        // The new instance checks its config and what it needs while the old one still runs.
        let created = self
            .instantiate(&decl.name, &origin)
            .await
            .map_err(|e| match e {
                // Where the text the plugin refused came from, for its line numbers.
                PluginError::Create { plugin, message } => PluginError::Create {
                    message: format!("{message} (in {})", self.config_place(decl)),
                    plugin,
                },
                other => other,
            })?;
        let previous = if replace && running {
            lock(&self.entries)
                .get(&decl.name)
                .and_then(|e| e.loaded.as_ref())
                .map(|l| l.origin.clone())
        } else {
            None
        };
        if replace {
            // The new instance accepted its config: now the old one goes.
            let _ = self.unload_claimed(&decl.name).await;
        }
        let failure = match self.activate(&decl.name, created, origin).await {
            Ok(()) if self.closing.load(Ordering::Acquire) => {
                // Shutdown began while it started, and may have passed it by.
                tracing::warn!(plugin = %decl.name, "plugin finished starting during shutdown; stopping it");
                let _ = self.unload_claimed(&decl.name).await;
                return Err(PluginError::ShuttingDown);
            }
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        let Some(previous) = previous else {
            return Err(failure);
        };
        // It failed after the old one stopped: the old one runs again rather than nothing.
        let restarted = match self.instantiate(&decl.name, &previous).await {
            Ok(created) => self.activate(&decl.name, created, previous).await,
            Err(e) => Err(e),
        };
        match restarted {
            Ok(()) => {
                let message = failure.to_string();
                if let Some(entry) = lock(&self.entries).get_mut(&decl.name) {
                    entry.last_error = Some(format!(
                        "reload failed ({message}); the previous instance runs again"
                    ));
                }
                // `reload` logs the outcome.
                Err(PluginError::Restored {
                    plugin: decl.name.clone(),
                    message,
                })
            }
            Err(again) => Err(PluginError::Start {
                plugin: decl.name.clone(),
                message: format!("{failure}; restarting the previous instance failed too: {again}"),
            }),
        }
    }

    /// Makes an instance of `origin` with its own host services; the plugin checks its config
    /// and what it needs (`create`, then the SDK's `prepare`) without starting.
    async fn instantiate(&self, name: &str, origin: &Origin) -> Result<Created, PluginError> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let services = Arc::new(PluginServices {
            plugin: name.to_owned(),
            generation,
            plugins: self.me.clone(),
            catalog: Arc::clone(&self.catalog),
            backups: Arc::clone(&self.backups),
            runtime: self.runtime.clone(),
            log_dispatch: self.log_dispatch.clone(),
            attached: AtomicBool::new(true),
            subscriptions: AtomicU64::new(0),
            state_directory: self.state_root.join(name),
            role: origin.role,
        });
        let table = HostTable::new(
            Arc::clone(&services) as Arc<dyn cairn_plugin_api::ffi::host::HostServices>,
            max_log_level(),
        );
        // `create` is plugin code that may block (the SDK's `new`): on a thread of its own,
        // bounded like `start`.
        let library = origin.library.clone();
        let config = origin.config.clone();
        let plugin = name.to_owned();
        let mut creating = self.runtime.spawn_blocking(move || {
            let _running = crash::running(&plugin, "new", "");
            library.create(table, &config)
        });
        let created = match origin.start_timeout {
            None => (&mut creating).await,
            Some(limit) => match tokio::time::timeout(limit, &mut creating).await {
                Ok(joined) => joined,
                Err(_) => Ok(Err(ApiError::failed(format!(
                    "its new did not finish within {} ms ([plugins.{name}] start_timeout); it was abandoned",
                    limit.as_millis()
                )))),
            },
        }
        .unwrap_or_else(|e| Err(ApiError::failed(format!("its new ended abnormally: {e}"))));
        match created {
            Ok(instance) => Ok(Created {
                generation,
                instance: Arc::new(instance),
                services,
            }),
            Err(e) => {
                services.detach();
                // What it published or registered while being made goes with it.
                self.gauges.forget(name, generation);
                drop(self.functions.unregister(name, generation));
                Err(PluginError::Create {
                    plugin: name.to_owned(),
                    message: e.to_string(),
                })
            }
        }
    }

    /// Makes `created` the plugin's running instance and starts it.
    async fn activate(
        &self,
        name: &str,
        created: Created,
        origin: Origin,
    ) -> Result<(), PluginError> {
        let Created {
            generation,
            instance,
            services,
        } = created;
        let info = origin.library.info().clone();
        let path = origin.path.clone();
        let start_timeout = origin.start_timeout;
        let (events, receiver) = mpsc::unbounded_channel();
        self.runtime.spawn(deliver_events(
            self.me.clone(),
            name.to_owned(),
            generation,
            Arc::clone(&instance),
            Arc::clone(&services),
            receiver,
        ));
        // What it replaces is dropped outside the lock (its instance's `destroy` is plugin code).
        let replaced = lock(&self.entries).insert(
            name.to_owned(),
            Entry {
                library: origin.source.clone(),
                version: info.version.clone(),
                abi: format!("{}.{}", info.abi_major, info.abi_minor),
                description: info.description.clone(),
                state: State::Starting,
                last_error: None,
                loaded: Some(Loaded {
                    generation,
                    instance: Arc::clone(&instance),
                    services,
                    events,
                    origin,
                }),
            },
        );
        drop(replaced);
        let started = within(&self.runtime, start_timeout, "start", name, || {
            instance.start()
        })
        .await;
        if let Err(e) = started {
            let message = e.to_string();
            self.fail(name, generation, &message);
            return Err(PluginError::Start {
                plugin: name.to_owned(),
                message,
            });
        }
        let failed_meanwhile = {
            let mut entries = lock(&self.entries);
            match entries.get_mut(name) {
                Some(entry) if entry.state == State::Starting => {
                    entry.state = State::Running;
                    None
                }
                // A panic in a procedure or job it started marked it failed already.
                Some(entry) if entry.state == State::Failed => Some(
                    entry
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "it failed while starting".into()),
                ),
                _ => None,
            }
        };
        if let Some(message) = failed_meanwhile {
            return Err(PluginError::Start {
                plugin: name.to_owned(),
                message,
            });
        }
        // Started without following row changes: what an earlier instance left counting
        // has no one to be told to.
        let changes = self.catalog.changes();
        if changes.subscribed(name, generation).is_none() {
            changes.forget(name);
        }
        tracing::info!(
            plugin = %name,
            version = %info.version,
            abi = %format!("{}.{}", info.abi_major, info.abi_minor),
            library = %path.display(),
            "plugin loaded"
        );
        Ok(())
    }

    async fn unload_claimed(&self, name: &str) -> Result<(), PluginError> {
        let (was, loaded) = {
            let mut entries = lock(&self.entries);
            let entry = entries
                .get_mut(name)
                .ok_or_else(|| PluginError::Unknown(name.to_owned()))?;
            if entry.state == State::Disabled {
                return Err(PluginError::NotRunning(name.to_owned(), "disabled"));
            }
            let was = entry.state;
            entry.state = State::Disabled;
            (was, entry.loaded.take())
        };
        if let Some(loaded) = loaded {
            // Detached first: nothing it calls after this can register anything again.
            loaded.services.detach();
            self.unregister(name, loaded.generation);
            // A failed instance is not asked to stop: it may be in any state.
            let stop_timeout = loaded.origin.start_timeout;
            if was == State::Running
                && let Err(e) = within(&self.runtime, stop_timeout, "stop", name, || {
                    loaded.instance.stop()
                })
                .await
            {
                tracing::warn!(plugin = %name, error = %e, "plugin stop reported an error");
            }
            // Dropping the last reference calls the plugin's `destroy`.
            drop(loaded);
        }
        tracing::info!(plugin = %name, "plugin unloaded");
        Ok(())
    }

    /// Marks a plugin instance failed: its procedures and jobs are unregistered and its
    /// host services refused. Called when it panics or its `start` fails.
    fn fail(&self, name: &str, generation: u64, message: &str) {
        let mut entries = lock(&self.entries);
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        let current = entry.loaded.as_ref().map(|l| l.generation) == Some(generation);
        if !current || !matches!(entry.state, State::Running | State::Starting) {
            return;
        }
        entry.state = State::Failed;
        entry.last_error = Some(message.to_owned());
        if let Some(loaded) = &entry.loaded {
            loaded.services.detach();
        }
        drop(entries);
        self.unregister(name, generation);
        tracing::error!(plugin = %name, error = %message, "plugin failed; its procedures and jobs are disabled");
    }

    /// The scalar SQL functions plugins registered.
    pub fn functions(&self) -> &Arc<super::functions::SqlFunctions> {
        &self.functions
    }

    /// Registers an SQL function (scalar, aggregate or table) of instance `generation` of
    /// `plugin`.
    pub(super) fn register_sql_function(
        &self,
        plugin: &str,
        generation: u64,
        kind: super::functions::Kind,
    ) -> Result<(), ApiError> {
        self.functions
            .register(plugin, generation, kind)
            .map_err(ApiError::Refused)
    }

    /// Subscribes instance `generation` of `plugin` to the row changes of committed
    /// transactions (ABI 1.8), starting its delivery the first time.
    pub(super) fn subscribe_changes(
        &self,
        plugin: &str,
        generation: u64,
        databases: Vec<String>,
        tables: Vec<String>,
    ) -> Result<(), ApiError> {
        for database in &databases {
            crate::catalog::validate_name(database)
                .map_err(|e| ApiError::InvalidArgument(format!("subscribe_changes: {e}")))?;
        }
        for table in &tables {
            crate::catalog::validate_identifier("table", table)
                .map_err(|e| ApiError::InvalidArgument(format!("subscribe_changes: {e}")))?;
        }
        let (instance, services) = self.loaded_instance(plugin, generation)?;
        if !instance.takes_commits() {
            return Err(ApiError::Refused(
                "the plugin has no on_commit function to deliver changes to".into(),
            ));
        }
        let feed = self.catalog.changes();
        let (queue, new) = feed.subscribe(plugin, generation, databases, tables);
        self.deliver_subscribed(
            self.delivery(plugin, generation, instance, services, "on_commit"),
            (queue, new),
            || feed.unsubscribe(plugin, generation),
            |instance, commit: &CommitBatch| instance.on_commit(commit),
        )
    }

    fn delivery(
        &self,
        plugin: &str,
        generation: u64,
        instance: Arc<PluginInstance>,
        services: Arc<PluginServices>,
        what: &'static str,
    ) -> Delivery {
        Delivery {
            plugins: self.me.clone(),
            name: plugin.to_owned(),
            generation,
            instance,
            services,
            what,
        }
    }

    /// Starts handing a new subscription's queue to its instance. One unloaded meanwhile
    /// (its unregistering may have run before the subscription existed) has it ended with
    /// `end` instead.
    fn deliver_subscribed<T, F>(
        &self,
        to: Delivery,
        (queue, new): (Arc<crate::feed_queue::FeedQueue<T>>, bool),
        end: impl FnOnce(),
        call: impl Fn(&PluginInstance, &T) -> F + Send + 'static,
    ) -> Result<(), ApiError>
    where
        T: crate::feed_queue::Queued + 'static,
        F: std::future::Future<Output = cairn_plugin_api::Outcome> + Send + 'static,
    {
        if !to.services.attached.load(Ordering::Acquire) {
            end();
            return Err(ApiError::Refused("the plugin is being unloaded".into()));
        }
        if new {
            self.runtime.spawn(deliver_feed(to, queue, call));
        }
        Ok(())
    }

    /// Subscribes instance `generation` of `plugin` to the statements sessions run (ABI
    /// 1.10); `min_duration_micros` `u64::MAX` ends the subscription.
    pub(super) fn subscribe_statements(
        &self,
        plugin: &str,
        generation: u64,
        min_duration_micros: u64,
    ) -> Result<(), ApiError> {
        if min_duration_micros == u64::MAX {
            self.statements.unsubscribe(plugin, generation);
            return Ok(());
        }
        let (instance, services) = self.loaded_instance(plugin, generation)?;
        if !instance.takes_statements() {
            return Err(ApiError::Refused(
                "the plugin has no on_statement function to deliver statements to".into(),
            ));
        }
        let min = std::time::Duration::from_micros(min_duration_micros);
        let subscribed = self.statements.subscribe(plugin, generation, min);
        self.deliver_subscribed(
            self.delivery(plugin, generation, instance, services, "on_statement"),
            subscribed,
            || self.statements.unsubscribe(plugin, generation),
            |instance, statement: &StatementRecord| instance.on_statement(statement),
        )
    }

    /// The statements sessions run, for the plugins that subscribed.
    pub fn statements(&self) -> &Arc<crate::statements::StatementFeed> {
        &self.statements
    }

    /// The running instance `generation` of `plugin`, and its services.
    fn loaded_instance(
        &self,
        plugin: &str,
        generation: u64,
    ) -> Result<(Arc<PluginInstance>, Arc<PluginServices>), ApiError> {
        let entries = lock(&self.entries);
        let loaded = entries
            .get(plugin)
            .and_then(|e| e.loaded.as_ref())
            .filter(|l| l.generation == generation)
            .ok_or_else(|| ApiError::Refused("the plugin is not loaded".into()))?;
        Ok((Arc::clone(&loaded.instance), Arc::clone(&loaded.services)))
    }

    /// The gauges plugins publish.
    pub fn gauges(&self) -> &super::gauges::PluginGauges {
        &self.gauges
    }

    fn unregister(&self, plugin: &str, generation: u64) {
        self.gauges.forget(plugin, generation);
        self.catalog.changes().unsubscribe(plugin, generation);
        self.statements.unsubscribe(plugin, generation);
        // Dropped outside the lock (and after any call still running): plugin code.
        drop(self.functions.unregister(plugin, generation));
        // Dropped outside the lock: releasing a procedure's context is plugin code.
        let procedures: Vec<_> = lock(&self.procedures)
            .extract_if(|_, p| p.plugin == plugin && p.generation == generation)
            .collect();
        drop(procedures);
        let removed: Vec<(uuid::Uuid, Arc<JobRunner>)> = {
            let mut jobs = lock(&self.jobs);
            let keys: Vec<_> = jobs
                .iter()
                .filter(|(_, (_, r))| r.plugin == plugin && r.generation == generation)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter().filter_map(|k| jobs.remove(&k)).collect()
        };
        for (uuid, runner) in removed {
            runner.active.store(false, Ordering::Release);
            if let Some(scheduler) = self.scheduler.clone() {
                self.runtime.spawn(async move {
                    if let Err(e) = scheduler.remove(&uuid).await {
                        tracing::debug!(error = %e, "removing a plugin job");
                    }
                });
            }
        }
    }

    pub(super) fn register_procedure(
        &self,
        plugin: &str,
        generation: u64,
        procedure: ForeignProcedure,
    ) -> Result<(), ApiError> {
        crate::catalog::validate_identifier("procedure", &procedure.name)
            .map_err(ApiError::InvalidArgument)?;
        let key = format!("{plugin}.{}", procedure.name);
        let mut procedures = lock(&self.procedures);
        if procedures.contains_key(&key) {
            return Err(ApiError::Refused(format!(
                "procedure {key} is already registered"
            )));
        }
        procedures.insert(
            key,
            Arc::new(RegisteredProcedure {
                plugin: plugin.to_owned(),
                generation,
                procedure,
            }),
        );
        Ok(())
    }

    pub(super) fn schedule(
        &self,
        plugin: &str,
        generation: u64,
        job: ForeignJob,
    ) -> Result<(), ApiError> {
        let Some(scheduler) = self.scheduler.clone() else {
            return Err(ApiError::Refused("the job scheduler is not running".into()));
        };
        let key = (plugin.to_owned(), job.name.clone());
        if lock(&self.jobs).contains_key(&key) {
            return Err(ApiError::Refused(format!(
                "job {}.{} is already scheduled",
                plugin, job.name
            )));
        }
        // tokio-cron-scheduler wants seconds first; a 5-field expression runs at second 0.
        let fields = job.cron.split_whitespace().count();
        let cron = match fields {
            5 => format!("0 {}", job.cron),
            6 => job.cron.clone(),
            _ => {
                return Err(ApiError::InvalidArgument(format!(
                    "cron expression {:?} has {fields} fields; write 5 (minute hour day month weekday) or 6 (with seconds first)",
                    job.cron
                )));
            }
        };
        let runner = Arc::new(JobRunner {
            plugin: plugin.to_owned(),
            generation,
            job,
            active: AtomicBool::new(true),
            running: AtomicBool::new(false),
            skipped: AtomicU64::new(0),
            plugins: self.me.clone(),
        });
        let fire = Arc::clone(&runner);
        let runtime = self.runtime.clone();
        let cron_job = Job::new_async(cron.as_str(), move |_, _| {
            let runner = Arc::clone(&fire);
            // The job runs on the plugins' workers; the scheduler only waits for it.
            let run = runtime.spawn(async move { runner.fire().await });
            Box::pin(async move {
                let _ = run.await;
            })
        })
        .map_err(|e| {
            ApiError::InvalidArgument(format!(
                "invalid cron expression {:?}: {e}",
                runner.job.cron
            ))
        })?;
        let uuid = cron_job.guid();
        lock(&self.jobs).insert(key, (uuid, runner));
        self.runtime.spawn(async move {
            if let Err(e) = scheduler.add(cron_job).await {
                tracing::error!(error = %e, "scheduling a plugin job failed");
            }
        });
        Ok(())
    }

    /// `SHOW PLUGINS`.
    pub fn list(&self) -> Vec<PluginRow> {
        lock(&self.entries)
            .iter()
            .map(|(name, e)| PluginRow {
                name: name.clone(),
                version: e.version.clone(),
                abi: e.abi.clone(),
                state: e.state.name(),
                library: match &e.library {
                    LibrarySource::Builtin => "builtin".into(),
                    LibrarySource::File(f) => f.clone(),
                },
                last_error: e.last_error.clone(),
                description: e.description.clone(),
                role: e.loaded.as_ref().map(|l| l.origin.role.name()),
            })
            .collect()
    }

    /// `SHOW PLUGIN name`: what its running instance registered, as (kind, name, signature,
    /// description) rows; `None` for a plugin the server does not know.
    pub fn registered_by(&self, plugin: &str) -> Option<Vec<[String; 4]>> {
        let (generation, events) = {
            let entries = lock(&self.entries);
            let entry = entries.get(plugin)?;
            match entry.loaded.as_ref() {
                Some(l) => (
                    l.generation,
                    l.services.subscriptions.load(Ordering::Acquire),
                ),
                None => return Some(Vec::new()),
            }
        };
        let typed = |columns: &[Column]| {
            columns
                .iter()
                .map(|c| format!("{} {}", c.name, format!("{:?}", c.ty).to_ascii_lowercase()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut rows: Vec<[String; 4]> = Vec::new();
        for (owner, name, description, columns) in self.procedures() {
            if owner == plugin {
                rows.push([
                    "procedure".into(),
                    format!("{plugin}.{name}"),
                    format!("returns ({})", typed(&columns)),
                    description,
                ]);
            }
        }
        for f in self.functions.describe() {
            if f.plugin != plugin {
                continue;
            }
            let arguments = match (&f.arguments, f.arg_count) {
                (Some(arguments), _) => typed(arguments),
                (None, n) if n < 0 => "any number of values".into(),
                (None, 1) => "1 value".into(),
                (None, n) => format!("{n} values"),
            };
            let signature = match &f.columns {
                Some(columns) => format!("({arguments}) returns rows ({})", typed(columns)),
                None => format!("({arguments})"),
            };
            let kind = match f.kind {
                "table" => "table function".to_owned(),
                kind => format!("{kind} function"),
            };
            rows.push([kind, f.name, signature, f.description]);
        }
        let mut jobs: Vec<[String; 4]> = lock(&self.jobs)
            .values()
            .filter(|(_, r)| r.plugin == plugin && r.generation == generation)
            .map(|(_, r)| {
                [
                    "job".into(),
                    r.job.name.clone(),
                    r.job.cron.clone(),
                    String::new(),
                ]
            })
            .collect();
        jobs.sort();
        rows.extend(jobs);
        let kinds: Vec<&str> = EventKind::ALL
            .iter()
            .filter(|k| events & (1u64 << k.to_abi()) != 0)
            .map(|k| k.name())
            .collect();
        if !kinds.is_empty() {
            rows.push([
                "events".into(),
                kinds.join(", "),
                String::new(),
                String::new(),
            ]);
        }
        if let Some(min) = self.statements.subscribed(plugin, generation) {
            rows.push([
                "statements".into(),
                format!("running at least {} ms", min.as_millis()),
                String::new(),
                String::new(),
            ]);
        }
        if let Some((databases, tables)) = self.catalog.changes().subscribed(plugin, generation) {
            let all = |names: Vec<String>, what: &str| {
                if names.is_empty() {
                    format!("every {what}")
                } else {
                    names.join(", ")
                }
            };
            rows.push([
                "row changes".into(),
                all(databases, "database"),
                all(tables, "table"),
                String::new(),
            ]);
        }
        Some(rows)
    }

    /// How many times each plugin was reloaded into a running instance (`/metrics`).
    pub fn reloads(&self) -> Vec<(String, u64)> {
        lock(&self.reloads)
            .iter()
            .map(|(name, n)| (name.clone(), *n))
            .collect()
    }

    /// Every registered procedure: plugin, name, description, result columns.
    pub fn procedures(&self) -> Vec<(String, String, String, Vec<Column>)> {
        let mut listed: Vec<_> = lock(&self.procedures)
            .values()
            .map(|p| {
                (
                    p.plugin.clone(),
                    p.procedure.name.clone(),
                    p.procedure.description.clone(),
                    p.procedure.columns.clone(),
                )
            })
            .collect();
        listed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        listed
    }

    /// The declared result columns of `plugin.procedure`.
    pub fn procedure_columns(&self, plugin: &str, procedure: &str) -> Option<Vec<Column>> {
        lock(&self.procedures)
            .get(&format!("{plugin}.{procedure}"))
            .map(|p| p.procedure.columns.clone())
    }

    /// Runs `CALL plugin.procedure(args)` and returns its columns and rows, checked against
    /// the declared columns.
    pub async fn call(
        &self,
        plugin: &str,
        procedure: &str,
        args: &[(Option<String>, Value)],
    ) -> Result<(Vec<Column>, Vec<Vec<Value>>), PluginError> {
        let registered = lock(&self.procedures)
            .get(&format!("{plugin}.{procedure}"))
            .cloned();
        let Some(registered) = registered else {
            return Err(PluginError::UnknownProcedure {
                plugin: plugin.to_owned(),
                procedure: procedure.to_owned(),
                hint: self.why_no_procedure(plugin),
            });
        };
        let outcome = InPlugin::call(plugin, "procedure", procedure, || {
            registered.procedure.call(args)
        })
        .await;
        let error = |message: String| PluginError::Procedure {
            plugin: plugin.to_owned(),
            procedure: procedure.to_owned(),
            message,
        };
        match outcome {
            Err(e) if e.is_panic() => {
                let report = e.message();
                self.fail(
                    plugin,
                    registered.generation,
                    &format!("panicked in procedure {procedure}: {report}"),
                );
                // The backtrace (if any) is for the log, not the client.
                let message = report.lines().next().unwrap_or_default().to_owned();
                Err(PluginError::Panicked {
                    plugin: plugin.to_owned(),
                    procedure: procedure.to_owned(),
                    message,
                })
            }
            Err(e) => Err(error(e.to_string())),
            Ok(reply) => {
                let columns = registered.procedure.columns.clone();
                let rows = conform(&columns, reply.rows, "procedure").map_err(error)?;
                Ok((columns, rows))
            }
        }
    }

    fn why_no_procedure(&self, plugin: &str) -> String {
        match lock(&self.entries).get(plugin) {
            None => format!(": there is no plugin \"{plugin}\" (SHOW PLUGINS lists them)"),
            Some(e) if e.state == State::Failed => format!(
                ": plugin \"{plugin}\" is failed ({}); RELOAD PLUGIN {plugin} after fixing it",
                e.last_error.as_deref().unwrap_or("no error recorded")
            ),
            Some(e) if e.state == State::Disabled => {
                format!(": plugin \"{plugin}\" is disabled")
            }
            Some(_) => format!(": plugin \"{plugin}\" registered no such procedure"),
        }
    }

    /// Delivers an event to every running plugin subscribed to its kind, without waiting.
    pub fn emit(&self, kind: EventKind, database: &str, detail: &str) {
        self.queue(kind, database, detail, false);
    }

    /// Queues an event; with `acknowledged`, returns a receiver per plugin that fires once
    /// that plugin has handled it.
    fn queue(
        &self,
        kind: EventKind,
        database: &str,
        detail: &str,
        acknowledged: bool,
    ) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        let bit = 1u64 << kind.to_abi();
        let mut handled = Vec::new();
        for entry in lock(&self.entries).values() {
            if let Some(loaded) = &entry.loaded
                && matches!(entry.state, State::Running | State::Starting)
                && loaded.services.subscriptions.load(Ordering::Acquire) & bit != 0
            {
                let (tell, told) = tokio::sync::oneshot::channel();
                let event = QueuedEvent {
                    kind,
                    database: database.to_owned(),
                    detail: detail.to_owned(),
                    handled: acknowledged.then_some(tell),
                };
                if loaded.events.send(event).is_ok() && acknowledged {
                    handled.push(told);
                }
            }
        }
        handled
    }

    /// Stops every running plugin (at shutdown), after they have handled the shutdown event
    /// (waiting a bounded time for it).
    pub async fn stop_all(&self) {
        self.closing.store(true, Ordering::Release);
        let handled = self.queue(EventKind::Shutdown, "", "", true);
        let waited =
            tokio::time::timeout(SHUTDOWN_EVENT_PATIENCE, futures::future::join_all(handled)).await;
        if waited.is_err() {
            tracing::warn!(
                patience_ms = SHUTDOWN_EVENT_PATIENCE.as_millis() as u64,
                "a plugin did not handle the shutdown event in time; stopping it anyway"
            );
        }
        // A load or reload under way (a SIGHUP's, say) gets a bounded while to finish, so
        // that what it leaves running is stopped below.
        let settled = tokio::time::timeout(SHUTDOWN_EVENT_PATIENCE, async {
            loop {
                let released = self.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if lock(&self.changing).is_empty() {
                    return;
                }
                released.await;
            }
        })
        .await;
        if settled.is_err() {
            tracing::warn!(
                patience_ms = SHUTDOWN_EVENT_PATIENCE.as_millis() as u64,
                "a plugin was still being loaded, reloaded or unloaded at shutdown; not waiting longer"
            );
        }
        let names: Vec<String> = lock(&self.entries)
            .iter()
            .filter(|(_, e)| e.loaded.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let _claim = match self.mark(&name, "unloaded") {
                Ok(claim) => claim,
                Err(PluginError::Busy { doing, .. }) => {
                    // Its own call is bounded by its timeout; shutdown does not wait for it.
                    tracing::warn!(plugin = %name, "plugin was still being {doing} at shutdown; it is not stopped");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, "stopping plugin");
                    continue;
                }
            };
            if let Err(e) = self.unload_claimed(&name).await {
                tracing::warn!(plugin = %name, error = %e, "stopping plugin");
            }
        }
        if let Some(mut scheduler) = self.scheduler.clone() {
            let _ = scheduler.shutdown().await;
        }
    }

    fn library_path(&self, file: &str) -> Result<PathBuf, PluginError> {
        let path = self.plugin_dir.join(file);
        if !path.exists() {
            return Err(PluginError::MissingFile {
                path,
                dir: self.plugin_dir.clone(),
            });
        }
        // A symlink in the plugin directory must not lead out of it.
        let real = std::fs::canonicalize(&path).map_err(|_| PluginError::MissingFile {
            path: path.clone(),
            dir: self.plugin_dir.clone(),
        })?;
        let dir = std::fs::canonicalize(&self.plugin_dir).unwrap_or(self.plugin_dir.clone());
        if real.parent() != Some(dir.as_path()) {
            return Err(PluginError::OutsideDir {
                path: real,
                dir: self.plugin_dir.clone(),
            });
        }
        Ok(path)
    }

    /// The library in `path` as its bytes are now, mapped from a private copy. Libraries are
    /// never unmapped (a plugin's threads may outlive it), so bytes mapped before are not
    /// mapped again: reloading an unchanged library costs no memory.
    fn map(&self, path: &Path) -> Result<PluginLibrary, PluginError> {
        let copy_error = |e: std::io::Error| PluginError::Copy {
            path: path.to_owned(),
            message: e.to_string(),
        };
        // Read through a small buffer, not whole: a library of a debug build is tens of
        // megabytes, and a freed buffer that size stays resident in glibc's arenas.
        let known = hash_into(path, std::io::sink()).map_err(copy_error)?;
        if let Some(library) = lock(&self.mapped).get(&known) {
            return Ok(library.clone());
        }
        // A private copy under a new name: the file in the plugin directory may be
        // overwritten in place (`cp new.so plugins/`) while its code runs, and the dynamic
        // loader would hand back a library already mapped under an old name. The copy is
        // hashed as it is written, so the cache key is what gets mapped even if the file
        // changed since.
        std::fs::create_dir_all(&self.copies_dir).map_err(copy_error)?;
        let n = self.generations.fetch_add(1, Ordering::Relaxed);
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let copy = self.copies_dir.join(format!("{n}-{name}"));
        let written = std::fs::File::create_new(&copy).and_then(|file| hash_into(path, file));
        let digest = match written {
            Ok(digest) => digest,
            Err(e) => {
                let _ = std::fs::remove_file(&copy);
                return Err(copy_error(e));
            }
        };
        if let Some(library) = lock(&self.mapped).get(&digest) {
            let _ = std::fs::remove_file(&copy);
            return Ok(library.clone());
        }
        let opened = PluginLibrary::open(&copy).map_err(|e| e.for_file(path));
        // Mapped or refused, the copy's name goes at once: nobody can change the mapped file
        // any more, and no copy outlives its load.
        let _ = std::fs::remove_file(&copy);
        let library = opened?;
        lock(&self.mapped).insert(digest, library.clone());
        Ok(library)
    }

    /// Where `decl`'s config text is, as an operator finds it.
    fn config_place(&self, decl: &PluginDecl) -> String {
        match &decl.config {
            PluginConfigSource::File(path) => path.display().to_string(),
            PluginConfigSource::Inline(_) => format!(
                "the [plugins.{}.config] table of {}; lines count from that table",
                decl.name,
                self.config_source.display()
            ),
            PluginConfigSource::None => "no config: the plugin has none".into(),
        }
    }

    fn plugin_config(&self, decl: &PluginDecl) -> Result<String, PluginError> {
        match &decl.config {
            PluginConfigSource::None => Ok(String::new()),
            PluginConfigSource::Inline(text) => Ok(text.clone()),
            PluginConfigSource::File(path) => {
                std::fs::read_to_string(path).map_err(|e| PluginError::ConfigFile {
                    plugin: decl.name.clone(),
                    path: path.clone(),
                    message: e.to_string(),
                })
            }
        }
    }
}

/// Copies the file `from` into `out` and returns the SHA-256 of the bytes copied.
fn hash_into(from: &Path, out: impl std::io::Write) -> std::io::Result<[u8; 32]> {
    struct Hashing<W> {
        out: W,
        hasher: sha2::Sha256,
    }
    impl<W: std::io::Write> std::io::Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.out.write(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush()
        }
    }
    let mut input = std::fs::File::open(from)?;
    let mut out = Hashing {
        out,
        hasher: sha2::Sha256::new(),
    };
    std::io::copy(&mut input, &mut out)?;
    Ok(out.hasher.finalize().into())
}

/// One plugin marked as being changed; dropping it ends the mark.
struct Claim<'a> {
    plugins: &'a Plugins,
    name: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.plugins.changing).remove(&self.name);
        self.plugins.released.notify_waiters();
    }
}

impl JobRunner {
    async fn fire(&self) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        if self.running.swap(true, Ordering::AcqRel) {
            // Said once per long run, not at every firing it overlaps; the count comes when
            // the run ends.
            if self.skipped.fetch_add(1, Ordering::AcqRel) == 0 {
                tracing::warn!(plugin = %self.plugin, job = %self.job.name, "the previous run is still going; firings are skipped until it ends");
            }
            return;
        }
        let outcome = InPlugin::call(&self.plugin, "job", &self.job.name, || self.job.run()).await;
        // Counted before the next run may start, so that no firing is said twice or lost.
        let skipped = self.skipped.swap(0, Ordering::AcqRel);
        self.running.store(false, Ordering::Release);
        if skipped > 0 {
            tracing::warn!(plugin = %self.plugin, job = %self.job.name, skipped, "a long run ended; firings were skipped while it ran");
        }
        match outcome {
            Ok(_) => {
                tracing::debug!(plugin = %self.plugin, job = %self.job.name, "job run finished")
            }
            Err(e) if e.is_panic() => {
                if let Some(plugins) = self.plugins.upgrade() {
                    plugins.fail(
                        &self.plugin,
                        self.generation,
                        &format!("panicked in job {}: {}", self.job.name, e.message()),
                    );
                }
            }
            Err(e) => {
                tracing::error!(plugin = %self.plugin, job = %self.job.name, error = %e, "job run failed");
            }
        }
    }
}

async fn deliver_events(
    plugins: Weak<Plugins>,
    name: String,
    generation: u64,
    instance: Arc<PluginInstance>,
    services: Arc<PluginServices>,
    mut receiver: mpsc::UnboundedReceiver<QueuedEvent>,
) {
    while let Some(event) = receiver.recv().await {
        if !services.attached.load(Ordering::Acquire) {
            break;
        }
        let outcome = InPlugin::call(&name, "event handler", event.kind.name(), || {
            instance.on_event(event.kind.to_abi(), &event.database, &event.detail)
        })
        .await;
        if let Some(handled) = event.handled {
            let _ = handled.send(());
        }
        match outcome {
            Ok(_) => {}
            Err(e) if e.is_panic() => {
                if let Some(plugins) = plugins.upgrade() {
                    plugins.fail(
                        &name,
                        generation,
                        &format!("panicked in on_event: {}", e.message()),
                    );
                }
                break;
            }
            Err(e) => tracing::warn!(plugin = %name, error = %e, "plugin event handler failed"),
        }
    }
}

/// Who a feed's items go to.
struct Delivery {
    plugins: Weak<Plugins>,
    name: String,
    generation: u64,
    instance: Arc<PluginInstance>,
    services: Arc<PluginServices>,
    /// The plugin function called, for logs.
    what: &'static str,
}

/// Hands an instance the items of a feed it subscribed to (committed changes, statements),
/// one at a time, until its subscription ends (it is unloaded or replaced) or it panics.
async fn deliver_feed<T, F>(
    to: Delivery,
    queue: Arc<crate::feed_queue::FeedQueue<T>>,
    call: impl Fn(&PluginInstance, &T) -> F,
) where
    T: crate::feed_queue::Queued,
    F: std::future::Future<Output = cairn_plugin_api::Outcome> + Send + 'static,
{
    while let Some(item) = queue.next().await {
        if !to.services.attached.load(Ordering::Acquire) {
            break;
        }
        let outcome = InPlugin::call(&to.name, "feed handler", to.what, || {
            call(&to.instance, &item)
        })
        .await;
        match outcome {
            Ok(_) => {}
            Err(e) if e.is_panic() => {
                if let Some(plugins) = to.plugins.upgrade() {
                    plugins.fail(
                        &to.name,
                        to.generation,
                        &format!("panicked in {}: {}", to.what, e.message()),
                    );
                }
                break;
            }
            Err(e) => {
                tracing::warn!(plugin = %to.name, function = to.what, error = %e, "plugin handler failed")
            }
        }
    }
}

/// Checks rows against declared columns: the right width, and each value of the column's
/// type or NULL (an integer is accepted where a real is declared).
/// `what` declared them ("procedure", "table function").
pub(super) fn conform(
    columns: &[Column],
    rows: Vec<Vec<Value>>,
    what: &str,
) -> Result<Vec<Vec<Value>>, String> {
    rows.into_iter()
        .enumerate()
        .map(|(r, row)| {
            if row.len() != columns.len() {
                return Err(format!(
                    "row {} has {} values but the {what} declares {} columns",
                    r + 1,
                    row.len(),
                    columns.len()
                ));
            }
            row.into_iter()
                .zip(columns)
                .map(|(value, column)| match (value, column.ty) {
                    (Value::Null, _) => Ok(Value::Null),
                    (Value::Integer(i), ColumnType::Real) => Ok(Value::Real(i as f64)),
                    (v @ Value::Integer(_), ColumnType::Integer)
                    | (v @ Value::Real(_), ColumnType::Real)
                    | (v @ Value::Text(_), ColumnType::Text)
                    | (v @ Value::Blob(_), ColumnType::Blob) => Ok(v),
                    (v, ty) => Err(format!(
                        "row {} column {}: a {v:?} where the {what} declares {ty:?}",
                        r + 1,
                        column.name
                    )),
                })
                .collect()
        })
        .collect()
}

fn max_log_level() -> abi::CairnLogLevel {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF | LevelFilter::ERROR => abi::CAIRN_LOG_ERROR,
        LevelFilter::WARN => abi::CAIRN_LOG_WARN,
        LevelFilter::INFO => abi::CAIRN_LOG_INFO,
        LevelFilter::DEBUG => abi::CAIRN_LOG_DEBUG,
        _ => abi::CAIRN_LOG_TRACE,
    }
}

/// Runs a plugin's life-cycle call on the plugins' workers and waits for it at most
/// `limit`; past it the call is abandoned and counts as failed, with a message that says so.
async fn within(
    runtime: &Handle,
    limit: Option<std::time::Duration>,
    what: &'static str,
    plugin: &str,
    call: impl FnOnce() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = cairn_plugin_api::Outcome> + Send>,
    >,
) -> cairn_plugin_api::Outcome {
    let mut task = runtime.spawn(InPlugin::call(plugin, what, "", call));
    let joined = match limit {
        None => (&mut task).await,
        Some(limit) => match tokio::time::timeout(limit, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                task.abort();
                return Err(cairn_plugin_api::PluginError::failed(format!(
                    "its {what} did not finish within {} ms ([plugins.{plugin}] start_timeout); it was abandoned",
                    limit.as_millis()
                )));
            }
        },
    };
    joined.unwrap_or_else(|e| {
        Err(cairn_plugin_api::PluginError::failed(format!(
            "its {what} ended abnormally: {e}"
        )))
    })
}

/// How many threads run plugin code.
const PLUGIN_WORKERS: usize = 2;

/// The runtime plugin code runs on (their futures, jobs, events, timers): its own workers,
/// so that a plugin that blocks its thread starves other plugins, never the server's clients
/// or its shutdown. It lives as long as the process (a runtime cannot be dropped from
/// async code, and plugin libraries are never unloaded either).
fn plugin_runtime() -> Handle {
    // One per process, however many plugin systems are made (unit tests make several).
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(PLUGIN_WORKERS)
            .thread_name("cairn-plugin")
            .enable_all()
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "no separate runtime for plugins; they share the server's, so plugin code that blocks can stall clients");
            })
            .ok()
    });
    match runtime {
        Some(runtime) => runtime.handle().clone(),
        None => Handle::current(),
    }
}
