//! A progress bar on standard error for long commands, when it is a terminal.

use std::io::IsTerminal;

use cairn_server::backup::BackupError;
use cairn_server::backup::progress::Progress;

/// What a progress bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Bytes,
    Rows,
}

/// Runs `work` with a progress bar on standard error when it is a terminal.
pub fn with_progress<T>(
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
