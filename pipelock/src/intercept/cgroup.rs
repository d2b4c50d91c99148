//! Identifying cgroup v2 directories.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::InterceptError;

/// `statfs` magic of a cgroup v2 filesystem.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

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

/// Fails unless `dir` is a directory on a cgroup v2 filesystem.
pub(super) fn ensure_cgroup2(dir: &Path) -> Result<(), InterceptError> {
    let not_cgroup2 = |reason: String| InterceptError::NotCgroup2 {
        path: dir.to_path_buf(),
        reason,
    };
    if !dir.is_dir() {
        return Err(not_cgroup2("not a directory".to_string()));
    }
    let c_path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| not_cgroup2("the path contains a NUL byte".to_string()))?;
    // SAFETY: statfs(2) writes into a zeroed struct we own, from a valid C string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(not_cgroup2(std::io::Error::last_os_error().to_string()));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
    let magic = stat.f_type as i64;
    if magic != CGROUP2_SUPER_MAGIC {
        return Err(not_cgroup2(format!(
            "its filesystem type is {magic:#x}, not cgroup2"
        )));
    }
    Ok(())
}
