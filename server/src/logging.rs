//! Log output: human-readable lines by default, one JSON object per line with
//! `--log-format json`. The level comes from `CAIRN_LOG` (tracing's filter syntax), default
//! `info` for the server and `warn` for the other commands (whose results go to standard
//! output and whose errors are sentences, not log lines).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The default level: the server's log, or a command's warnings only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Server,
    Command,
}

/// Installs the global subscriber; call once, first thing. A `CAIRN_LOG` that is set but
/// is not a filter is refused (a typo would otherwise silence the log it meant to widen).
pub fn init(format: LogFormat, verbosity: Verbosity) -> Result<(), String> {
    let filter = match std::env::var("CAIRN_LOG") {
        Err(_) => EnvFilter::new(match verbosity {
            Verbosity::Server => "info,tokio_cron_scheduler=warn",
            Verbosity::Command => "warn",
        }),
        Ok(text) => EnvFilter::builder().parse(&text).map_err(|e| {
            format!(
                "CAIRN_LOG={text:?} is not a log filter ({e}); write a level (error, warn, info, debug, trace) or targets with levels, such as info,cairn_server=debug"
            )
        })?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
