//! The kernel programs' log records (aya-log), carried into user space.
//!
//! aya-log writes records into a ring buffer map; a small thread waits on the map's fd and
//! hands each record to a `log::Log`. By default that is [`TracingLog`], which turns records
//! into `tracing` events with target `pipelock_ebpf`; tests pass their own logger to see the
//! records.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use aya::Ebpf;
use aya_log::EbpfLogger;

use super::InterceptError;

/// How long one wait on the ring buffer lasts before checking for a stop request, in ms.
const POLL_INTERVAL_MS: i32 = 100;

/// A `log::Log` that forwards eBPF log records to `tracing` (target `pipelock_ebpf`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingLog;

impl log::Log for TracingLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string();
        match record.level() {
            log::Level::Error => tracing::error!(target: "pipelock_ebpf", "{message}"),
            log::Level::Warn => tracing::warn!(target: "pipelock_ebpf", "{message}"),
            log::Level::Info => tracing::info!(target: "pipelock_ebpf", "{message}"),
            log::Level::Debug => tracing::debug!(target: "pipelock_ebpf", "{message}"),
            log::Level::Trace => tracing::trace!(target: "pipelock_ebpf", "{message}"),
        }
    }

    fn flush(&self) {}
}

/// Reads the programs' log records on a background thread until dropped.
pub(super) struct LogPump {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LogPump {
    /// Takes the aya-log ring buffer out of `ebpf` and starts reading it into `logger`.
    /// Must run before the programs are loaded: the logger keeps the map alive.
    pub(super) fn start<L: log::Log + Send + 'static>(
        ebpf: &mut Ebpf,
        logger: L,
    ) -> Result<Self, InterceptError> {
        let mut reader = EbpfLogger::init_with_logger(ebpf, logger)
            .map_err(|e| InterceptError::Log(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("pipelock-ebpf-log".to_string())
            .spawn(move || {
                let fd = reader.as_raw_fd();
                while !stopping.load(Ordering::Relaxed) {
                    let mut pollfd = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: poll(2) on one pollfd we own; the fd stays open while `reader` lives.
                    let ready = unsafe { libc::poll(&mut pollfd, 1, POLL_INTERVAL_MS) };
                    if ready > 0 {
                        reader.flush();
                    }
                }
                // Deliver what arrived between the last poll and the stop request.
                reader.flush();
            })
            .map_err(|e| InterceptError::Log(e.to_string()))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for LogPump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
