//! A plugin's `tracing` (and `log`) events, forwarded to the server's log.
//!
//! A plugin has its own copy of `tracing`, whose global dispatcher the server never sees. The
//! SDK runs every call into the plugin under a dispatcher that formats each event and hands
//! the line to the host's `log` function, which tags it with the plugin's name. A plugin
//! linked into the server (a builtin) shares the server's `tracing`, and logs straight into it.

use std::io;

use tracing::{Dispatch, Level, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::abi;
use crate::ffi::guest::HostRef;

pub(crate) fn dispatch(host: HostRef) -> Dispatch {
    // A plugin linked into the server shares the server's copy of `tracing`, whose global
    // subscriber is already the server's log: forwarding through the host would re-enter
    // the dispatcher that is delivering the event.
    // Decided at the first call: afterwards `has_been_set` is true in a plugin's own copy
    // too (the SDK's scoped dispatcher sets it), and a second instance in the same mapped
    // library (a reload of unchanged bytes) would log into nothing.
    static SHARES_THE_SERVERS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *SHARES_THE_SERVERS.get_or_init(tracing::dispatcher::has_been_set) {
        return tracing::dispatcher::get_default(Dispatch::clone);
    }
    // Plugins that log through the `log` crate: route it into `tracing` (once per library).
    let _ = tracing_log::LogTracer::init();
    let max = match host.max_log_level() {
        abi::CAIRN_LOG_ERROR => LevelFilter::ERROR,
        abi::CAIRN_LOG_WARN => LevelFilter::WARN,
        abi::CAIRN_LOG_INFO => LevelFilter::INFO,
        abi::CAIRN_LOG_DEBUG => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(HostLog { host })
        .with_max_level(max)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .finish();
    Dispatch::new(subscriber)
}

pub(crate) fn level_to_abi(level: Level) -> abi::CairnLogLevel {
    match level {
        Level::ERROR => abi::CAIRN_LOG_ERROR,
        Level::WARN => abi::CAIRN_LOG_WARN,
        Level::INFO => abi::CAIRN_LOG_INFO,
        Level::DEBUG => abi::CAIRN_LOG_DEBUG,
        Level::TRACE => abi::CAIRN_LOG_TRACE,
    }
}

struct HostLog {
    host: HostRef,
}

impl<'a> MakeWriter<'a> for HostLog {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            host: self.host.clone(),
            level: abi::CAIRN_LOG_INFO,
            target: "plugin".to_owned(),
            line: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LogLine {
        LogLine {
            host: self.host.clone(),
            level: level_to_abi(*meta.level()),
            target: meta.target().to_owned(),
            line: Vec::new(),
        }
    }
}

/// One formatted event; sent to the host when the formatter is done with it.
struct LogLine {
    host: HostRef,
    level: abi::CairnLogLevel,
    target: String,
    line: Vec<u8>,
}

impl io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.line);
        let line = line.trim_end();
        if !line.is_empty() {
            self.host.log(self.level, &self.target, line);
        }
    }
}
