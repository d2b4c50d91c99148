//! Identifying cgroup v2 directories, by path and by id.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::pins::filesystem_magic;
use super::InterceptError;

/// `statfs` magic of a cgroup v2 filesystem.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// How deep [`find_path`] descends into a cgroup tree.
const MAX_DEPTH: usize = 32;
/// How many directories [`find_path`] visits at most.
const MAX_VISITED: usize = 100_000;

/// The cgroup v2 id of `dir`: the id `bpf_get_current_cgroup_id()` reports for processes in
/// it, which is the directory's inode number.
///
/// # Errors
/// Fails when `dir` is not a directory on a cgroup v2 filesystem.
pub fn cgroup_id(dir: &Path) -> Result<u64, InterceptError> {
    ensure_cgroup2(dir)?;
    let metadata = std::fs::metadata(dir).map_err(|e| InterceptError::NotCgroup2 {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(metadata.ino())
}

/// Checks `dir` and opens it for attaching; returns the open directory and its id.
pub(super) fn open(dir: &Path) -> Result<(File, u64), InterceptError> {
    let id = cgroup_id(dir)?;
    let file = File::open(dir).map_err(|source| InterceptError::OpenCgroup {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok((file, id))
}

/// Fails unless `dir` is a directory on a cgroup v2 filesystem.
pub(super) fn ensure_cgroup2(dir: &Path) -> Result<(), InterceptError> {
    let not_cgroup2 = |reason: String| InterceptError::NotCgroup2 {
        path: dir.to_path_buf(),
        reason,
    };
    if !dir.is_dir() {
        return Err(not_cgroup2("not a directory".to_string()));
    }
    let magic = filesystem_magic(dir).map_err(|e| not_cgroup2(e.to_string()))?;
    if magic != CGROUP2_SUPER_MAGIC {
        return Err(not_cgroup2(format!(
            "its filesystem type is {magic:#x}, not cgroup2"
        )));
    }
    Ok(())
}

/// A directory of the cgroup with id `id`, searched under every cgroup v2 mount of this
/// process (bounded). `None` when the cgroup is gone or not visible from here.
pub(super) fn find_path(id: u64) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut visited = 0;
    cgroup2_mounts(&mountinfo)
        .into_iter()
        .find_map(|mount| search(&mount, id, 0, &mut visited))
}

/// Mount points of cgroup2 filesystems in a mountinfo text.
fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // "36 25 0:31 / /sys/fs/cgroup/unified rw,... shared:10 - cgroup2 cgroup2 rw,..."
            let (left, right) = line.split_once(" - ")?;
            if right.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let mount_point = left.split_whitespace().nth(4)?;
            Some(PathBuf::from(unescape_mount_path(mount_point)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(value) = u8::try_from(value) {
                    out.push(value);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn search(dir: &Path, id: u64, depth: usize, visited: &mut usize) -> Option<PathBuf> {
    *visited += 1;
    if *visited > MAX_VISITED {
        return None;
    }
    if std::fs::metadata(dir).ok()?.ino() == id {
        return Some(dir.to_path_buf());
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|entry| search(&entry.path(), id, depth + 1, visited))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_mounts_in_mountinfo() {
        let text = "\
25 1 0:23 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
36 25 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
90 40 0:31 / /tmp/with\\040space rw - cgroup2 none rw";
        assert_eq!(
            cgroup2_mounts(text),
            vec![
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/tmp/with space")
            ]
        );
    }
}
