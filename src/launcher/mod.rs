//! The launcher: a small helper process that starts, watches and kills every child of this
//! Node process. `protocol` is the wire format both sides share; `client` is the addon's side;
//! `server.rs` runs in the helper process and is compiled only into the `tethered-launcher`
//! binary (`src/bin/tethered-launcher.rs`).

pub mod client;
pub mod protocol;
