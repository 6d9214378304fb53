//! The resident memory of whole process groups, read from /proc, for `maxMemory` and
//! `stats()`.
//!
//! A worker's memory is its group's: an image worker that runs a converter, or a Node worker
//! with a child of its own, would pass any ceiling on its leader alone. Linux keeps no total
//! per group, so every process's `stat` is read once per sample and its RSS added to its
//! group's sum — one pass for all the pool's groups. It reads files and may take a few
//! milliseconds on a busy machine, so it runs on a blocking thread, never on JavaScript's.

use std::collections::HashMap;

/// The RSS in bytes of each of `groups` (process group ids), summed over its living members;
/// a group with no member left is absent.
pub fn group_rss(groups: &[u32]) -> HashMap<u32, u64> {
  let mut sums = HashMap::new();
  let Ok(entries) = std::fs::read_dir("/proc") else {
    return sums;
  };
  let page = page_size();
  for entry in entries.flatten() {
    let name = entry.file_name();
    if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
      continue;
    }
    // A process may end between the listing and the read: it no longer counts.
    let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
      continue;
    };
    if let Some((group, pages)) = group_and_rss_pages(&stat) {
      if groups.contains(&group) {
        *sums.entry(group).or_insert(0) += pages.saturating_mul(page);
      }
    }
  }
  sums
}

/// The process group and RSS (in pages) of one `/proc/<pid>/stat` line. The command name, in
/// parentheses, may hold spaces and parentheses itself, so fields are counted after the last
/// `)`: state, ppid, pgrp, … and rss is the 22nd from there.
fn group_and_rss_pages(stat: &str) -> Option<(u32, u64)> {
  let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
  if fields.first() == Some(&"Z") {
    return None;
  }
  Some((fields.get(2)?.parse().ok()?, fields.get(21)?.parse().ok()?))
}

fn page_size() -> u64 {
  // SAFETY: sysconf reads a constant of the system; it has no preconditions.
  let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
  u64::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_stat_line_gives_its_group_and_rss() {
    let line = "4242 (a (weird) name) S 1 4240 4240 0 -1 4194560 120 0 0 0 1 0 0 0 20 0 1 0 \
                999 12345678 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    assert_eq!(group_and_rss_pages(line), Some((4240, 321)));
    let zombie = "4243 (gone) Z 1 4240 4240 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 999 0 0";
    assert_eq!(group_and_rss_pages(zombie), None);
    assert_eq!(group_and_rss_pages("garbage"), None);
  }

  #[test]
  fn this_process_group_uses_memory() {
    let group = nix::unistd::getpgrp().as_raw() as u32;
    let sums = group_rss(&[group, u32::MAX]);
    assert!(sums[&group] > 1 << 20, "{sums:?}");
    assert!(!sums.contains_key(&u32::MAX));
  }
}
