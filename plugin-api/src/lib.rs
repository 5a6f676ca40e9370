//! The crate a Cairn plugin depends on, and the only one.
//!
//! It knows nothing about the server. The versioned C ABI, the safe async SDK and the
//! `export_plugin!` macro are not here yet; until they are, there is nothing a plugin can
//! build against, and the server loads no plugins.
