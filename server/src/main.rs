//! `cairn`: the server binary. Parses arguments, sets up logging, and maps errors to exit codes.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cairn_server::backup::options::parse_size;
use cairn_server::backup::progress::Progress;
use cairn_server::backup::{BackupError, BackupOptions, offline};
use cairn_server::logging::{self, LogFormat};
use cairn_server::scram::ScramVerifier;
use cairn_server::{Config, Server};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "A database server: SQLite storage, PostgreSQL wire protocol"
)]
struct Cli {
    /// How log lines are written to standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// The config file; relative paths inside it are relative to its directory.
        #[arg(long, default_value = cairn_server::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Read a password on standard input and print its SCRAM-SHA-256 secret for `scram = "…"`.
    Passwd,
    /// Plugin libraries.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Archives and exports that exist, in a directory or a destination.
    Archives {
        #[command(subcommand)]
        command: ArchivesCommand,
    },
    /// Take a consistent backup of one database of a live or stopped data directory.
    Backup {
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The database to back up.
        #[arg(long)]
        database: String,
        /// The archive to write; it must not exist. `NAME:key` names an object in a
        /// destination of the server config given with --config.
        #[arg(long)]
        to: String,
        /// 0 (store) to 9 (smallest).
        #[arg(long, default_value_t = cairn_server::backup::options::DEFAULT_LEVEL)]
        compression_level: u32,
        /// The unit of reading and compressing, such as 1MiB.
        #[arg(long, default_value = "1MiB")]
        buffer_size: String,
        /// The server config whose [backup.destinations] `NAME:key` refers to.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check an archive: every entry's CRC, the manifest's sizes and SHA-256 hashes, and
    /// SQLite's integrity check of the database. Exit status 1 if anything is wrong.
    Verify {
        /// The archive (`NAME:key` with --config).
        file: String,
        /// The server config whose [backup.destinations] `NAME:key` refers to.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Restore an archive into a stopped server's data directory, after verifying it.
    Restore {
        /// The archive (`NAME:key` with --config); or give --from-latest.
        #[arg(
            required_unless_present = "from_latest",
            conflicts_with = "from_latest"
        )]
        file: Option<String>,
        /// The newest archive of --database (or of --source-database) in this directory
        /// (or `NAME:prefix` with --config).
        #[arg(long, value_name = "LOCATION")]
        from_latest: Option<String>,
        /// With --from-latest: the database whose newest archive is restored as --database.
        #[arg(long, requires = "from_latest")]
        source_database: Option<String>,
        /// The server config whose [backup.destinations] `NAME:key` refers to.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The server's data directory (the server must be stopped).
        #[arg(long)]
        data_dir: PathBuf,
        /// The database to create (or replace, with --replace).
        #[arg(long)]
        database: String,
        /// Replace an existing database of that name.
        #[arg(long)]
        replace: bool,
        /// Make the data directory if it does not exist (restoring onto a new machine).
        #[arg(long)]
        create_data_dir: bool,
    },
    /// Export one database of a live or stopped data directory as gzip JSON lines, from one
    /// read transaction (writers go on).
    Export {
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The database to export.
        #[arg(long)]
        database: String,
        /// The file to write (by convention `.json.gz`); it must not exist.
        #[arg(long)]
        to: PathBuf,
        /// 1 (fastest) to 9 (smallest).
        #[arg(long, default_value_t = cairn_server::backup::options::DEFAULT_LEVEL)]
        compression_level: u32,
    },
    /// Import an export into a stopped server's data directory, checking every line.
    Import {
        /// The export file.
        file: PathBuf,
        /// The server's data directory (the server must be stopped).
        #[arg(long)]
        data_dir: PathBuf,
        /// The database to create (default: the one the file names).
        #[arg(long)]
        database: Option<String>,
        /// Replace an existing database of that name.
        #[arg(long)]
        replace: bool,
        /// Make the data directory if it does not exist (importing onto a new machine).
        #[arg(long)]
        create_data_dir: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ArchivesCommand {
    /// List every archive and export at LOCATION (a directory, or `NAME:prefix` with
    /// --config), read from their own manifests. Exit status 1 if one is unreadable (or,
    /// with --verify, fails its checks).
    List {
        location: String,
        /// The server config whose [backup.destinations] `NAME:prefix` refers to.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Read every entry back through its checks.
        #[arg(long)]
        verify: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Print a library's plugin descriptor and whether this server can load it, without
    /// running any of the library's code. Exit status 1 if it cannot be loaded.
    Inspect {
        /// The shared library file.
        file: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    // As PostgreSQL does: whatever else creates a file in this process (SQLite's journals, a
    // plugin), it is the owner's only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    if let Err(refused) = logging::init(cli.log_format) {
        // No log yet: a plain sentence on standard error, and the usage exit status.
        eprintln!("cairn: {refused}");
        return std::process::ExitCode::from(2);
    }
    // A panic the server catches (a decoder fed garbage by a client) is one log record, in
    // the log's format, not lines of its own on standard error.
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::capture();
        tracing::error!(panic = %info, backtrace = %backtrace, "a thread panicked");
    }));
    // A plugin's native code that kills the process (a bad pointer, abort, exit) leaves one
    // record naming the plugin first.
    cairn_plugin_api::ffi::crash::install_crash_report(cli.log_format == LogFormat::Json);
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Passwd => passwd(),
        Command::Plugin {
            command: PluginCommand::Inspect { file },
        } => inspect_plugin(&file),
        Command::Backup {
            data_dir,
            database,
            to,
            compression_level,
            buffer_size,
            config,
        } => stores(config.as_deref()).and_then(|stores| {
            backup(
                &data_dir,
                &database,
                &to,
                stores.as_ref(),
                compression_level,
                &buffer_size,
            )
        }),
        Command::Verify { file, config } => {
            stores(config.as_deref()).and_then(|stores| verify(&file, stores.as_ref()))
        }
        Command::Restore {
            file,
            from_latest,
            source_database,
            config,
            data_dir,
            database,
            replace,
            create_data_dir,
        } => stores(config.as_deref()).and_then(|stores| {
            let file = match (file, from_latest) {
                (Some(file), _) => file,
                (None, Some(location)) => offline::latest(
                    &location,
                    stores.as_ref(),
                    source_database.as_deref().unwrap_or(&database),
                )?,
                (None, None) => bail!("name an archive, or give --from-latest LOCATION"),
            };
            restore(
                &file,
                stores.as_ref(),
                &data_dir,
                &database,
                replace,
                data_dir_rule(create_data_dir),
            )
        }),
        Command::Archives {
            command:
                ArchivesCommand::List {
                    location,
                    config,
                    verify,
                    json,
                },
        } => stores(config.as_deref())
            .and_then(|stores| list_archives(&location, stores.as_ref(), verify, json)),
        Command::Export {
            data_dir,
            database,
            to,
            compression_level,
        } => export(&data_dir, &database, &to, compression_level),
        Command::Import {
            file,
            data_dir,
            database,
            replace,
            create_data_dir,
        } => import(
            &file,
            &data_dir,
            database.as_deref(),
            replace,
            data_dir_rule(create_data_dir),
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config_path)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut terminate =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let server = Server::start(config).await?;
        let name = loop {
            tokio::select! {
                _ = terminate.recv() => break "SIGTERM",
                _ = interrupt.recv() => break "SIGINT",
                _ = hangup.recv() => {
                    tracing::info!(signal = "SIGHUP", "reloading plugins and their configs");
                    server.reload_plugins().await;
                }
            }
        };
        tracing::info!(signal = name, "stopping");
        server.shutdown().await;
        anyhow::Ok(())
    })?;
    // Statements abandoned after the grace period may still hold blocking threads; do not
    // wait for them.
    runtime.shutdown_background();
    Ok(())
}

fn inspect_plugin(file: &std::path::Path) -> anyhow::Result<()> {
    use cairn_plugin_api::abi::{CAIRN_ABI_MAJOR, CAIRN_ABI_MINOR};
    use cairn_plugin_api::ffi::host::inspect;
    println!("file:        {}", file.display());
    println!("server ABI:  {CAIRN_ABI_MAJOR}.{CAIRN_ABI_MINOR}");
    let info = match inspect(file) {
        Ok(info) => info,
        Err(e) => {
            println!("compatible:  no");
            bail!("{e}");
        }
    };
    println!("name:        {}", info.name);
    println!("version:     {}", info.version);
    println!("description: {}", info.description);
    println!("ABI:         {}.{}", info.abi_major, info.abi_minor);
    println!(
        "needs host:  {}.{} or newer",
        info.abi_major, info.min_host_minor
    );
    println!("compatible:  yes");
    Ok(())
}

/// The destinations of the server config at `config`, when one is given.
fn stores(config: Option<&Path>) -> anyhow::Result<Option<offline::Stores>> {
    let Some(path) = config else {
        return Ok(None);
    };
    let config = Config::load(path)?;
    Ok(Some(
        offline::Stores::open(&config).map_err(anyhow::Error::msg)?,
    ))
}

fn list_archives(
    location: &str,
    stores: Option<&offline::Stores>,
    verify: bool,
    json: bool,
) -> anyhow::Result<()> {
    let archives = offline::archives(location, stores, verify)?;
    let bad = archives.iter().filter(|a| a.problem.is_some()).count();
    for a in &archives {
        if json {
            let line = serde_json::json!({
                "location": a.location,
                "database": a.database,
                "kind": a.kind,
                "created_at": a.created_at,
                "bytes": a.bytes,
                "compression_level": a.compression_level,
                "server_version": a.server_version,
                "verified": a.verified,
                "problem": a.problem,
            });
            println!("{line}");
        } else {
            println!(
                "{}  {}  {}  {}  {} bytes{}",
                a.created_at.as_deref().unwrap_or("-"),
                a.database.as_deref().unwrap_or("-"),
                a.kind.as_deref().unwrap_or("-"),
                a.location,
                a.bytes,
                match (&a.problem, a.verified) {
                    (Some(p), _) => format!("  PROBLEM: {p}"),
                    (None, Some(true)) => "  verified".into(),
                    _ => String::new(),
                }
            );
        }
    }
    if bad > 0 {
        bail!(
            "{bad} of {} files at {location} are not readable archives or failed their checks",
            archives.len()
        );
    }
    Ok(())
}

fn backup(
    data_dir: &Path,
    database: &str,
    to: &str,
    stores: Option<&offline::Stores>,
    level: u32,
    buffer_size: &str,
) -> anyhow::Result<()> {
    let mut options = BackupOptions::default();
    options.set_level(i64::from(level))?;
    options.set_buffer_size(parse_size(buffer_size)?)?;
    let written = with_progress("backing up", Unit::Bytes, |progress| {
        offline::backup(data_dir, database, to, stores, &options, progress)
    })?;
    println!("archive:   {}", written.path.display());
    println!("database:  {database}");
    println!("bytes:     {}", written.bytes);
    println!("snapshot:  {}", written.manifest.created_at);
    Ok(())
}

fn verify(file: &str, stores: Option<&offline::Stores>) -> anyhow::Result<()> {
    let verified = with_progress("verifying", Unit::Bytes, |progress| {
        offline::verify(file, stores, progress)
    })?;
    let manifest = &verified.manifest;
    println!("archive:   {file}");
    println!("database:  {}", manifest.database);
    println!("snapshot:  {}", manifest.created_at);
    println!(
        "written by Cairn {} (format {})",
        manifest.server_version, manifest.format_version
    );
    println!(
        "pages:     {} of {} bytes",
        manifest.page_count, manifest.page_size
    );
    println!("result:    ok (CRC, SHA-256 and SQLite integrity check passed)");
    Ok(())
}

fn data_dir_rule(create: bool) -> offline::DataDir {
    if create {
        offline::DataDir::CreateIfMissing
    } else {
        offline::DataDir::Existing
    }
}

fn restore(
    file: &str,
    stores: Option<&offline::Stores>,
    data_dir: &Path,
    database: &str,
    replace: bool,
    create: offline::DataDir,
) -> anyhow::Result<()> {
    let verified = with_progress("restoring", Unit::Bytes, |progress| {
        offline::restore(data_dir, file, stores, database, replace, create, progress)
    })?;
    println!(
        "restored database \"{database}\" ({} bytes, snapshot of \"{}\" at {})",
        verified.database_bytes, verified.manifest.database, verified.manifest.created_at
    );
    Ok(())
}

fn export(data_dir: &Path, database: &str, to: &Path, level: u32) -> anyhow::Result<()> {
    let mut options = BackupOptions::default();
    options.set_level(i64::from(level))?;
    let exported = with_progress("exporting", Unit::Rows, |progress| {
        offline::export(data_dir, database, to, &options, progress)
    })?;
    let header = &exported.header;
    println!("export:    {}", exported.path.display());
    println!("database:  {database}");
    println!("bytes:     {}", exported.bytes);
    println!("tables:    {}", header.tables);
    println!("rows:      {}", header.rows);
    println!("snapshot:  {}", header.created_at);
    Ok(())
}

fn import(
    file: &Path,
    data_dir: &Path,
    database: Option<&str>,
    replace: bool,
    create: offline::DataDir,
) -> anyhow::Result<()> {
    let imported = with_progress("importing", Unit::Rows, |progress| {
        offline::import(data_dir, file, database, replace, create, progress)
    })?;
    let name = database.unwrap_or(&imported.header.database);
    for (table, rows) in &imported.tables {
        println!("imported {rows} rows into table \"{table}\"");
    }
    println!(
        "imported database \"{name}\" ({} tables, {} rows; export of \"{}\" taken at {})",
        imported.tables.len(),
        imported.header.rows,
        imported.header.database,
        imported.header.created_at
    );
    Ok(())
}

/// What a progress bar counts.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Bytes,
    Rows,
}

/// Runs `work` with a progress bar on standard error when it is a terminal.
fn with_progress<T>(
    what: &'static str,
    unit: Unit,
    work: impl FnOnce(&Progress) -> Result<T, BackupError> + Send,
) -> anyhow::Result<T>
where
    T: Send,
{
    let progress = Progress::default();
    if !std::io::stderr().is_terminal() {
        return Ok(work(&progress)?);
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(match unit {
            Unit::Bytes => "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            Unit::Rows => "{msg} [{bar:40}] {human_pos}/{human_len} rows eta {eta}",
        })
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what);
    let done = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let (position, total) = progress.position();
                bar.set_length(total);
                bar.set_position(position);
                std::thread::park_timeout(std::time::Duration::from_millis(100));
            }
        });
        let result = work(&progress);
        done.store(true, std::sync::atomic::Ordering::Release);
        watcher.thread().unpark();
        result
    });
    bar.finish_and_clear();
    Ok(result?)
}

fn passwd() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Type the password and press Enter (it is echoed; pipe it in to avoid that):");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!(
            "empty password: write the password on standard input, e.g. `printf '%s' \"$PW\" | cairn passwd`"
        );
    }
    println!("{}", ScramVerifier::from_password(password));
    Ok(())
}
