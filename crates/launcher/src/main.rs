//! The launcher helper process: `server` serves the addon, `guardian` watches `server` from
//! above, `descendants` is how both kill what is left below them. The protocol comes from this
//! crate's library, the same code the addon encodes requests and decodes replies with.

mod descendants;
mod guardian;
mod server;

fn main() {
  server::main()
}
