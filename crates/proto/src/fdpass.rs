//! File descriptors over Unix sockets (`SCM_RIGHTS`).
//!
//! Received descriptors are installed close-on-exec (`MSG_CMSG_CLOEXEC`) and
//! owned ([`OwnedFd`]) from the first moment, so none can leak into a child. A
//! receive whose control data did not fit (`MSG_CTRUNC`: the kernel dropped
//! descriptors) is an error, and so is a datagram cut short (`MSG_TRUNC`).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The most descriptors one message may carry, either way.
pub const MAX_FDS_PER_MSG: usize = 16;

const FD_SIZE: usize = mem::size_of::<RawFd>();

/// A control buffer aligned for `cmsghdr`, big enough for
/// [`MAX_FDS_PER_MSG`] descriptors.
#[repr(C, align(8))]
struct CmsgBuf([u8; 128]);

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
    let mut control = CmsgBuf([0; 128]);
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
/// `fds`. Returns the bytes received: 0 is end of file.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = CmsgBuf([0; 128]);
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space(MAX_FDS_PER_MSG) as _;
    // SAFETY: msg points at a live buffer and a live control area of the
    // lengths given.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let before = fds.len();
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
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        fds.truncate(before);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {MAX_FDS_PER_MSG} descriptors in one message (MSG_CTRUNC): the kernel dropped some"),
        ));
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        fds.truncate(before);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message longer than the {} byte buffer (MSG_TRUNC)", buf.len()),
        ));
    }
    Ok(n as usize)
}

/// Whether `fd` is a connected stream socket (`SOCK_STREAM` with a peer): the
/// only kind of descriptor a stream may be.
pub fn is_connected_stream_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    if !is_stream_socket(fd)? {
        return Ok(false);
    }
    // SAFETY: an all-zero sockaddr_storage is valid; getpeername writes at
    // most `len` bytes into it.
    let mut addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: addr and len are valid for writes; fd is live.
    let rc = unsafe { libc::getpeername(fd.as_raw_fd(), (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOTCONN) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Whether `fd` is a stream socket (`SOCK_STREAM`), connected or not.
pub fn is_stream_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut kind: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: kind and len are valid for writes of the sizes given; fd is live.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOTSOCK) { Ok(false) } else { Err(e) };
    }
    Ok(kind == libc::SOCK_STREAM)
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
        assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap(), 1);
        assert_eq!(fds.len(), 1);
        // SAFETY: fcntl F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC, "received fd must be CLOEXEC");
        assert!(is_stream_socket(fds[0].as_fd()).unwrap());
        let mut received = UnixStream::from(fds.pop().unwrap());
        received.write_all(b"hi").unwrap();
        let mut got = [0u8; 2];
        mine.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }

    #[test]
    fn too_many_fds_is_ctrunc_and_leaks_nothing() {
        let (a, b) = UnixStream::pair().unwrap();
        let files: Vec<_> = (0..40).map(|_| std::fs::File::open("/dev/null").unwrap()).collect();
        let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        // Send 40 descriptors with a raw sendmsg: send_with_fds refuses more than 16.
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
            assert_eq!(libc::sendmsg(a.as_raw_fd(), &msg, 0), 1);
        }
        // Count the descriptors open on /dev/null: other tests run in parallel
        // threads of this process and open other things.
        let dev_null = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter(|e| {
                    std::fs::read_link(e.as_ref().unwrap().path()).is_ok_and(|t| t == std::path::Path::new("/dev/null"))
                })
                .count()
        };
        let open_before = dev_null();
        let mut fds = Vec::new();
        let err = recv_with_fds(b.as_fd(), &mut [0u8; 4], &mut fds).unwrap_err();
        assert!(err.to_string().contains("MSG_CTRUNC"), "{err}");
        assert!(fds.is_empty());
        let open_after = dev_null();
        assert_eq!(open_before, open_after, "descriptors that did arrive must be closed");
    }

    #[test]
    fn a_pipe_is_not_a_stream_socket() {
        let (r, _w) = std::io::pipe().unwrap();
        assert!(!is_stream_socket(r.as_fd()).unwrap());
        let dgram = std::os::unix::net::UnixDatagram::unbound().unwrap();
        assert!(!is_stream_socket(dgram.as_fd()).unwrap());
        let dir = std::env::temp_dir().join(format!("streamlet-fdpass-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listening = std::os::unix::net::UnixListener::bind(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert!(is_stream_socket(listening.as_fd()).unwrap());
        assert!(!is_connected_stream_socket(listening.as_fd()).unwrap(), "a listening socket is no stream");
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(is_connected_stream_socket(a.as_fd()).unwrap());
    }
}
