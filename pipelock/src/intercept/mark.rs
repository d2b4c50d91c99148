//! `SO_MARK` on Pipelock's own sockets. While transparent interception is on, the kernel
//! programs redirect every connect and DNS query of the attached cgroup except those from
//! sockets carrying `intercept.mark`; Pipelock's upstream connections must carry it, or they
//! would be redirected back to Pipelock (a loop). Setting the mark needs `CAP_NET_ADMIN`
//! (which attaching the programs needs anyway); a failure is an error for the caller, never
//! ignored.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Sets `SO_MARK = mark` on the socket `fd`.
///
/// # Errors
/// The kernel refused (typically `EPERM` without `CAP_NET_ADMIN`).
pub fn mark_socket(fd: BorrowedFd<'_>, mark: u32) -> io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<u32>()` bytes from a live u32 on the stack, for a
    // descriptor the borrow keeps open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            std::ptr::from_ref(&mark).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<u32>()).unwrap_or(4),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        let error = io::Error::last_os_error();
        Err(io::Error::new(
            error.kind(),
            format!(
                "cannot set SO_MARK {mark:#x} on Pipelock's socket (needs CAP_NET_ADMIN): {error}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn read_mark(fd: BorrowedFd<'_>) -> io::Result<u32> {
        let mut mark = 0u32;
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<u32>()).unwrap_or(4);
        // SAFETY: getsockopt writes at most `len` bytes into the u32 it is given.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MARK,
                std::ptr::from_mut(&mut mark).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(mark)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    #[test]
    fn the_mark_is_set_or_the_failure_is_reported() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        match mark_socket(socket.as_fd(), 0x0050_4c4b) {
            Ok(()) => assert_eq!(read_mark(socket.as_fd()).expect("read"), 0x0050_4c4b),
            // Without CAP_NET_ADMIN the error says what is missing.
            Err(error) => assert!(error.to_string().contains("CAP_NET_ADMIN"), "{error}"),
        }
    }
}
