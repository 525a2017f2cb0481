//! The THOP replay windows outlive the agent process.
//!
//! A restarted receiver has lost its sequence windows. It refuses frames
//! stamped before its start, less a slack for the clock difference between
//! hosts (`docs/thop.md` §7.4), but a CREATE captured in that last second
//! before a restart would otherwise be accepted again, and its request
//! (a POST included) would reach the server a second time. So the agent
//! keeps, per switch, the highest message sequence number it accepted in a
//! small file mapped `MAP_SHARED`: recording one is a store into the page
//! cache, with no system call, and it survives the process however it ends
//! (`kill -9` included; only a reboot loses it, and a reboot takes longer
//! than the slack). The next process resumes each switch's window there.
//!
//! The file is locked (`flock`) while an agent uses it: two agents never
//! share one. Layout, little-endian, one 4 KiB page: the magic
//! `BATONRP1`, then slots of two u64 words — `1 << 32 | sender node id`
//! (0: free) and the highest sequence number.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: u64 = u64::from_le_bytes(*b"BATONRP1");
const LEN: usize = 4096;
/// Switches a file remembers (words after the magic, two per slot).
pub const SLOTS: usize = (LEN / 8 - 1) / 2;
const USED: u64 = 1 << 32;

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file or its directory could not be opened, sized or mapped.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        err: io::Error,
    },
    /// Another running agent holds the file.
    #[error("{0}: held by another running agent (give each agent its own thop.replay_state)")]
    Busy(PathBuf),
    /// The file holds something else.
    #[error("{0}: not a replay state file (remove it if it is stale)")]
    Foreign(PathBuf),
}

/// The mapped state file of one agent.
pub struct ReplayState {
    map: NonNull<AtomicU64>,
    /// Holds the lock for as long as the state is in use.
    _file: File,
    /// Slot of each sender seen, to avoid scanning.
    slots: Vec<(u32, usize)>,
    full_warned: bool,
}

// SAFETY: the mapping is owned by this value alone (the file is locked
// against other agents) and only accessed through atomics.
unsafe impl Send for ReplayState {}

impl ReplayState {
    /// Opens (creating it and its directory, mode 0700/0600) and locks the
    /// state file.
    pub fn open(path: &Path) -> Result<ReplayState, StateError> {
        let io = |err| StateError::Io {
            path: path.to_path_buf(),
            err,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.kind() == io::ErrorKind::WouldBlock {
                StateError::Busy(path.to_path_buf())
            } else {
                io(err)
            });
        }
        let len = file.metadata().map_err(io)?.len();
        if len != 0 && len != LEN as u64 {
            return Err(StateError::Foreign(path.to_path_buf()));
        }
        file.set_len(LEN as u64).map_err(io)?;
        // SAFETY: a fresh shared mapping of a file of LEN bytes we hold open.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io(io::Error::last_os_error()));
        }
        let map = NonNull::new(p.cast::<AtomicU64>()).expect("mmap returned null");
        let mut st = ReplayState {
            map,
            _file: file,
            slots: Vec::new(),
            full_warned: false,
        };
        match st.word(0).load(Ordering::Relaxed) {
            MAGIC => {}
            // New, or created by a process that died before writing the magic.
            0 => st.word(0).store(MAGIC, Ordering::Relaxed),
            _ => return Err(StateError::Foreign(path.to_path_buf())),
        }
        for i in 0..SLOTS {
            let tag = st.word(1 + 2 * i).load(Ordering::Relaxed);
            if tag & USED != 0 {
                st.slots.push((tag as u32, i));
            }
        }
        Ok(st)
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < LEN / 8);
        // SAFETY: i is within the LEN-byte mapping, which lives as long as
        // self; u64 words of a page-aligned mapping are aligned.
        unsafe { &*self.map.as_ptr().add(i) }
    }

    /// The highest sequence number remembered for each sender.
    pub fn entries(&self) -> Vec<(u32, u64)> {
        self.slots
            .iter()
            .map(|&(s, i)| (s, self.word(2 + 2 * i).load(Ordering::Relaxed)))
            .collect()
    }

    /// Remembers `highest` for `sender` (never lowers it). False when every
    /// slot is taken by other senders (the caller logs it once).
    pub fn record(&mut self, sender: u32, highest: u64) -> bool {
        let slot = match self.slots.iter().find(|&&(s, _)| s == sender) {
            Some(&(_, i)) => i,
            None => {
                let Some(i) = (0..SLOTS).find(|i| self.slots.iter().all(|&(_, j)| j != *i)) else {
                    return false;
                };
                self.word(2 + 2 * i).store(highest, Ordering::Relaxed);
                self.word(1 + 2 * i)
                    .store(USED | u64::from(sender), Ordering::Release);
                self.slots.push((sender, i));
                return true;
            }
        };
        self.word(2 + 2 * slot)
            .fetch_max(highest, Ordering::Relaxed);
        true
    }

    /// True the first time a full file is reported.
    pub fn warn_full(&mut self) -> bool {
        !std::mem::replace(&mut self.full_warned, true)
    }
}

impl Drop for ReplayState {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `open`, used by nobody else.
        unsafe { libc::munmap(self.map.as_ptr().cast(), LEN) };
    }
}

impl std::fmt::Debug for ReplayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayState")
            .field("entries", &self.entries())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("baton-replay-{}-{name}", std::process::id()))
    }

    #[test]
    fn survives_the_process_and_is_locked() {
        let p = tmp("a");
        let _ = std::fs::remove_file(&p);
        {
            let mut st = ReplayState::open(&p).unwrap();
            assert!(st.entries().is_empty());
            assert!(st.record(7, 100));
            assert!(st.record(7, 90));
            assert!(st.record(9, 5));
            assert!(matches!(ReplayState::open(&p), Err(StateError::Busy(_))));
        }
        let st = ReplayState::open(&p).unwrap();
        let mut e = st.entries();
        e.sort();
        assert_eq!(e, vec![(7, 100), (9, 5)]);
        drop(st);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_foreign_file_is_refused_and_a_full_one_reported() {
        let p = tmp("b");
        std::fs::write(&p, b"not ours").unwrap();
        assert!(matches!(ReplayState::open(&p), Err(StateError::Foreign(_))));
        std::fs::remove_file(&p).unwrap();
        let mut st = ReplayState::open(&p).unwrap();
        for s in 0..SLOTS as u32 {
            assert!(st.record(s + 1, 1));
        }
        assert!(!st.record(10_000, 1));
        assert!(st.warn_full());
        assert!(!st.warn_full());
        drop(st);
        std::fs::remove_file(&p).unwrap();
    }
}
