//! `cairn`: the server binary. Parses arguments, sets up logging, runs a command, prints its
//! result (text or `--json`) and maps failures to documented exit statuses (see [`exit`]).

mod args;
mod commands;
mod exit;
mod output;
mod progress_bar;
mod serve;
mod status;

use std::process::ExitCode;

use anyhow::bail;
use cairn_server::logging::{self, LogFormat, Verbosity};
use clap::{CommandFactory, Parser};

use args::{ArchivesCommand, Cli, Command, PluginCommand};
use output::Outcome;

/// mimalloc: glibc's malloc was a third of a large result's profile (issue 22).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // As PostgreSQL does: whatever else creates a file in this process (SQLite's journals, a
    // plugin), it is the owner's only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Scanned before parsing, so that even a parse error is said in JSON when asked.
    let json = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(e, json),
    };
    let serving = matches!(cli.command, Command::Serve { .. });
    let log_format = if serving && cli.json {
        LogFormat::Json
    } else {
        cli.log_format
    };
    let verbosity = if serving {
        Verbosity::Server
    } else {
        Verbosity::Command
    };
    if let Err(refused) = logging::init(log_format, verbosity) {
        // No log yet: a sentence on standard error, and the usage exit status.
        return ExitCode::from(output::report(
            &exit::failure(exit::Failure::Usage, refused),
            cli.json,
        ));
    }
    // A panic the server catches (a decoder fed garbage by a client) is one log record, in
    // the log's format, not lines of its own on standard error.
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::capture();
        tracing::error!(panic = %info, backtrace = %backtrace, "a thread panicked");
    }));
    // A plugin's native code that kills the process (a bad pointer, abort, exit) leaves one
    // record naming the plugin first.
    cairn_plugin_api::ffi::crash::install_crash_report(log_format == LogFormat::Json);
    if let Command::Serve { config } = cli.command {
        // The server's failures are log records: its standard error is a log.
        return match serve::serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{}", exit::sentence(&e));
                ExitCode::from(exit::Failure::of(&e).code())
            }
        };
    }
    let outcome = run(cli.command);
    let failure = match outcome {
        Ok(Outcome { output, failure }) => {
            output::print(&output, cli.json);
            failure
        }
        Err(e) => Some(e),
    };
    match failure {
        None => ExitCode::SUCCESS,
        Some(e) => ExitCode::from(output::report(&e, cli.json)),
    }
}

/// What clap refused (or was asked for: help, version). Its text names the argument and
/// shows the usage, as command lines do; with `--json` it is one JSON object instead.
fn usage(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !json {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::Failure::Usage.code()));
    }
    let rendered = e.render().to_string();
    let message = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    ExitCode::from(output::report(
        &exit::failure(exit::Failure::Usage, message),
        true,
    ))
}

/// Runs every command but `serve`.
fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Serve { .. } => bail!("serve runs apart"),
        Command::Status { config } => status::status(&config),
        Command::Passwd => commands::passwd(),
        Command::Plugin {
            command: PluginCommand::Inspect { file },
        } => commands::inspect_plugin(&file),
        Command::Backup {
            data_dir,
            database,
            to,
            into,
            incremental,
            compression_level,
            buffer_size,
            max_rate,
            key,
            config,
        } => {
            let stores = commands::stores(config.as_deref())?;
            let target = match (to, into) {
                (Some(to), _) => commands::BackupTarget::File(to),
                (None, Some(location)) => commands::BackupTarget::Into {
                    location,
                    incremental,
                },
                (None, None) => bail!("give --to FILE or --into LOCATION"),
            };
            let args = commands::BackupArgs {
                data_dir: &data_dir,
                database: &database,
                target: &target,
                level: compression_level,
                buffer_size: &buffer_size,
                max_rate: max_rate.as_deref(),
                key: key.as_deref(),
            };
            commands::backup(&args, stores.as_ref())
        }
        Command::Verify { file, config } => {
            let stores = commands::stores(config.as_deref())?;
            commands::verify(&file, stores.as_ref())
        }
        Command::Restore {
            file,
            from_latest,
            new_db_name,
            as_of,
            config,
            data_dir,
            database,
            replace,
            create_data_dir,
        } => {
            let stores = commands::stores(config.as_deref())?;
            let create = commands::data_dir_rule(create_data_dir);
            match (file, from_latest) {
                (Some(file), _) => {
                    let args = commands::RestoreArgs {
                        file: &file,
                        data_dir: &data_dir,
                        database: &database,
                        replace,
                        create,
                    };
                    commands::restore(&args, stores.as_ref())
                }
                // As in SQL: FROM LATEST restores the newest point of `database` (as of the
                // instant), under `new_db_name` when given.
                (None, Some(location)) => commands::restore_latest(
                    &commands::LatestArgs {
                        location: &location,
                        data_dir: &data_dir,
                        database: &database,
                        as_of: as_of.as_deref(),
                        target: new_db_name.as_deref().unwrap_or(&database),
                        replace,
                        create,
                    },
                    stores.as_ref(),
                ),
                (None, None) => bail!("name an archive, or give --from-latest LOCATION"),
            }
        }
        Command::Archives {
            command:
                ArchivesCommand::List {
                    location,
                    config,
                    verify,
                },
        } => {
            let stores = commands::stores(config.as_deref())?;
            commands::list_archives(&location, stores.as_ref(), verify)
        }
        Command::Export {
            data_dir,
            database,
            to,
            compression_level,
        } => commands::export(&data_dir, &database, &to, compression_level),
        Command::Import {
            file,
            data_dir,
            database,
            replace,
            create_data_dir,
        } => commands::import(&commands::ImportArgs {
            file: &file,
            data_dir: &data_dir,
            database: database.as_deref(),
            replace,
            create: commands::data_dir_rule(create_data_dir),
        }),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut script);
            let script = String::from_utf8_lossy(&script).into_owned();
            let json = serde_json::json!({ "shell": shell.to_string(), "script": script });
            Ok(Outcome::done(script, json))
        }
        Command::Man { dir } => man(dir.as_deref()),
    }
}

fn man(dir: Option<&std::path::Path>) -> anyhow::Result<Outcome> {
    use anyhow::Context;
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            let pages: Vec<String> = std::fs::read_dir(dir)
                .with_context(|| format!("listing {}", dir.display()))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("cairn") && name.ends_with(".1"))
                .collect();
            let text = format!("wrote {} man pages into {}\n", pages.len(), dir.display());
            Ok(Outcome::done(
                text,
                serde_json::json!({ "dir": dir, "pages": pages }),
            ))
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .context("rendering the man page")?;
            let page = String::from_utf8_lossy(&page).into_owned();
            Ok(Outcome::done(
                page.clone(),
                serde_json::json!({ "page": page }),
            ))
        }
    }
}
