//! The launcher helper process; `server` is all of it. The protocol comes from this crate's
//! library, the same code the addon encodes requests and decodes replies with.

mod server;

fn main() {
  server::main()
}
