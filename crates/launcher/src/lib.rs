//! The launcher's wire protocol, as a library both sides link: the addon (`tethered`) encodes
//! requests and decodes replies, the `tethered-launcher` binary (`src/main.rs`, `src/server.rs`)
//! does the opposite. The server is not part of this library, so the addon never compiles it,
//! and this crate cannot reach napi or tokio, so the binary never links them.

pub mod protocol;
