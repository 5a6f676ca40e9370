//! The plugin: its procedures, a once-a-second check per database, and one run from backup to
//! verification to pruning.
//!
//! The server's job scheduler fires each database's check every second and never overlaps
//! two firings of one job; the check does nothing until the [`Timetable`] says the database is
//! due. Times come from [`Schedule`](crate::schedule::Schedule) in the configured zone, not
//! from the server's UTC cron, so DST and restarts are handled in one place that is tested with
//! a fake clock.
//!
//! Each archive is recorded with the identity of the directory it was written in, so retention
//! never takes a missing or replaced directory for deleted archives.
//!
//! An instance is replaced on reload: its successor first checks (in `prepare`, while this
//! one still runs) that it can work, then this one is stopped. A run of a stopped instance
//! ends at its next step, and records its outcome only while no newer run has begun.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cairn_plugin_api::{
    Args, ColumnType, Event, EventKind, Host, Plugin, PluginConfig, PluginError, Procedure, Reply,
    Value, tracing,
};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::FutureExt;

use crate::archives::{self, Verdict};
use crate::clock::{Clock, SystemClock};
use crate::config::{FullEvery, Overlap, Policy};
use crate::naming::TEMPORARY_PREFIX;
use crate::state::{ArchiveKind, ArchiveRecord, Armed, DirectoryId, State, StateFile};
use crate::timetable::{Runs, Timetable};

/// Each database's check fires every second.
const TICK: &str = "* * * * * *";
/// Job names are this prefix and the database name.
const JOB_PREFIX: &str = "backup ";
/// The job of a database's restore drills.
const DRILL_PREFIX: &str = "drill ";
/// Retries back off up to this far apart.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// How often a run waiting for someone else's backup of the same database looks again.
const BUSY_POLL: Duration = Duration::from_secs(1);

/// The automatic-backup plugin.
#[derive(Debug)]
pub struct AutomaticBackup {
    policy: Policy,
    timetable: Timetable,
    /// With `drill`: when each database's newest archive is drilled next.
    drills: Option<Timetable>,
    ready: OnceLock<Ready>,
    /// One lock per database: two runs of one database never overlap.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Set by `stop` (unload, reload, shutdown).
    stopped: AtomicBool,
    /// Wakes every wait (a retry's back-off, a wait for another backup) at `stop`.
    stopping: tokio::sync::Notify,
    /// Names this instance's runs in the state file.
    instance: String,
    runs: AtomicU64,
}

/// What `start` found out: where archives go and where state lives.
#[derive(Debug)]
struct Ready {
    /// The target directory (for a destination, its location, shown as a path).
    directory: PathBuf,
    /// `target_directory` when it names a destination of the server (`offsite:auto`):
    /// archives are written, verified and pruned there through the host (ABI 1.3).
    destination: Option<String>,
    state: StateFile,
}

/// A restore drill that ended well.
struct Drilled {
    archive: String,
    created_at: String,
    tables: i64,
    rows: i64,
}

/// A run that ended well.
struct Done {
    path: String,
    bytes: u64,
    pruned: usize,
}

/// What verifying an archive found in its manifest.
struct Checked {
    created_at: DateTime<Utc>,
    /// Of an increment: the file name of its parent.
    parent: Option<String>,
}

/// Why one attempt did not end well.
enum Attempt {
    /// Another backup of the database is running (someone's BACKUP, or the previous
    /// instance's run during a reload).
    Busy(String),
    /// The name this run would write is this plugin's archive of the same period already.
    Covered(String),
    Failed(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn optional_text(text: Option<String>) -> Value {
    text.map_or(Value::Null, Value::Text)
}

fn failed(e: impl std::fmt::Display) -> PluginError {
    PluginError::failed(e.to_string())
}

#[cairn_plugin_api::async_trait]
impl Plugin for AutomaticBackup {
    fn new(config: PluginConfig) -> Result<Self, PluginError> {
        AutomaticBackup::with_clock(config, Arc::new(SystemClock))
    }

    fn prepare(&self, host: &Host) -> Result<(), PluginError> {
        // Everything start needs, checked while a predecessor still runs.
        self.open(host).map(drop)
    }

    async fn stop(&self, _host: &Host) -> Result<(), PluginError> {
        // A run still going (a retry waiting, a wait for someone else's backup) ends at its
        // next step instead of outliving the instance.
        self.stopped.store(true, Ordering::Release);
        self.stopping.notify_waiters();
        Ok(())
    }

    async fn start(&self, host: &Host) -> Result<(), PluginError> {
        let ready = self.open(host)?;
        if let Some(prefix) = &ready.destination {
            // A destination the server does not have is a config mistake: refused (a reload
            // keeps the previous instance). A store that does not answer now is a state that
            // passes: the plugin starts, and its runs fail, retry and say why until it does.
            // A prefix nothing is under: one cheap request, however many archives there are.
            match host
                .list_archives(&format!("{prefix}/cairn-start-check"))
                .await
            {
                Ok(_) => {}
                Err(PluginError::InvalidArgument(why)) => {
                    return Err(PluginError::Config(format!(
                        "`target_directory` {prefix:?}: {why}"
                    )));
                }
                Err(e) => {
                    tracing::warn!(location = %prefix, error = %e.message(), "the target destination does not answer now; runs will retry until it does");
                }
            }
        }
        adopt_records_without_directory(&ready)?;
        let _ = self.ready.set(ready);
        host.register_procedure(
            Procedure::new("status")
                .description("One row per database: last run, its outcome, archives kept, next run")
                .column("database", ColumnType::Text)
                .column("last_run", ColumnType::Text)
                .column("last_status", ColumnType::Text)
                .column("last_error", ColumnType::Text)
                .column("last_archive", ColumnType::Text)
                .column("archives_kept", ColumnType::Integer)
                .column("next_run", ColumnType::Text)
                .column("last_drill", ColumnType::Text)
                .column("last_drill_status", ColumnType::Text)
                .column("last_drill_error", ColumnType::Text)
                .column("next_drill", ColumnType::Text),
        )?;
        host.register_procedure(
            Procedure::new("run")
                .description("run('db'): back up, verify and prune one database now")
                .column("database", ColumnType::Text)
                .column("archive", ColumnType::Text)
                .column("bytes", ColumnType::Integer)
                .column("pruned", ColumnType::Integer),
        )?;
        host.register_procedure(
            Procedure::new("prune")
                .description(
                    "prune(dry_run => true[, database => 'db']): what retention keeps and removes",
                )
                .column("database", ColumnType::Text)
                .column("archive", ColumnType::Text)
                .column("created_at", ColumnType::Text)
                .column("action", ColumnType::Text)
                .column("reason", ColumnType::Text)
                .column("kind", ColumnType::Text),
        )?;
        host.register_procedure(
            Procedure::new("drill")
                .description(
                    "drill('db'): restore the newest archive into a scratch file and check it, now",
                )
                .column("database", ColumnType::Text)
                .column("archive", ColumnType::Text)
                .column("created_at", ColumnType::Text)
                .column("tables", ColumnType::Integer)
                .column("rows", ColumnType::Integer),
        )?;
        host.subscribe(&[EventKind::DatabaseCreated, EventKind::DatabaseDropped])?;
        if !self.policy.enabled {
            tracing::info!("automatic backups are disabled (enabled = false); run() still works");
            return Ok(());
        }
        let databases = host.databases()?;
        for pattern in self.policy.unmatched_includes(&databases) {
            tracing::warn!(pattern = %pattern, databases = %databases.join(", "), "a db_include pattern matches no database; nothing is backed up for it until such a database exists");
        }
        let mut armed = 0;
        for database in databases {
            if self.policy.includes(&database) {
                self.arm(host, &database)?;
                armed += 1;
            }
        }
        tracing::info!(
            databases = armed,
            schedule = %self.policy.schedule.key(),
            directory = %self.ready()?.directory.display(),
            "automatic backups scheduled"
        );
        Ok(())
    }

    async fn on_event(&self, host: &Host, event: Event) -> Result<(), PluginError> {
        match (event.kind, event.database) {
            (EventKind::DatabaseCreated, Some(database))
                if self.policy.enabled && self.policy.includes(&database) =>
            {
                self.arm(host, &database)
            }
            (EventKind::DatabaseDropped, Some(database)) => {
                self.timetable.forget(&database);
                if let Some(drills) = &self.drills {
                    drills.forget(&database);
                }
                self.unpublish(host, &database);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn call(
        &self,
        host: &Host,
        procedure: &str,
        args: Args,
    ) -> Result<Vec<Vec<Value>>, PluginError> {
        match procedure {
            "status" => self.status(host),
            "run" => {
                let database = database_argument(host, &args, "run")?;
                let done = self.run_now(host, &database).await?;
                Ok(vec![vec![
                    Value::Text(database),
                    Value::Text(done.path),
                    Value::Integer(i64::try_from(done.bytes).unwrap_or(i64::MAX)),
                    Value::Integer(done.pruned as i64),
                ]])
            }
            "drill" => {
                let database = database_argument(host, &args, "drill")?;
                let _guard = self.drill_lock(&database).lock_owned().await;
                let drilled = self
                    .drill(host, &database)
                    .await
                    .map_err(PluginError::failed)?;
                Ok(vec![vec![
                    Value::Text(database),
                    Value::Text(drilled.archive),
                    Value::Text(drilled.created_at),
                    Value::Integer(drilled.tables),
                    Value::Integer(drilled.rows),
                ]])
            }
            "prune" => {
                let dry_run = match args.named("dry_run").or_else(|| args.get(0)) {
                    None | Some(Value::Null) => true,
                    Some(value) => value.as_bool().ok_or_else(|| {
                        PluginError::InvalidArgument("dry_run is true or false".into())
                    })?,
                };
                let only = args
                    .named("database")
                    .or_else(|| args.get(1))
                    .and_then(Value::as_text)
                    .map(str::to_owned);
                self.prune_call(host, dry_run, only).await
            }
            other => Err(PluginError::InvalidArgument(format!(
                "automatic_backup has no procedure {other}; it has status, run, drill and prune"
            ))),
        }
    }

    async fn run_job(&self, host: &Host, job: &str) -> Result<(), PluginError> {
        if let Some(database) = job.strip_prefix(DRILL_PREFIX) {
            return self.check_drill(host, database).await;
        }
        match job.strip_prefix(JOB_PREFIX) {
            Some(database) => self.check(host, database).await,
            None => Ok(()),
        }
    }
}

impl AutomaticBackup {
    /// An instance reading the time from `clock`.
    fn with_clock(
        config: PluginConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<AutomaticBackup, PluginError> {
        let policy = Policy::from_config(&config, clock.now())?;
        let instance = format!("{}-{}", std::process::id(), clock.now().timestamp_micros());
        let drills = policy.drill.clone().map(|schedule| {
            // A drill waits for a backup of its database to end (they share its lock).
            Timetable::of(
                Runs::Drills,
                schedule,
                Overlap::Wait,
                policy.catch_up,
                Arc::clone(&clock),
            )
        });
        let timetable = Timetable::new(
            policy.schedule.clone(),
            policy.on_previous_running,
            policy.catch_up,
            clock,
        );
        Ok(AutomaticBackup {
            policy,
            timetable,
            drills,
            ready: OnceLock::new(),
            locks: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
            stopping: tokio::sync::Notify::new(),
            instance,
            runs: AtomicU64::new(0),
        })
    }

    fn now(&self) -> DateTime<Utc> {
        self.timetable.now()
    }

    /// Resolves and checks what the instance works with: a target directory it may write,
    /// and a readable state file.
    fn open(&self, host: &Host) -> Result<Ready, PluginError> {
        if host.abi_minor() < 2 {
            return Err(PluginError::failed(format!(
                "this plugin needs a server with plugin ABI 1.2 or later; this one offers 1.{}",
                host.abi_minor()
            )));
        }
        if self.policy.chain.is_some() && host.abi_minor() < 4 {
            return Err(PluginError::Config(format!(
                "mode = \"incremental\" needs a server with plugin ABI 1.4 or later (backups into a collection); this one offers 1.{}",
                host.abi_minor()
            )));
        }
        if self
            .policy
            .backup_options
            .iter()
            .any(|(name, _)| *name == "key")
            && host.abi_minor() < 5
        {
            return Err(PluginError::Config(format!(
                "encryption_key needs a server with plugin ABI 1.5 or later (encrypted archives); this one offers 1.{}",
                host.abi_minor()
            )));
        }
        if self.policy.drill.is_some() && host.abi_minor() < 5 {
            return Err(PluginError::Config(format!(
                "drill needs a server with plugin ABI 1.5 or later (restore drills); this one offers 1.{}",
                host.abi_minor()
            )));
        }
        let state = StateFile::in_directory(&host.state_directory()?);
        let known = state.read().map_err(failed)?;
        // Directories this plugin wrote archives in that are missing now (an unmounted disk).
        let missing: BTreeSet<PathBuf> = known
            .databases
            .values()
            .flat_map(|d| &d.archives)
            .filter_map(|r| r.directory.as_ref())
            .filter(|d| !d.path.exists())
            .map(|d| d.path.clone())
            .collect();
        let written = self.policy.target_directory.as_str();
        // `local:` names the backup directory's side, whatever follows.
        let (target, prefix) = match written.strip_prefix("local:") {
            Some(local) => (local, None),
            None => (written, destination_prefix(written)),
        };
        if let Some(prefix) = prefix {
            if prefix
                .split_once(':')
                .is_some_and(|(_, key)| key.is_empty())
            {
                return Err(PluginError::Config(format!(
                    "`target_directory` {target:?} names a destination but no prefix in it; write \"{target}auto\" (archives go under that prefix)"
                )));
            }
            if host.abi_minor() < 3 {
                return Err(PluginError::Config(format!(
                    "`target_directory` {target:?} names a destination of the server, which needs plugin ABI 1.3 or later; this server offers 1.{}",
                    host.abi_minor()
                )));
            }
            return Ok(Ready {
                directory: PathBuf::from(&prefix),
                destination: Some(prefix),
                state,
            });
        }
        let directory = host.archive_directory(target).map_err(|e| {
            PluginError::Config(format!("`target_directory` {target:?}: {}", e.message()))
        })?;
        if missing.contains(&directory) {
            // The server just made it anew, empty: taken back, so that runs fail (and say
            // why) until the real one is back, rather than fill a stand-in.
            let _ = std::fs::remove_dir(&directory);
            tracing::warn!(directory = %directory.display(), "the target directory, where this plugin wrote archives, is missing; it is not made anew, and runs fail until it is back (create it to start an empty one)");
            return Ok(Ready {
                directory,
                destination: None,
                state,
            });
        }
        let unusable = |e: std::io::Error| {
            PluginError::Config(format!(
                "`target_directory` {target:?}: {} cannot be written ({e}); fix the directory, then RELOAD PLUGIN automatic_backup",
                directory.display()
            ))
        };
        DirectoryId::of(&directory).map_err(unusable)?;
        // Writable, as a backup will need: an empty probe file, removed at once (and any a
        // crash left here before).
        remove_stale_probes(&directory);
        let probe = directory.join(format!("{TEMPORARY_PREFIX}probe-{}", self.instance));
        std::fs::File::create_new(&probe).map_err(unusable)?;
        let _ = std::fs::remove_file(&probe);
        Ok(Ready {
            directory,
            destination: None,
            state,
        })
    }

    fn ready(&self) -> Result<&Ready, PluginError> {
        self.ready
            .get()
            .ok_or_else(|| PluginError::failed("the plugin has not started"))
    }

    fn run_lock(&self, database: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(lock(&self.locks).entry(database.to_owned()).or_default())
    }

    /// The lock of `database`'s drills (beside its runs' locks, in the same map).
    fn drill_lock(&self, database: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(
            lock(&self.locks)
                .entry(format!("{DRILL_PREFIX}{database}"))
                .or_default(),
        )
    }

    fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> Result<T, PluginError> {
        let (answer, _) = self.ready()?.state.update(change).map_err(failed)?;
        Ok(answer)
    }

    /// Why a run of this instance must end now, if it must: it was stopped (a reload, an
    /// unload, shutdown), or the server no longer runs it (it was marked failed) and refuses
    /// its calls.
    fn ended(&self, host: &Host) -> Option<String> {
        if self.stopped.load(Ordering::Acquire) {
            return Some("the plugin was reloaded or stopped during this run".into());
        }
        match host.databases() {
            Err(PluginError::Refused(why)) => {
                Some(format!("the server no longer runs this instance ({why})"))
            }
            _ => None,
        }
    }

    /// Waits `duration`, or less if the instance stops meanwhile.
    async fn pause(&self, host: &Host, duration: Duration) {
        let stopping = self.stopping.notified();
        let mut stopping = std::pin::pin!(stopping);
        // Registered before the flag is read, so a stop in between still wakes us.
        stopping.as_mut().enable();
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let sleep = std::pin::pin!(host.sleep(duration));
        futures::future::select(sleep, stopping).await;
    }

    /// Puts `database` on the schedule: its next run from the state file (or afresh), and
    /// its per-second check.
    fn arm(&self, host: &Host, database: &str) -> Result<(), PluginError> {
        let backup_running = host.backups(Some(database), 8).is_ok_and(|reply| {
            // The newest job but a drill (a drill never holds up a backup); a paused job is
            // still running (PAUSE JOB).
            let at = |name: &str| {
                reply
                    .columns
                    .as_ref()
                    .and_then(|c| c.iter().position(|c| c.name == name))
            };
            let (kind, status) = (at("kind"), at("status"));
            fn text(row: &[Value], i: Option<usize>) -> Option<&str> {
                i.and_then(|i| row.get(i)?.as_text())
            }
            reply
                .rows
                .iter()
                .find(|row| text(row, kind) != Some("drill"))
                .is_some_and(|row| matches!(text(row, status), Some("running" | "paused")))
        });
        let (armed, next) = self
            .timetable
            .arm(&self.ready()?.state, database, backup_running)
            .map_err(failed)?;
        match armed {
            Armed::CatchUp => tracing::info!(
                database,
                "a run came due and was not run (the server was down, or the plugin was reloaded); it runs now (catch_up)"
            ),
            Armed::Missed => tracing::warn!(
                database,
                "a run came due and was not run (the server was down, or the plugin was reloaded); skipped because catch_up = false"
            ),
            Armed::Waiting => {}
        }
        if next.is_none() {
            return Err(PluginError::Config(format!(
                "`schedule` {} never comes due again",
                self.policy.schedule.key()
            )));
        }
        self.publish(host, database);
        if let Some(drills) = &self.drills {
            drills
                .arm(&self.ready()?.state, database, false)
                .map_err(failed)?;
            scheduled(host.schedule(&format!("{DRILL_PREFIX}{database}"), TICK))?;
        }
        scheduled(host.schedule(&format!("{JOB_PREFIX}{database}"), TICK))
    }

    /// The per-second check of drills: drills the database if it is due.
    async fn check_drill(&self, host: &Host, database: &str) -> Result<(), PluginError> {
        let Some(drills) = &self.drills else {
            return Ok(());
        };
        if self.stopped.load(Ordering::Acquire) || !drills.is_due(database) {
            return Ok(());
        }
        if !host.databases()?.iter().any(|d| d == database) {
            drills.forget(database);
            return Ok(());
        }
        // Two drills of a database never overlap; a backup is never held up by one (a drill
        // whose archive its pruning removed drills the newest one again).
        let guard = self.drill_lock(database).lock_owned().await;
        let started = self.now();
        // A failure is recorded, logged and alerted by the drill itself.
        let _ = self.drill(host, database).await;
        if self.stopped.load(Ordering::Acquire) {
            return Ok(());
        }
        drills
            .advance(&self.ready()?.state, database, started, None)
            .map_err(failed)?;
        drop(guard);
        Ok(())
    }

    /// A restore drill of `database`'s newest archive this plugin wrote (the caller holds the
    /// database's run lock): the server restores it into a scratch file, checks it and its
    /// row counts, and removes it. The outcome goes to the state (`status()`), the server's
    /// history (kind `drill`) and, on failure, an alert.
    async fn drill(&self, host: &Host, database: &str) -> Result<Drilled, String> {
        let started = self.now();
        let mut newest = self.newest_archive(database)?;
        let mut outcome = self.drill_one(host, database, newest.as_deref()).await;
        // Pruned meanwhile by a backup's retention (a drill never holds a backup up): the
        // archive that is newest now is drilled instead, once.
        if outcome.is_err() {
            let now_newest = self.newest_archive(database)?;
            if now_newest.is_some() && now_newest != newest {
                newest = now_newest;
                outcome = self.drill_one(host, database, newest.as_deref()).await;
            }
        }
        if self.stopped.load(Ordering::Acquire) {
            // Replaced or unloaded meanwhile: the successor drills, records and alerts.
            return outcome;
        }
        let (status, error) = match &outcome {
            Ok(drilled) => {
                tracing::info!(database, archive = %drilled.archive, tables = drilled.tables, rows = drilled.rows, "restore drill passed");
                ("ok", None)
            }
            Err(why) => {
                let message = format!("restore drill of {database:?} failed: {why}");
                if let Err(e) = host.alert(Some(database), &message) {
                    tracing::error!(database, alert_error = %e, "{message}");
                }
                ("failed", Some(why.clone()))
            }
        };
        let recorded = self.update(|state| {
            let entry = state.drills.entry(database.to_owned()).or_default();
            entry.last_run = Some(started);
            entry.last_status = Some(status.to_owned());
            entry.last_error = error;
            entry.last_archive = newest;
        });
        if let Err(e) = recorded {
            tracing::error!(database, error = %e, "could not record a drill in the state file");
        }
        outcome
    }

    /// The newest archive of `database` in this plugin's ledger that is still there.
    fn newest_archive(&self, database: &str) -> Result<Option<String>, String> {
        let ready = self.ready().map_err(|e| e.to_string())?;
        let state = ready.state.read().map_err(|e| e.to_string())?;
        Ok(state.databases.get(database).and_then(|entry| {
            entry
                .archives
                .iter()
                .filter(|r| {
                    r.location.is_some() || archives::path_of(&ready.directory, r).is_file()
                })
                .max_by_key(|r| r.created_at)
                .map(|r| archives::path_of(&ready.directory, r).display().to_string())
        }))
    }

    /// One drill of `archive` (none: nothing to drill, a failure).
    async fn drill_one(
        &self,
        host: &Host,
        database: &str,
        archive: Option<&str>,
    ) -> Result<Drilled, String> {
        let Some(archive) = archive else {
            return Err(format!(
                "there is no archive of {database:?} written by this plugin to restore"
            ));
        };
        let reply = host
            .drill_archive(database, archive)
            .await
            .map_err(|e| e.message().to_owned())?;
        Ok(Drilled {
            archive: archive.to_owned(),
            created_at: cell(&reply, "created_at")
                .and_then(Value::as_text)
                .unwrap_or_default()
                .to_owned(),
            tables: cell(&reply, "tables")
                .and_then(Value::as_integer)
                .unwrap_or(0),
            rows: cell(&reply, "rows")
                .and_then(Value::as_integer)
                .unwrap_or(0),
        })
    }

    /// Publishes at the server's `/metrics` (ABI 1.4) what this plugin knows of `database`:
    /// when its schedule next runs, and how many archives it keeps (its ledger). Best effort:
    /// a scrape is not worth failing a run for.
    fn publish(&self, host: &Host, database: &str) {
        let labels = [("database", database)];
        // Only databases on the schedule: a procedure's argument names any text.
        let Some(next) = self.timetable.next_run(database) else {
            self.unpublish(host, database);
            return;
        };
        let retained = self.ready().ok().and_then(|ready| {
            let state = ready.state.read().ok()?;
            Some(
                state
                    .databases
                    .get(database)
                    .map_or(0, |d| kept_archives(&ready.directory, &d.archives)),
            )
        });
        let published = host
            .set_gauge(
                "next_run_timestamp_seconds",
                "When the schedule next backs up the database, Unix time",
                &labels,
                next.timestamp_millis() as f64 / 1000.0,
            )
            .and_then(|()| match retained {
                Some(n) => host.set_gauge(
                    "archives_retained",
                    "Archives of the database this plugin wrote, verified and keeps",
                    &labels,
                    n as f64,
                ),
                None => Ok(()),
            });
        if let Err(e) = published {
            tracing::debug!(database, error = %e, "publishing the schedule's gauges");
        }
    }

    /// Takes `database`'s gauges down (it is gone, or no longer backed up).
    fn unpublish(&self, host: &Host, database: &str) {
        let labels = [("database", database)];
        let _ = host.remove_gauge("next_run_timestamp_seconds", &labels);
        let _ = host.remove_gauge("archives_retained", &labels);
    }

    /// The per-second check: runs the database if it is due.
    async fn check(&self, host: &Host, database: &str) -> Result<(), PluginError> {
        if self.stopped.load(Ordering::Acquire) || !self.timetable.is_due(database) {
            return Ok(());
        }
        if !host.databases()?.iter().any(|d| d == database) {
            self.timetable.forget(database);
            self.unpublish(host, database);
            return Ok(());
        }
        let run_lock = self.run_lock(database);
        let guard = match self.policy.on_previous_running {
            Overlap::Wait => run_lock.lock_owned().await,
            Overlap::Skip => match run_lock.try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => {
                    tracing::warn!(
                        database,
                        "scheduled run skipped: the previous run of this database is still going (on_previous_running = \"skip\")"
                    );
                    let now = self.now();
                    self.timetable
                        .advance(&self.ready()?.state, database, now, Some(Overlap::Skip))
                        .map_err(failed)?;
                    self.publish(host, database);
                    return Ok(());
                }
            },
        };
        let started = self.now();
        // A failure is recorded, logged and alerted by the run itself; the schedule goes on.
        let _ = self
            .run_with_retries(host, database, self.policy.retries)
            .await;
        if self.stopped.load(Ordering::Acquire) {
            // The instance that replaced this one keeps the schedule now.
            return Ok(());
        }
        self.timetable
            .advance(&self.ready()?.state, database, started, None)
            .map_err(failed)?;
        drop(guard);
        self.publish(host, database);
        Ok(())
    }

    /// `run('db')`: one attempt now, with the same lock as scheduled runs.
    async fn run_now(&self, host: &Host, database: &str) -> Result<Done, PluginError> {
        let run_lock = self.run_lock(database);
        let _guard = match self.policy.on_previous_running {
            Overlap::Wait => run_lock.lock_owned().await,
            Overlap::Skip => run_lock.try_lock_owned().map_err(|_| {
                PluginError::Refused(format!(
                    "a run of {database:?} is in progress; not starting another (on_previous_running = \"skip\")"
                ))
            })?,
        };
        let outcome = self.run_with_retries(host, database, 0).await;
        self.publish(host, database);
        match outcome {
            Ok(done) => Ok(done),
            Err(Attempt::Busy(why) | Attempt::Covered(why)) => Err(PluginError::Refused(why)),
            Err(Attempt::Failed(why)) => Err(PluginError::failed(why)),
        }
    }

    /// One run: up to `retries` more attempts after a failure, backing off; a panic counts
    /// as a failure. The outcome is recorded in the state, failures are logged and alerted.
    async fn run_with_retries(
        &self,
        host: &Host,
        database: &str,
        retries: u32,
    ) -> Result<Done, Attempt> {
        let run = format!(
            "{}-{}",
            self.instance,
            self.runs.fetch_add(1, Ordering::Relaxed)
        );
        let started = self.now();
        let began = self.update(|state| {
            let entry = state.databases.entry(database.to_owned()).or_default();
            entry.begin(&run, started);
        });
        if let Err(e) = &began {
            tracing::error!(database, error = %e, "could not record a run in the state file");
        }
        let record = |status: &str, error: Option<String>| {
            let result = self.update(|state| {
                let entry = state.databases.entry(database.to_owned()).or_default();
                entry.record(&run, status, error)
            });
            match result {
                Ok(true) => {}
                Ok(false) if began.is_err() => tracing::error!(
                    database,
                    status,
                    "this run's outcome is not in the state file: its start could not be recorded"
                ),
                Ok(false) => tracing::info!(
                    database,
                    status,
                    "a newer run of this database has begun since; its outcome stands"
                ),
                Err(e) => {
                    tracing::error!(database, error = %e, "could not record a run in the state file")
                }
            }
        };
        let mut delay = self.policy.retry_delay;
        let mut attempt = 1;
        loop {
            if let Some(why) = self.ended(host) {
                tracing::info!(database, "the run ends: {why}");
                record("interrupted", Some(why.clone()));
                return Err(Attempt::Failed(why));
            }
            let outcome = AssertUnwindSafe(self.attempt(host, database))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".into());
                    Err(Attempt::Failed(format!("the run panicked: {message}")))
                });
            match outcome {
                // Stopped (or failed) meanwhile: no retry, no alert, no "busy" from a server
                // that only refuses because this instance is gone.
                Err(Attempt::Failed(why) | Attempt::Busy(why)) if self.ended(host).is_some() => {
                    tracing::info!(database, "the run ends: {why}");
                    record("interrupted", Some(why.clone()));
                    return Err(Attempt::Failed(why));
                }
                Ok(done) => {
                    let done = self.after_success(host, database, done).await;
                    record("ok", None);
                    let seconds = (self.now() - started).num_milliseconds() as f64 / 1000.0;
                    tracing::info!(database, archive = %done.path, bytes = done.bytes, seconds, pruned = done.pruned, "automatic backup complete");
                    return Ok(done);
                }
                Err(Attempt::Busy(why)) if self.policy.on_previous_running == Overlap::Wait => {
                    tracing::debug!(database, reason = %why, "waiting for the running backup");
                    self.pause(host, BUSY_POLL).await;
                }
                Err(Attempt::Busy(why)) => {
                    tracing::warn!(database, reason = %why, "run skipped (on_previous_running = \"skip\")");
                    record("skipped", Some(why.clone()));
                    return Err(Attempt::Busy(why));
                }
                Err(Attempt::Covered(why)) => {
                    tracing::info!(database, reason = %why, "run skipped: this period's archive exists");
                    record("skipped", Some(why.clone()));
                    return Err(Attempt::Covered(why));
                }
                Err(Attempt::Failed(why)) if attempt <= retries => {
                    tracing::warn!(database, attempt, retries, retry_in_s = delay.as_secs(), error = %why, "automatic backup failed; retrying");
                    record("retrying", Some(why));
                    self.pause(host, delay).await;
                    delay = delay.saturating_mul(2).min(MAX_RETRY_DELAY);
                    attempt += 1;
                }
                Err(Attempt::Failed(why)) => {
                    let message = format!(
                        "automatic backup of {database:?} failed after {attempt} attempt(s): {why}"
                    );
                    // The alert is logged at error level by the server.
                    if let Err(e) = host.alert(Some(database), &message) {
                        tracing::error!(database, alert_error = %e, "{message}");
                    }
                    record("failed", Some(why.clone()));
                    return Err(Attempt::Failed(why));
                }
            }
        }
    }

    /// Backs up, and verifies if configured.
    async fn attempt(&self, host: &Host, database: &str) -> Result<Done, Attempt> {
        let ready = self.ready().map_err(|e| Attempt::Failed(e.to_string()))?;
        if let Some(full_every) = self.policy.chain {
            return self.attempt_chain(host, database, ready, full_every).await;
        }
        if let Some(prefix) = &ready.destination {
            return self.attempt_in(host, database, ready, prefix).await;
        }
        // A missing directory is this run's failure: the server would make a new one, and
        // the archives of the old one would look deleted.
        let directory = DirectoryId::of(&ready.directory).map_err(|e| {
            Attempt::Failed(format!(
                "the target directory {} is missing or unusable ({e}); nothing was written and no archive was forgotten; bring it back (or create it) and the next attempt writes there",
                ready.directory.display()
            ))
        })?;
        let zone = self.policy.schedule.zone();
        let mut file = self
            .policy
            .template
            .render(database, self.now().with_timezone(&zone));
        if ready.directory.join(&file).exists() {
            // A run in the same second as the last (run() right after a scheduled run):
            // the next second makes a new name if the template has seconds.
            let to_next_second = 1000 - u64::from(self.now().timestamp_subsec_millis());
            self.pause(host, Duration::from_millis(to_next_second))
                .await;
            file = self
                .policy
                .template
                .render(database, self.now().with_timezone(&zone));
        }
        // Still taken, by an archive this plugin wrote for this database in the same period
        // of the name (a catch-up, or run(), earlier today with a daily name): the period
        // has its archive, and no other name is allowed; not a failure.
        let target = ready.directory.join(&file);
        let written_here = || {
            ready.state.read().is_ok_and(|state| {
                state.databases.get(database).is_some_and(|d| {
                    d.archives
                        .iter()
                        .any(|r| archives::path_of(&ready.directory, r) == target)
                })
            })
        };
        if target.exists() && written_here() {
            return Err(Attempt::Covered(format!(
                "{file} was already written for this period of target_file_name (by an earlier run); a name with finer fields allows more runs"
            )));
        }
        let path = ready.directory.join(&file).display().to_string();
        let reply = host
            .backup(database, &path, &self.policy.backup_options)
            .await
            .map_err(|e| match e {
                PluginError::Refused(why) => Attempt::Busy(why),
                other => Attempt::Failed(other.message().to_owned()),
            })?;
        // Where the archive really went: the directory as it is now, after the server wrote.
        let directory = DirectoryId::of(&ready.directory).unwrap_or(directory);
        let bytes = written_bytes(&reply);
        let path = cell(&reply, "path")
            .and_then(Value::as_text)
            .map_or(path, str::to_owned);
        let (created_at, verified) = if self.policy.verify {
            match self.verify(host, database, &path).await {
                Ok(checked) => (checked.created_at, true),
                // Stopped while the backup ran, this instance can no longer ask the server
                // to verify: the archive is kept, unverified (retention leaves it alone).
                Err(_) if self.stopped.load(Ordering::Acquire) => {
                    tracing::warn!(database, archive = %path, "the plugin was reloaded or stopped while this backup ran: the archive is kept but not verified, so retention leaves it alone");
                    (self.now(), false)
                }
                Err(why) => {
                    // Out of the template's names, so nobody takes it for a good archive
                    // and retention never counts it; kept for a post-mortem.
                    let aside = format!("{path}.unverified");
                    let moved = std::fs::rename(&path, &aside)
                        .map(|()| format!("; the archive was renamed to {aside}"))
                        .unwrap_or_default();
                    return Err(Attempt::Failed(format!(
                        "the new archive failed verification: {why}{moved}"
                    )));
                }
            }
        } else {
            (self.now(), false)
        };
        self.record_archive(
            database,
            ArchiveRecord {
                file: file.clone(),
                created_at,
                bytes,
                verified,
                kind: Some(self.policy.kind),
                directory: Some(directory),
                location: None,
                missing_since: None,
                parent: None,
            },
            &path,
        )?;
        if self.policy.verify && !verified {
            return Err(Attempt::Failed(format!(
                "the plugin was reloaded or stopped while this backup ran; its archive {path} is kept, unverified"
            )));
        }
        Ok(Done {
            path,
            bytes,
            pruned: 0,
        })
    }

    /// One attempt into a destination: the same steps as [`Self::attempt`], with the store
    /// (through the host) in place of the directory.
    async fn attempt_in(
        &self,
        host: &Host,
        database: &str,
        ready: &Ready,
        prefix: &str,
    ) -> Result<Done, Attempt> {
        let zone = self.policy.schedule.zone();
        let render = || {
            let file = self
                .policy
                .template
                .render(database, self.now().with_timezone(&zone));
            let location = format!("{prefix}/{file}");
            (file, location)
        };
        // Only a verified archive covers its period: one that failed its check must not
        // stand in for a good one.
        let in_ledger = |location: &str| {
            ready.state.read().is_ok_and(|state| {
                state.databases.get(database).is_some_and(|d| {
                    d.archives
                        .iter()
                        .any(|r| r.verified && r.location.as_deref() == Some(location))
                })
            })
        };
        let (mut file, mut location) = render();
        if in_ledger(&location) {
            // As for a directory: the next second makes a new name if the template has one.
            let to_next_second = 1000 - u64::from(self.now().timestamp_subsec_millis());
            self.pause(host, Duration::from_millis(to_next_second))
                .await;
            (file, location) = render();
        }
        if in_ledger(&location) {
            return Err(Attempt::Covered(format!(
                "{file} was already written for this period of target_file_name (by an earlier run); a name with finer fields allows more runs"
            )));
        }
        let reply = host
            .backup(database, &location, &self.policy.backup_options)
            .await
            .map_err(|e| match e {
                PluginError::Refused(why) => Attempt::Busy(why),
                other => Attempt::Failed(other.message().to_owned()),
            })?;
        let bytes = written_bytes(&reply);
        let (created_at, verified, failure) = if self.policy.verify {
            match self.verify(host, database, &location).await {
                Ok(checked) => (checked.created_at, true, None),
                Err(why) => {
                    // A store cannot rename it aside, and a bad archive under a good name
                    // could be what RESTORE … FROM LATEST picks: this plugin wrote it, so it
                    // goes. Only if that fails too is it kept, recorded unverified (retention
                    // leaves it alone).
                    match host.delete_archive(&location).await {
                        Ok(_) => {
                            return Err(Attempt::Failed(format!(
                                "the new archive {location} failed verification: {why}; it was deleted"
                            )));
                        }
                        Err(e) => (
                            self.now(),
                            false,
                            Some(format!("{why}; deleting it failed too ({})", e.message())),
                        ),
                    }
                }
            }
        } else {
            (self.now(), false, None)
        };
        self.record_archive(
            database,
            ArchiveRecord {
                file: file.clone(),
                created_at,
                bytes,
                verified,
                kind: Some(self.policy.kind),
                directory: None,
                location: Some(location.clone()),
                missing_since: None,
                parent: None,
            },
            &location,
        )?;
        if let Some(why) = failure {
            return Err(Attempt::Failed(format!(
                "the new archive {location} failed verification: {why}; it is kept, unverified, and retention leaves it alone"
            )));
        }
        Ok(Done {
            path: location,
            bytes,
            pruned: 0,
        })
    }

    /// One attempt with `mode = "incremental"`: into the target directory (or destination
    /// prefix) as a collection, an increment on the newest restorable archive of the ledger
    /// there, or a full archive when `full_every` says so or none is restorable.
    async fn attempt_chain(
        &self,
        host: &Host,
        database: &str,
        ready: &Ready,
        full_every: FullEvery,
    ) -> Result<Done, Attempt> {
        let directory = match &ready.destination {
            Some(_) => None,
            None => Some(DirectoryId::of(&ready.directory).map_err(|e| {
                Attempt::Failed(format!(
                    "the target directory {} is missing or unusable ({e}); nothing was written and no archive was forgotten; bring it back (or create it) and the next attempt writes there",
                    ready.directory.display()
                ))
            })?),
        };
        let records = ready
            .state
            .read()
            .map_err(|e| Attempt::Failed(e.to_string()))?
            .databases
            .get(database)
            .map(|d| d.archives.clone())
            .unwrap_or_default();
        let collection = match &ready.destination {
            Some(prefix) => prefix.clone(),
            None => ready.directory.display().to_string(),
        };
        let listing = match &ready.destination {
            Some(_) => Some(listing(host, &records).await),
            None => None,
        };
        // Only an archive in this very collection can be a parent: an increment names its
        // parent as a file beside it.
        let here = |r: &ArchiveRecord| match (&r.location, &directory) {
            (Some(location), None) => location
                .strip_prefix(collection.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|file| !file.contains('/')),
            (None, Some(directory)) => r.directory.as_ref() == Some(directory),
            _ => false,
        };
        let now = self.now();
        let parent = archives::next_parent(
            &ready.directory,
            database,
            &self.policy.template,
            &records,
            listing.as_ref(),
            here,
        )
        .filter(|(_, links, full_at)| !full_every.full_due(*links, *full_at, now))
        .map(|(record, _, _)| record.file.clone());
        let options = |parent: Option<&str>| {
            let mut options = self.policy.backup_options.clone();
            options.push(("into", Value::Integer(1)));
            if let Some(parent) = parent {
                options.push(("parent", Value::Text(parent.to_owned())));
            }
            options
        };
        let busy_or_failed = |e: PluginError| match e {
            PluginError::Refused(why) => Attempt::Busy(why),
            other => Attempt::Failed(other.message().to_owned()),
        };
        let reply = match host
            .backup(database, &collection, &options(parent.as_deref()))
            .await
        {
            // The server refuses an increment it cannot build (the page size changed with a
            // VACUUM, the parent's chain is damaged): a full archive starts a new chain.
            Err(PluginError::InvalidArgument(why)) if parent.is_some() => {
                tracing::warn!(database, parent = parent.as_deref(), reason = %why, "the increment was refused; taking a full archive instead");
                host.backup(database, &collection, &options(None))
                    .await
                    .map_err(busy_or_failed)?
            }
            other => other.map_err(busy_or_failed)?,
        };
        let bytes = written_bytes(&reply);
        let path = cell(&reply, "path")
            .and_then(Value::as_text)
            .map(str::to_owned)
            .ok_or_else(|| Attempt::Failed("the server did not say where it wrote".into()))?;
        let file = path.rsplit(['/', ':']).next().unwrap_or(&path).to_owned();
        let location = match &ready.destination {
            Some(prefix) => format!("{prefix}/{file}"),
            None => path.clone(),
        };
        let (checked, failure) = if self.policy.verify {
            match self.verify(host, database, &location).await {
                Ok(checked) => (Some(checked), None),
                Err(_) if self.stopped.load(Ordering::Acquire) => (
                    None,
                    Some(format!(
                        "the plugin was reloaded or stopped while this backup ran; its archive {location} is kept, unverified"
                    )),
                ),
                Err(why) => {
                    // Never left under a member's name: a reader of the collection (RESTORE …
                    // FROM LATEST, the next increment) would take it.
                    let removed = match &ready.destination {
                        Some(_) => host
                            .delete_archive(&location)
                            .await
                            .map(|_| "it was deleted".to_owned())
                            .map_err(|e| e.message().to_owned()),
                        None => {
                            let aside = format!("{path}.unverified");
                            std::fs::rename(&path, &aside)
                                .map(|()| format!("it was renamed to {aside}"))
                                .map_err(|e| e.to_string())
                        }
                    };
                    match removed {
                        Ok(done) => {
                            return Err(Attempt::Failed(format!(
                                "the new archive {location} failed verification: {why}; {done}"
                            )));
                        }
                        Err(e) => (
                            None,
                            Some(format!(
                                "the new archive {location} failed verification: {why}; moving it out of the way failed too ({e}), so it is kept, unverified, and retention leaves it alone"
                            )),
                        ),
                    }
                }
            }
        } else {
            (None, None)
        };
        let record = ArchiveRecord {
            file,
            created_at: checked.as_ref().map_or(now, |c| c.created_at),
            bytes,
            verified: checked.is_some(),
            kind: Some(ArchiveKind::Full),
            // Where the archive really went: the directory as it is now.
            directory: directory.map(|d| DirectoryId::of(&ready.directory).unwrap_or(d)),
            location: ready.destination.as_ref().map(|_| location.clone()),
            missing_since: None,
            // What the archive says it builds on; unverified, what was asked for (kept alive
            // in vain at worst).
            parent: match &checked {
                Some(checked) => checked.parent.clone(),
                None => parent,
            },
        };
        self.record_archive(database, record, &location)?;
        if let Some(why) = failure {
            return Err(Attempt::Failed(why));
        }
        Ok(Done {
            path: location,
            bytes,
            pruned: 0,
        })
    }

    /// Adds `record` to the ledger of `database`, and `shown` as its last archive.
    fn record_archive(
        &self,
        database: &str,
        record: ArchiveRecord,
        shown: &str,
    ) -> Result<(), Attempt> {
        self.update(|state| {
            let entry = state.databases.entry(database.to_owned()).or_default();
            entry.archives.push(record);
            entry.last_archive = Some(shown.to_owned());
        })
        .map_err(|e| Attempt::Failed(e.to_string()))
    }

    /// Reopens the archive and checks it (an increment with its whole chain); returns what
    /// its manifest says.
    async fn verify(&self, host: &Host, database: &str, path: &str) -> Result<Checked, String> {
        let reply = host
            .verify_archive(path)
            .await
            .map_err(|e| e.message().to_owned())?;
        let named = cell(&reply, "database").and_then(Value::as_text);
        if named != Some(database) {
            return Err(format!("its manifest names database {named:?}"));
        }
        let created_at = cell(&reply, "created_at")
            .and_then(Value::as_text)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or("its manifest has no creation time")?;
        let parent = cell(&reply, "parent")
            .and_then(Value::as_text)
            .map(str::to_owned);
        Ok(Checked { created_at, parent })
    }

    /// Prunes after a verified success; a pruning error is logged, not a failed run.
    async fn after_success(&self, host: &Host, database: &str, mut done: Done) -> Done {
        // The config refuses [retention] without verify, so a success here is verified.
        if self.policy.retention.is_none() {
            return done;
        }
        match self.prune(host, database, false).await {
            Ok(verdicts) => done.pruned = verdicts.iter().filter(|v| v.remove).count(),
            Err(e) => {
                tracing::error!(database, error = %e, "pruning old archives failed; they stay until the next run")
            }
        }
        done
    }

    /// Applies retention to `database`'s archives (or only says what it would do).
    async fn prune(
        &self,
        host: &Host,
        database: &str,
        dry_run: bool,
    ) -> Result<Vec<Verdict>, PluginError> {
        let ready = self.ready()?;
        let Some(retention) = &self.policy.retention else {
            return Err(PluginError::InvalidArgument(
                "the config has no [retention], so every archive is kept".into(),
            ));
        };
        let records = ready
            .state
            .read()
            .map_err(failed)?
            .databases
            .get(database)
            .map(|d| d.archives.clone())
            .unwrap_or_default();
        let listing = listing(host, &records).await;
        let verdicts = archives::review(
            &ready.directory,
            database,
            &self.policy.template,
            &records,
            Some(&listing),
            retention,
            self.policy.schedule.zone(),
        );
        if dry_run {
            return Ok(verdicts);
        }
        // Records without a verdict are files gone from their own directory.
        let mut gone: BTreeSet<PathBuf> = records
            .iter()
            .map(|r| archives::path_of(&ready.directory, r))
            .collect();
        for verdict in &verdicts {
            if !verdict.remove {
                gone.remove(&verdict.path);
                continue;
            }
            let removed = match &verdict.location {
                Some(location) => host
                    .delete_archive(location)
                    .await
                    .map(drop)
                    .map_err(|e| e.message().to_owned()),
                None => std::fs::remove_file(&verdict.path).map_err(|e| e.to_string()),
            };
            match removed {
                Ok(()) => {
                    tracing::info!(database, archive = %verdict.path.display(), "old archive removed by retention")
                }
                Err(e) => {
                    tracing::error!(database, archive = %verdict.path.display(), error = %e, "could not remove an old archive");
                    gone.remove(&verdict.path);
                }
            }
        }
        self.update(|state| {
            if let Some(entry) = state.databases.get_mut(database) {
                entry
                    .archives
                    .retain(|r| !gone.contains(&archives::path_of(&ready.directory, r)));
                // Absences start, or end, with this listing.
                for record in &mut entry.archives {
                    let Some(location) = record.location.as_deref() else {
                        continue;
                    };
                    if listing.objects.contains_key(location) {
                        record.missing_since = None;
                    } else if listing.lacks(location) && record.missing_since.is_none() {
                        record.missing_since = Some(listing.listed_at);
                    }
                }
            }
        })?;
        Ok(verdicts)
    }

    async fn prune_call(
        &self,
        host: &Host,
        dry_run: bool,
        only: Option<String>,
    ) -> Result<Vec<Vec<Value>>, PluginError> {
        let databases: Vec<String> = match only {
            Some(database) => vec![database],
            None => self
                .ready()?
                .state
                .read()
                .map_err(failed)?
                .databases
                .into_keys()
                .collect(),
        };
        let mut rows = Vec::new();
        for database in databases {
            let run_lock = self.run_lock(&database);
            let _guard = run_lock.try_lock_owned().map_err(|_| {
                PluginError::Refused(format!(
                    "a run of {database:?} is in progress; prune after it ends"
                ))
            })?;
            let verdicts = self.prune(host, &database, dry_run).await?;
            if !dry_run {
                self.publish(host, &database);
            }
            for verdict in verdicts {
                let action = match (verdict.remove, dry_run) {
                    (false, _) => "keep",
                    (true, true) => "remove",
                    (true, false) => "removed",
                };
                rows.push(vec![
                    Value::Text(database.clone()),
                    Value::Text(verdict.file),
                    Value::Text(time_text(verdict.created_at)),
                    Value::Text(action.into()),
                    Value::Text(verdict.reason),
                    optional_text(verdict.kind.map(|k| match (k, &verdict.parent) {
                        (ArchiveKind::Full, Some(_)) => "incremental".to_owned(),
                        _ => k.mode().to_owned(),
                    })),
                ]);
            }
        }
        Ok(rows)
    }

    fn status(&self, host: &Host) -> Result<Vec<Vec<Value>>, PluginError> {
        let ready = self.ready()?;
        let mut state = ready.state.read().map_err(failed)?;
        let databases = host.databases()?;
        for database in &databases {
            if self.policy.includes(database) {
                state.databases.entry(database.clone()).or_default();
            }
        }
        let drills = std::mem::take(&mut state.drills);
        let mut rows: Vec<Vec<Value>> = state
            .databases
            .into_iter()
            .map(|(database, entry)| {
                let kept = kept_archives(&ready.directory, &entry.archives);
                let next = self.timetable.next_run(&database).map(time_text);
                let drill = drills.get(&database).cloned().unwrap_or_default();
                let next_drill = self
                    .drills
                    .as_ref()
                    .and_then(|d| d.next_run(&database))
                    .map(time_text);
                vec![
                    Value::Text(database),
                    optional_text(entry.last_run.map(time_text)),
                    optional_text(entry.last_status),
                    optional_text(entry.last_error),
                    optional_text(entry.last_archive),
                    Value::Integer(kept as i64),
                    optional_text(next),
                    optional_text(drill.last_run.map(time_text)),
                    optional_text(drill.last_status),
                    optional_text(drill.last_error),
                    optional_text(next_drill),
                ]
            })
            .collect();
        // An include that matches nothing is most likely a typo: say so where status is read.
        for pattern in self.policy.unmatched_includes(&databases) {
            rows.push(vec![
                Value::Text(pattern.clone()),
                Value::Null,
                Value::Text("no_match".into()),
                Value::Text(format!(
                    "db_include pattern {pattern:?} matches no database (there are: {}); nothing is backed up for it",
                    databases.join(", ")
                )),
                Value::Null,
                Value::Integer(0),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ]);
        }
        Ok(rows)
    }
}

/// The database a procedure names (first, or `database => …`), which must exist.
fn database_argument(host: &Host, args: &Args, procedure: &str) -> Result<String, PluginError> {
    let database = args
        .get(0)
        .or_else(|| args.named("database"))
        .and_then(Value::as_text)
        .ok_or_else(|| {
            PluginError::InvalidArgument(format!(
                "{procedure} needs the database: CALL automatic_backup.{procedure}('sales')"
            ))
        })?
        .to_owned();
    if !host.databases()?.contains(&database) {
        return Err(PluginError::InvalidArgument(format!(
            "there is no database {database:?}"
        )));
    }
    Ok(database)
}

/// A job scheduled, or already there (a database dropped and created again keeps its check).
fn scheduled(outcome: Result<(), PluginError>) -> Result<(), PluginError> {
    match outcome {
        Ok(()) | Err(PluginError::Refused(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the probe files a crash left in `directory` (only ours: `.cairn-tmp-probe-…`).
fn remove_stale_probes(directory: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    let prefix = format!("{TEMPORARY_PREFIX}probe-");
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Ledger records from before directories were recorded: those whose file is in the target
/// directory now are recorded as written there, so that retention may act on them (and
/// forget them only once they are gone from that very directory).
fn adopt_records_without_directory(ready: &Ready) -> Result<(), PluginError> {
    let Ok(directory) = DirectoryId::of(&ready.directory) else {
        return Ok(());
    };
    ready
        .state
        .update(|state| {
            for record in state.databases.values_mut().flat_map(|d| &mut d.archives) {
                if record.directory.is_none()
                    && record.location.is_none()
                    && directory.path.join(&record.file).is_file()
                {
                    record.directory = Some(directory.clone());
                }
            }
        })
        .map(drop)
        .map_err(failed)
}

/// `target_directory` as a destination location (`offsite:auto`, no trailing `/`), when it
/// names one: a lower-case identifier, then a colon.
fn destination_prefix(target: &str) -> Option<String> {
    cairn_plugin_api::backup_options::split_destination(target)
        .filter(|(name, _)| *name != "local")
        .map(|_| target.trim_end_matches('/').to_owned())
}

/// What the destinations of `records` hold, by location, and which of their prefixes could
/// not be listed (nothing there is judged gone or pruned this time; the others are).
async fn listing(host: &Host, records: &[ArchiveRecord]) -> archives::Listing {
    let prefixes: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.location.as_deref())
        .filter_map(|l| l.rsplit_once('/').map(|(prefix, _)| prefix))
        .collect();
    let mut listing = archives::Listing {
        listed_at: Utc::now(),
        ..archives::Listing::default()
    };
    for prefix in prefixes {
        let reply = match host.list_archives(prefix).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(location = prefix, error = %e.message(), "cannot list the destination; its archives are neither pruned nor forgotten this time");
                listing.unlisted.insert(prefix.to_owned());
                continue;
            }
        };
        for row in reply.rows {
            let text = |i: usize| row.get(i).and_then(Value::as_text).map(str::to_owned);
            let Some(location) = text(0) else { continue };
            listing.objects.insert(
                location,
                archives::Listed {
                    database: text(1),
                    kind: text(2).and_then(|k| match k.as_str() {
                        // An increment is a ZIP archive as a full one is.
                        "full" | "incremental" => Some(ArchiveKind::Full),
                        "export" => Some(ArchiveKind::Export),
                        _ => None,
                    }),
                    created_at: text(3)
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.with_timezone(&Utc)),
                    bytes: row
                        .get(4)
                        .and_then(Value::as_integer)
                        .and_then(|b| u64::try_from(b).ok())
                        .unwrap_or(0),
                    problem: text(5),
                    // Since this server version; older ones say nothing of parents.
                    parent: text(6),
                },
            );
        }
    }
    listing
}

/// The size a backup reply says it wrote (0 when it does not say).
fn written_bytes(reply: &Reply) -> u64 {
    cell(reply, "bytes")
        .and_then(Value::as_integer)
        .and_then(|b| u64::try_from(b).ok())
        .unwrap_or(0)
}

/// The value of `column` in the first row of a host reply.
fn cell<'a>(reply: &'a Reply, column: &str) -> Option<&'a Value> {
    let index = reply
        .columns
        .as_ref()?
        .iter()
        .position(|c| c.name == column)?;
    reply.rows.first()?.get(index)
}

/// The archives of a ledger that are still there to restore: in a destination (listings
/// tell), or a file in its directory. What `status` calls `archives_kept`, and the gauge.
fn kept_archives(directory: &std::path::Path, records: &[ArchiveRecord]) -> usize {
    records
        .iter()
        .filter(|r| r.location.is_some() || archives::path_of(directory, r).is_file())
        .count()
}
