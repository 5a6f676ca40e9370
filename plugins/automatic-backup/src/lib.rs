//! automatic-backup: Cairn's bundled plugin for unattended backups. On a schedule in the
//! operator's time zone it backs up every included database through the server's `BACKUP`,
//! reopens and verifies each new archive, and prunes old ones by restic's retention rules,
//! touching only archives it wrote. The server links it in as its builtin plugin, through the
//! same descriptor and ABI as any plugin library; built as a `cdylib`, it loads from the plugin
//! directory the same way.

mod archives;
mod chains;
mod clock;
mod config;
mod duration;
mod naming;
mod orientdb;
mod plugin;
mod retention;
mod schedule;
mod state;
mod timetable;

pub use plugin::AutomaticBackup;

cairn_plugin_api::export_plugin!(
    AutomaticBackup,
    name: "automatic_backup",
    version: env!("CARGO_PKG_VERSION"),
    description: "Scheduled, verified, rotated backups of every database",
);
