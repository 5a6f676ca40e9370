//! `cairn`: the server binary. Parses arguments, sets up logging, and maps errors to exit codes.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{Context, bail};
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
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Passwd => passwd(),
        Command::Plugin {
            command: PluginCommand::Inspect { file },
        } => inspect_plugin(&file),
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
        let server = Server::start(config).await?;
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
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
