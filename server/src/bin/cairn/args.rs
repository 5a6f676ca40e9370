//! The command line, as clap parses it. Option names are the SQL option names with dashes
//! (`compression_level` is `--compression-level`, `WITH (replace)` is `--replace`,
//! `new_db_name` is `--new-db-name`), so what works in one works in the other.

use std::path::PathBuf;

use cairn_server::logging::LogFormat;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "A database server: SQLite storage, PostgreSQL wire protocol",
    after_help = "Exit status: 0 done, 1 failed (anything else), 2 bad usage or config, 3 not found (file, database, archive; for `status`, no server running), 4 refused (exists, in use, incompatible), 5 verification failed, 6 I/O (disk, network, permissions), 7 not ready (`status`: starting or stopping)."
)]
pub struct Cli {
    /// How log lines are written to standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Print the result as one JSON document on standard output, and an error as one JSON
    /// object on standard error. For `serve`, the same as --log-format json.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// The config file; relative paths inside it are relative to its directory.
        #[arg(long, default_value = cairn_server::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Whether the server of a config runs, and (with its [server.http] endpoint) its
    /// databases, last backups, plugins and connections. Exit status 3 if it is not running,
    /// 7 while it starts or stops.
    Status {
        /// The server's config file.
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
        #[arg(long, required_unless_present = "into", conflicts_with = "into")]
        to: Option<String>,
        /// Instead of --to: a new archive named by the time in this collection (a directory,
        /// or `NAME:prefix` with --config), as BACKUP DATABASE … INTO does.
        #[arg(long, value_name = "LOCATION")]
        into: Option<String>,
        /// With --into: only the pages changed since the newest archive of the database there.
        #[arg(long, requires = "into")]
        incremental: bool,
        /// 0 (store) to 9 (smallest); by default 6, and 3 for an increment's pages.
        #[arg(long)]
        compression_level: Option<u32>,
        /// The unit of reading and compressing, such as 1MiB.
        #[arg(long, default_value = "1MiB")]
        buffer_size: String,
        /// At most this many bytes read from the database per second, such as 50MiB.
        #[arg(long)]
        max_rate: Option<String>,
        /// Encrypt the archive (WinZip AES-256) with this [backup.keys.NAME] of --config.
        #[arg(long, value_name = "NAME", requires = "config")]
        key: Option<String>,
        /// The server config whose [backup.destinations] `NAME:key` and [backup.keys.NAME]
        /// refer to.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check an archive: every entry's CRC, the manifest's sizes and SHA-256 hashes, and
    /// SQLite's integrity check of the database. Exit status 5 if anything is wrong.
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
        /// The newest archive of --database in this directory (or `NAME:prefix` with
        /// --config), as RESTORE DATABASE … FROM LATEST IN does.
        #[arg(long, value_name = "LOCATION")]
        from_latest: Option<String>,
        /// With --from-latest: restore under this name instead of --database (SQL's
        /// `new_db_name`).
        #[arg(long, requires = "from_latest")]
        new_db_name: Option<String>,
        /// With --from-latest: the database as of this instant (SQL's AS OF SYSTEM TIME:
        /// RFC 3339, or '2026-12-01 10:00:00+00'; UTC without an offset). A continuous
        /// archive there restores exactly the transactions committed by then.
        #[arg(long, value_name = "INSTANT", requires = "from_latest")]
        as_of: Option<String>,
        /// The server config whose [backup.destinations] `NAME:key` refers to.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The server's data directory (the server must be stopped).
        #[arg(long)]
        data_dir: PathBuf,
        /// The database to create (or replace, with --replace); with --from-latest, the one
        /// whose newest archive is restored.
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
    /// Print a shell's completion script for cairn (bash: `source <(cairn completions bash)`).
    Completions { shell: clap_complete::Shell },
    /// Print cairn's man page (roff), or with --dir write one page per subcommand there.
    Man {
        /// Write cairn.1, cairn-serve.1, … into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArchivesCommand {
    /// List every archive and export at LOCATION (a directory, or `NAME:prefix` with
    /// --config), read from their own manifests. Exit status 5 if one is unreadable (or,
    /// with --verify, fails its checks).
    List {
        location: String,
        /// The server config whose [backup.destinations] `NAME:prefix` refers to.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Read every entry back through its checks.
        #[arg(long)]
        verify: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a library's plugin descriptor and whether this server can load it, without
    /// running any of the library's code. Exit status 4 if it cannot be loaded.
    Inspect {
        /// The shared library file.
        file: PathBuf,
    },
}
