//! File descriptors over Unix sockets (`SCM_RIGHTS`).
//!
//! Received descriptors are installed close-on-exec (`MSG_CMSG_CLOEXEC`) and
//! owned ([`OwnedFd`]) from the first moment, so none can leak into a child.
//! The control buffer has room for the most descriptors one message can carry
//! ([`SCM_MAX_FD`]), so the kernel never drops any for want of room: a
//! descriptor the kernel drops is closed inside `recvmsg`, on the receiving
//! thread, and that close could block (see [`crate::foreign`]). It still drops
//! them when the receiver's descriptor table is full; [`Received::fds_lost`]
//! says so (`MSG_CTRUNC`). A datagram cut short (`MSG_TRUNC`) is an error.
//! Whatever happens, every descriptor that did arrive is in the caller's
//! vector, for the caller to dispose of.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The most descriptors one message may carry, either way, in this protocol.
pub const MAX_FDS_PER_MSG: usize = 16;

/// The most descriptors the kernel lets one `sendmsg` carry (`SCM_MAX_FD`).
pub const SCM_MAX_FD: usize = 253;

const FD_SIZE: usize = mem::size_of::<RawFd>();

/// A control buffer aligned for `cmsghdr`, big enough for [`SCM_MAX_FD`]
/// descriptors.
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_BUF_LEN]);

const CMSG_BUF_LEN: usize = 1040;

/// What one receive brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes read; 0 is end of file.
    pub bytes: usize,
    /// The kernel dropped descriptors that came with these bytes: the
    /// receiver's descriptor table was full (`MSG_CTRUNC`).
    pub fds_lost: bool,
}

fn cmsg_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE only does arithmetic on its argument.
    unsafe { libc::CMSG_SPACE((fds * FD_SIZE) as u32) as usize }
}

/// Sends `data` with `fds` attached, in one `sendmsg`. Returns the bytes sent,
/// which may be fewer than `data.len()` on a stream socket; the descriptors go
/// with the first byte. `WouldBlock` on a non-blocking socket that is full.
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MSG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} descriptors in one message, the most is {MAX_FDS_PER_MSG}", fds.len()),
        ));
    }
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    let mut control = CmsgBuf([0; CMSG_BUF_LEN]);
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let space = cmsg_space(fds.len());
        debug_assert!(space <= control.0.len());
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` bytes of suitably aligned, zeroed
        // memory, so CMSG_FIRSTHDR returns a valid header pointer inside it, and
        // CMSG_DATA of it has room for fds.len() descriptors (CMSG_SPACE above).
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN((fds.len() * FD_SIZE) as u32) as _;
            let dst = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                dst.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    // SAFETY: msg and everything it points to (iov, data, control) outlive the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Receives into `buf`, appending any descriptors that came with the bytes to
/// `fds`. On an error too, the descriptors that arrived are in `fds`.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<Received> {
    recv_with_fds_flags(sock, buf, fds, 0)
}

/// [`recv_with_fds`] with more `recvmsg` flags (`MSG_DONTWAIT`).
pub fn recv_with_fds_flags(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: libc::c_int,
) -> io::Result<Received> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = CmsgBuf([0; CMSG_BUF_LEN]);
    debug_assert!(cmsg_space(SCM_MAX_FD) <= CMSG_BUF_LEN);
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_BUF_LEN as _;
    // SAFETY: msg points at a live buffer and a live control area of the
    // lengths given.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled msg_control with well-formed cmsghdrs up to
    // msg_controllen; CMSG_FIRSTHDR/NXTHDR stay inside it. Each SCM_RIGHTS
    // payload is an array of descriptors now installed in our table, which we
    // take ownership of exactly once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let src = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..payload / FD_SIZE {
                    fds.push(OwnedFd::from_raw_fd(src.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message longer than the {} byte buffer (MSG_TRUNC)", buf.len()),
        ));
    }
    Ok(Received { bytes: n as usize, fds_lost: msg.msg_flags & libc::MSG_CTRUNC != 0 })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn passes_a_socket_and_it_works_on_the_other_side() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        assert_eq!(send_with_fds(a.as_fd(), b"x", &[theirs.as_fd()]).unwrap(), 1);
        drop(theirs);
        let mut buf = [0u8; 8];
        let mut fds = Vec::new();
        assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap(), Received { bytes: 1, fds_lost: false });
        assert_eq!(fds.len(), 1);
        // SAFETY: fcntl F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC, "received fd must be CLOEXEC");
        assert!(crate::sock::is_stream_socket(fds[0].as_fd()).unwrap());
        let mut received = UnixStream::from(fds.pop().unwrap());
        received.write_all(b"hi").unwrap();
        let mut got = [0u8; 2];
        mine.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }

    /// Sends `count` descriptors of /dev/null with one byte, in one raw
    /// `sendmsg` (send_with_fds refuses more than 16).
    fn send_many(sock: BorrowedFd<'_>, count: usize) {
        let files: Vec<_> = (0..count).map(|_| std::fs::File::open("/dev/null").unwrap()).collect();
        let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        let space = cmsg_space(raw.len());
        let mut control = vec![0u64; space / 8 + 1];
        let mut byte = [1u8];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
        // SAFETY: as in send_with_fds, with a control buffer of `space` bytes.
        unsafe {
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN((raw.len() * FD_SIZE) as u32) as _;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(cmsg).cast(), raw.len());
            assert_eq!(libc::sendmsg(sock.as_raw_fd(), &msg, 0), 1);
        }
    }

    /// The kernel drops no descriptor for want of room in the control
    /// buffer (it would close it inside recvmsg, on the receiving thread):
    /// all that one message can carry arrive, for the caller to dispose of.
    #[test]
    fn the_most_one_message_can_carry_all_arrive() {
        let (a, b) = UnixStream::pair().unwrap();
        send_many(a.as_fd(), SCM_MAX_FD);
        let mut fds = Vec::new();
        let got = recv_with_fds(b.as_fd(), &mut [0u8; 4], &mut fds).unwrap();
        assert_eq!(got, Received { bytes: 1, fds_lost: false });
        assert_eq!(fds.len(), SCM_MAX_FD);
    }

    /// With its descriptor table full the receiver hears that descriptors
    /// were dropped, and gets the bytes all the same. (In a child process:
    /// the limit is per process.)
    #[test]
    fn a_full_descriptor_table_is_fds_lost_not_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        send_many(a.as_fd(), 40);
        let mut fds: Vec<OwnedFd> = Vec::with_capacity(64);
        let mut buf = [0u8; 4];
        // The lowest free descriptor: the child's table is full above it.
        let probe = std::fs::File::open("/dev/null").unwrap();
        let limit = probe.as_raw_fd() as libc::rlim_t + 1;
        drop(probe);
        // SAFETY: the child makes only system calls and pushes into a vector
        // whose capacity is reserved, then exits without unwinding.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
                let code = match recv_with_fds(b.as_fd(), &mut buf, &mut fds) {
                    Ok(Received { bytes: 1, fds_lost: true }) if fds.len() <= 1 => 0,
                    Ok(_) => 1,
                    Err(_) => 2,
                };
                libc::_exit(code);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFEXITED(status), "{status:#x}");
            assert_eq!(libc::WEXITSTATUS(status), 0, "1: fds_lost was not reported; 2: an error");
        }
    }
}
