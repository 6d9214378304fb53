//! The launcher helper process (see `src/launcher/server.rs`). It is built from the same
//! sources as the addon but does not link the addon's library, which needs Node's symbols.

// Shared with the addon, which uses the other half (encoding requests, decoding replies).
#[allow(dead_code)]
#[path = "../launcher/protocol.rs"]
mod protocol;
#[path = "../launcher/server.rs"]
mod server;

fn main() {
  server::main()
}
