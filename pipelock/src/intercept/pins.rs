//! The pin root's layout on bpffs: `<root>/maps/<MAP>` and `<root>/links/<cgroup id>/<program>`.
//!
//! Pinned links keep the programs attached after the loading process exits, so a cgroup's
//! connects keep going to Pipelock's (then closed) listener while it is down: fail closed.
//! Pinned maps let a restarted Pipelock re-adopt the state the still-attached programs use.
//! bpffs holds only BPF objects and directories, so the cgroup of an attachment is recorded as
//! its id in the directory name.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::InterceptError;

/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A pin root: where one Pipelock deployment keeps its maps and links.
#[derive(Debug, Clone)]
pub(super) struct PinRoot {
    root: PathBuf,
}

impl PinRoot {
    pub(super) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.root
    }

    pub(super) fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub(super) fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }

    pub(super) fn cgroup_links(&self, cgroup_id: u64) -> PathBuf {
        self.links_dir().join(cgroup_id.to_string())
    }

    pub(super) fn link(&self, cgroup_id: u64, program: &str) -> PathBuf {
        self.cgroup_links(cgroup_id).join(program)
    }

    /// Checks that the root is (or would be created) on bpffs, then creates its directories.
    ///
    /// # Errors
    /// [`InterceptError::PinRootNotBpffs`] when the nearest existing directory is on another
    /// filesystem; [`InterceptError::Pin`] when a directory cannot be created.
    pub(super) fn prepare(&self) -> Result<(), InterceptError> {
        self.ensure_bpffs()?;
        for dir in [self.maps_dir(), self.links_dir()] {
            std::fs::create_dir_all(&dir).map_err(|source| InterceptError::Pin {
                action: "create the pin directory",
                path: dir,
                source,
            })?;
        }
        Ok(())
    }

    /// Fails unless the root, or its nearest existing ancestor, is on bpffs.
    pub(super) fn ensure_bpffs(&self) -> Result<(), InterceptError> {
        let existing = self
            .root
            .ancestors()
            .find(|dir| dir.exists())
            .unwrap_or_else(|| Path::new("/"));
        let not_bpffs = |reason: String| InterceptError::PinRootNotBpffs {
            path: self.root.clone(),
            reason,
        };
        let magic = filesystem_magic(existing).map_err(|e| not_bpffs(e.to_string()))?;
        if magic != BPF_FS_MAGIC {
            return Err(not_bpffs(format!(
                "{} is on a filesystem of type {magic:#x}, not bpffs",
                existing.display()
            )));
        }
        Ok(())
    }

    /// Ids of the cgroups that have a links directory.
    pub(super) fn cgroups(&self) -> Result<Vec<u64>, InterceptError> {
        let entries = match std::fs::read_dir(self.links_dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(InterceptError::Pin {
                    action: "list",
                    path: self.links_dir(),
                    source,
                })
            }
        };
        let mut ids: Vec<u64> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Names of the links pinned for `cgroup_id`.
    pub(super) fn pinned_links(&self, cgroup_id: u64) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.cgroup_links(cgroup_id))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Unpins every link of `cgroup_id` (which detaches them, unless a process still holds
    /// one) and removes its directory. Returns how many links were unpinned.
    pub(super) fn remove_cgroup(&self, cgroup_id: u64) -> Result<usize, InterceptError> {
        let dir = self.cgroup_links(cgroup_id);
        let mut removed = 0;
        for name in self.pinned_links(cgroup_id) {
            let path = dir.join(&name);
            // Detached at once, whoever else holds the link; a link already detached (its
            // cgroup gone) answers ENOLINK or EINVAL and only needs unpinning.
            match super::hooks::detach_pinned_link(&path) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOLINK | libc::EINVAL)) => {}
                Err(source) => {
                    return Err(InterceptError::Pin {
                        action: "detach",
                        path,
                        source,
                    })
                }
            }
            std::fs::remove_file(&path).map_err(|source| InterceptError::Pin {
                action: "unpin",
                path,
                source,
            })?;
            removed += 1;
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(InterceptError::Pin {
                    action: "remove",
                    path: dir,
                    source,
                })
            }
        }
        Ok(removed)
    }

    /// Unpins the maps and removes the (then empty) directories, the root included.
    pub(super) fn remove_maps(&self) -> Result<(), InterceptError> {
        if let Ok(entries) = std::fs::read_dir(self.maps_dir()) {
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|source| InterceptError::Pin {
                    action: "unpin",
                    path,
                    source,
                })?;
            }
        }
        // Empty directories only; something else left in the root stays, with the root.
        for dir in [self.maps_dir(), self.links_dir(), self.root.clone()] {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }
}

/// The `statfs` filesystem magic of `path`.
pub(super) fn filesystem_magic(path: &Path) -> io::Result<i64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"))?;
    // SAFETY: statfs(2) writes into a zeroed struct we own, from a valid C string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
    Ok(stat.f_type as i64)
}
