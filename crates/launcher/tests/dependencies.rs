//! The launcher must never link napi (its symbols exist only inside Node) or tokio (threads in
//! a process that forks). Not declaring them makes every `use` of them a compile error; this
//! test catches the other way in, someone declaring them (directly or through another crate).

use std::process::Command;

#[test]
fn the_launcher_links_neither_napi_nor_tokio() {
  let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
  let output = Command::new(cargo)
    .args([
      "tree", "--edges", "normal", "--prefix", "none", "--format", "{p}",
    ])
    .arg("--manifest-path")
    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
    .output()
    .expect("run cargo tree");
  let stderr = String::from_utf8_lossy(&output.stderr);
  assert!(output.status.success(), "cargo tree failed:\n{stderr}");
  let tree = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
  let packages: Vec<&str> = tree
    .lines()
    .filter_map(|line| line.split(' ').next())
    .collect();
  // The tree was read at all: the launcher's own dependency is in it.
  assert!(
    packages.contains(&"nix"),
    "unexpected cargo tree output:\n{tree}"
  );
  let forbidden: Vec<&&str> = packages
    .iter()
    .filter(|name| name.starts_with("napi") || name.starts_with("tokio"))
    .collect();
  assert!(
    forbidden.is_empty(),
    "the launcher depends on {forbidden:?}:\n{tree}"
  );
}
