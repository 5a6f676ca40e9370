//! Plugins: loading them through the C ABI of `cairn-plugin-api`, their life cycle, and what
//! they register. See `plugin-api/README.md` for the author's side.
//!
//! A plugin is `running`, `disabled` (declared with `enabled = false`, or unloaded) or
//! `failed` (refused at load, its `start` failed, or it panicked later). A failed plugin's
//! procedures and jobs are unregistered at once; the server goes on serving. Libraries are
//! never closed: unloading stops the instance and forgets what it registered, and reloading
//! loads a fresh copy of the file under another name.

pub mod functions;
pub mod gauges;
mod registry;
mod services;
mod table_functions;

pub use registry::{PluginError, PluginRow, Plugins};
