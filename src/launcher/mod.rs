//! The launcher: a small helper process that starts, watches and kills every child of this
//! Node process. It is its own crate (`crates/launcher`), so the helper cannot link napi or
//! tokio; the addon links only that crate's wire format (`tethered_launcher::protocol`).
//! `client` is the addon's side: it starts the helper and talks to it.

pub mod client;
