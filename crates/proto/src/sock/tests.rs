//! Each call on real sockets: socketpairs, loopback TCP, MPTCP where the
//! kernel has it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::time::Instant;

use super::*;

fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// A connected MPTCP pair over loopback, or `None` where the kernel has no
/// MPTCP (`net.mptcp.enabled = 0`, or built without it).
fn mptcp_pair() -> Option<(TcpStream, TcpStream)> {
    let socket = || {
        // SAFETY: socket(2) takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, libc::IPPROTO_MPTCP) };
        // SAFETY: a descriptor socket(2) just made, ours alone.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let listener = socket()?;
    // SAFETY: an all-zero sockaddr_in is valid.
    let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
    let len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: bind and listen on a socket we own, with a filled sockaddr_in
    // of the size given.
    unsafe {
        assert_eq!(libc::bind(listener.as_raw_fd(), (&sin as *const libc::sockaddr_in).cast(), len), 0);
        assert_eq!(libc::listen(listener.as_raw_fd(), 1), 0);
    }
    let listener = TcpListener::from(listener);
    let addr = listener.local_addr().unwrap();
    let client = socket()?;
    sin.sin_port = addr.port().to_be();
    // SAFETY: a blocking connect over loopback of a socket we own.
    assert_eq!(unsafe { libc::connect(client.as_raw_fd(), (&sin as *const libc::sockaddr_in).cast(), len) }, 0);
    let (server, _) = listener.accept().unwrap();
    Some((TcpStream::from(client), server))
}

/// Waits (at most 5 s) until `fd` is writable.
fn wait_writable(fd: BorrowedFd<'_>) {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    // SAFETY: poll(2) of one live pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1, "writable within 5 s");
}

fn flags(fd: BorrowedFd<'_>) -> (libc::c_int, libc::c_int) {
    // SAFETY: fcntl(2) queries of a live descriptor.
    unsafe { (libc::fcntl(fd.as_raw_fd(), libc::F_GETFL), libc::fcntl(fd.as_raw_fd(), libc::F_GETFD)) }
}

#[test]
fn kind_tells_the_domain_type_and_protocol() {
    let (unix, _) = UnixStream::pair().unwrap();
    let unix = kind(unix.as_fd()).unwrap().unwrap();
    assert_eq!(unix, Kind { domain: libc::AF_UNIX, kind: libc::SOCK_STREAM, protocol: 0 });
    assert!(unix.is_unix() && unix.is_stream() && unix.is_client_stream() && !unix.is_tcp());

    let dgram = kind(UnixDatagram::unbound().unwrap().as_fd()).unwrap().unwrap();
    assert!(dgram.is_unix() && !dgram.is_stream() && !dgram.is_client_stream());

    let (tcp, _server) = tcp_pair();
    let tcp = kind(tcp.as_fd()).unwrap().unwrap();
    assert_eq!(tcp, Kind { domain: libc::AF_INET, kind: libc::SOCK_STREAM, protocol: libc::IPPROTO_TCP });
    assert!(tcp.is_tcp() && !tcp.is_mptcp() && tcp.is_client_stream());

    if let Ok(listener) = TcpListener::bind("[::1]:0") {
        let v6 = kind(listener.as_fd()).unwrap().unwrap();
        assert!(v6.domain == libc::AF_INET6 && v6.is_tcp(), "{v6:?}");
    }

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = kind(udp.as_fd()).unwrap().unwrap();
    assert!(!udp.is_stream() && !udp.is_tcp() && !udp.is_client_stream(), "{udp:?}");

    let (r, _w) = std::io::pipe().unwrap();
    assert_eq!(kind(r.as_fd()).unwrap(), None, "a pipe is no socket");
}

/// MPTCP is a client stream the daemon takes; the kernel refuses to pace it,
/// so it is the streamlet's to pace. (Where MPTCP is missing, only the
/// TCP and Unix halves run.)
#[test]
fn the_kernel_paces_plain_tcp_only_and_refuses_mptcp_the_option() {
    let (tcp, _server) = tcp_pair();
    assert!(kernel_paces(tcp.as_fd()));
    set_max_pacing_rate(tcp.as_fd(), 125_000).expect("TCP takes a pacing rate");
    assert_eq!(max_pacing_rate(tcp.as_fd()).unwrap(), 125_000);

    let (unix, _) = UnixStream::pair().unwrap();
    assert!(!kernel_paces(unix.as_fd()), "nothing paces a Unix socket");
    let (r, _w) = std::io::pipe().unwrap();
    assert!(!kernel_paces(r.as_fd()));

    let Some((mptcp, _server)) = mptcp_pair() else {
        eprintln!("skipping the MPTCP half: this kernel has no MPTCP");
        return;
    };
    let k = kind(mptcp.as_fd()).unwrap().unwrap();
    assert!(k.is_mptcp() && !k.is_tcp() && k.is_client_stream(), "{k:?}");
    assert!(is_connected_stream_socket(mptcp.as_fd()).unwrap());
    assert!(!kernel_paces(mptcp.as_fd()), "the streamlet paces MPTCP itself");
    let refused = set_max_pacing_rate(mptcp.as_fd(), 125_000).expect_err(
        "this kernel paces MPTCP: Kind::kernel_paces should then say so, and the streamlet leave it to the kernel",
    );
    assert_eq!(refused.raw_os_error(), Some(libc::EOPNOTSUPP), "{refused}");
}

/// What the option promises, measured. TCP sends a connection's first ten
/// segments unpaced, and on loopback a segment is up to 64 KiB: of 1.5 MiB
/// at 2 MiB/s, the last 0.9 MiB or more take 0.45 s or more, against a few
/// milliseconds unpaced.
#[test]
fn a_paced_tcp_socket_sends_at_its_rate() {
    let (client, mut server) = tcp_pair();
    set_max_pacing_rate(client.as_fd(), 2 << 20).unwrap();
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        let mut client = client;
        client.write_all(&vec![7u8; 3 << 19]).unwrap();
    });
    let mut got = vec![0u8; 3 << 19];
    server.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "1.5 MiB at 2 MiB/s arrived in {took:?}");
}

#[test]
fn stream_sockets_and_connected_ones_are_told_apart() {
    let (r, _w) = std::io::pipe().unwrap();
    assert!(!is_stream_socket(r.as_fd()).unwrap());
    assert!(!is_connected_stream_socket(r.as_fd()).unwrap());
    assert!(!is_stream_socket(UnixDatagram::unbound().unwrap().as_fd()).unwrap());
    let (d1, _d2) = UnixDatagram::pair().unwrap();
    assert!(!is_connected_stream_socket(d1.as_fd()).unwrap(), "a connected datagram socket is no stream");

    let dir = tempfile::tempdir().unwrap();
    let listening = UnixListener::bind(dir.path().join("l.sock")).unwrap();
    assert!(is_stream_socket(listening.as_fd()).unwrap());
    assert!(!is_connected_stream_socket(listening.as_fd()).unwrap(), "a listening socket is no stream");
    assert!(is_listening(listening.as_fd()).unwrap());

    let (a, _b) = UnixStream::pair().unwrap();
    assert!(is_connected_stream_socket(a.as_fd()).unwrap());
    assert!(!is_listening(a.as_fd()).unwrap());
    let (tcp, _server) = tcp_pair();
    assert!(is_connected_stream_socket(tcp.as_fd()).unwrap());

    // A stream socket of another family: SCTP, where the kernel has it.
    // SAFETY: socket(2) takes no pointers.
    let sctp = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, libc::IPPROTO_SCTP) };
    if sctp >= 0 {
        // SAFETY: a descriptor socket(2) just made, ours alone.
        let sctp = unsafe { OwnedFd::from_raw_fd(sctp) };
        assert!(is_stream_socket(sctp.as_fd()).unwrap());
        assert!(!is_connected_stream_socket(sctp.as_fd()).unwrap(), "only TCP, MPTCP and Unix streams");
    }
}

/// A TCP connection its peer reset has no peer any more: no stream to serve.
#[test]
fn a_reset_connection_has_no_peer() {
    let (client, server) = tcp_pair();
    assert!(has_peer(client.as_fd()).unwrap());
    set_linger(server.as_fd(), Some(Duration::ZERO)).unwrap();
    drop(server); // a close lingering 0 s sends a reset
    let mut buf = [0u8; 1];
    assert!((&client).read(&mut buf).is_err(), "the reset arrived");
    assert!(!has_peer(client.as_fd()).unwrap());
    assert!(!is_connected_stream_socket(client.as_fd()).unwrap());
}

#[test]
fn lingering_is_set_read_back_and_turned_off() {
    let (tcp, _server) = tcp_pair();
    assert_eq!(linger(tcp.as_fd()).unwrap(), None);
    set_linger(tcp.as_fd(), Some(Duration::from_secs(30))).unwrap();
    assert_eq!(linger(tcp.as_fd()).unwrap(), Some(Duration::from_secs(30)));
    no_linger(tcp.as_fd());
    assert_eq!(linger(tcp.as_fd()).unwrap(), None);
    // Not a socket: an error to set, nothing to do to turn off.
    let (r, _w) = std::io::pipe().unwrap();
    assert_eq!(set_linger(r.as_fd(), None).unwrap_err().raw_os_error(), Some(libc::ENOTSOCK));
    no_linger(r.as_fd());
}

#[test]
fn shutdown_of_the_write_side_is_end_of_file_for_the_peer_only() {
    let (a, mut b) = UnixStream::pair().unwrap();
    (&a).write_all(b"last").unwrap();
    shutdown(a.as_fd(), Shutdown::Write).unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last", "what was in flight, then end of file");
    b.write_all(b"back").unwrap();
    let mut back = [0u8; 4];
    (&a).read_exact(&mut back).unwrap();
    assert_eq!(&back, b"back", "the other way still works");

    // Both ways, on a copy: the connection ends for every holder.
    let (client, mut server) = tcp_pair();
    let copy = client.try_clone().unwrap();
    shutdown(copy.as_fd(), Shutdown::Both).unwrap();
    assert_eq!(server.read(&mut [0u8; 1]).unwrap(), 0);
    assert_eq!((&client).read(&mut [0u8; 1]).unwrap(), 0, "reads on the other copy end too");

    // Nothing connected: nothing to shut. Not a socket: an error.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    shutdown(listener.as_fd(), Shutdown::Both).unwrap();
    let (r, _w) = std::io::pipe().unwrap();
    assert_eq!(shutdown(r.as_fd(), Shutdown::Write).unwrap_err().raw_os_error(), Some(libc::ENOTSOCK));
}

/// A TCP connect returns at once, under way; the socket says how it went
/// when it is writable.
#[test]
fn a_tcp_connect_never_waits_and_reports_its_outcome_later() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = connect_tcp(&listener.local_addr().unwrap()).unwrap();
    let (fl, fdfl) = flags(fd.as_fd());
    assert!(fl & libc::O_NONBLOCK != 0 && fdfl & libc::FD_CLOEXEC != 0, "non-blocking and close-on-exec");
    wait_writable(fd.as_fd());
    assert!(take_error(fd.as_fd()).unwrap().is_none(), "connected");
    let (mut server, _) = listener.accept().unwrap();
    TcpStream::from(fd).write_all(b"hi").unwrap();
    let mut got = [0u8; 2];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");

    // Nobody listens there now: refused, at once or once writable.
    let port = listener.local_addr().unwrap();
    drop((listener, server));
    match connect_tcp(&port) {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}"),
        Ok(fd) => {
            wait_writable(fd.as_fd());
            let error = take_error(fd.as_fd()).unwrap().expect("refused");
            assert_eq!(error.raw_os_error(), Some(libc::ECONNREFUSED), "{error}");
            assert!(take_error(fd.as_fd()).unwrap().is_none(), "reading the error clears it");
        }
    }
}

/// A Unix upstream whose backlog is full is "not now", at once: never a wait
/// (a blocking connect would wait for the upstream to accept).
#[test]
fn a_full_unix_backlog_is_not_now_and_never_a_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    // SAFETY: socket, bind and listen with a backlog of 0 on a descriptor we
    // own; the sockaddr_un is zeroed, filled and passed with its size.
    let _listener = unsafe {
        let fd = OwnedFd::from_raw_fd(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0));
        let mut sun: libc::sockaddr_un = mem::zeroed();
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in sun.sun_path.iter_mut().zip(path.as_os_str().as_encoded_bytes()) {
            *dst = *src as libc::c_char;
        }
        let len = mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        assert_eq!(libc::bind(fd.as_raw_fd(), (&sun as *const libc::sockaddr_un).cast(), len), 0);
        assert_eq!(libc::listen(fd.as_raw_fd(), 0), 0);
        fd
    };
    let started = Instant::now();
    let mut held = Vec::new();
    let mut busy = false;
    for _ in 0..4 {
        match connect_unix(&path).unwrap() {
            Some(fd) => held.push(fd),
            None => busy = true,
        }
    }
    assert!(busy, "a backlog of 0 takes one connection, not four");
    assert!(started.elapsed() < Duration::from_millis(100));
    let (fl, fdfl) = flags(held[0].as_fd());
    assert!(fl & libc::O_NONBLOCK != 0 && fdfl & libc::FD_CLOEXEC != 0, "non-blocking and close-on-exec");

    let absent = connect_unix(&dir.path().join("absent.sock")).unwrap_err();
    assert_eq!(absent.raw_os_error(), Some(libc::ENOENT), "{absent}");
    let long = dir.path().join("x".repeat(200));
    assert_eq!(connect_unix(&long).unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

/// The peer's supplementary groups are the kernel's record of them: here,
/// this process's own.
#[test]
fn peer_groups_are_the_connecting_processs_groups() {
    let (a, _b) = UnixStream::pair().unwrap();
    let mut mine = vec![0 as libc::gid_t; 65_536];
    // SAFETY: getgroups(2) into a buffer of the count given.
    let n = unsafe { libc::getgroups(mine.len() as libc::c_int, mine.as_mut_ptr()) };
    assert!(n >= 0);
    mine.truncate(n as usize);
    let mut theirs = peer_groups(a.as_fd()).unwrap();
    mine.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(theirs, mine);
    let (tcp, _server) = tcp_pair();
    assert!(peer_groups(tcp.as_fd()).is_err(), "only Unix sockets know their peer's groups");
}

/// A socket that takes no descriptors makes a sender's `sendmsg` with one
/// fail; bytes still pass.
#[test]
fn a_socket_can_refuse_descriptors() {
    let (a, b) = UnixStream::pair().unwrap();
    if !set_pass_rights(b.as_fd(), false).unwrap() {
        panic!("this kernel has no SO_PASSRIGHTS (Linux 6.16 or later has it)");
    }
    let (r, _w) = std::io::pipe().unwrap();
    let refused = crate::fdpass::send_with_fds(a.as_fd(), b"x", &[r.as_fd()]).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EPERM));
    assert_eq!(crate::fdpass::send_with_fds(a.as_fd(), b"x", &[]).unwrap(), 1);
    assert!(set_pass_rights(b.as_fd(), true).unwrap());
    assert_eq!(crate::fdpass::send_with_fds(a.as_fd(), b"y", &[r.as_fd()]).unwrap(), 1);
}

#[test]
fn peeks_walk_the_queue_from_the_offset_and_take_nothing() {
    let (a, b) = UnixStream::pair().unwrap();
    (&a).write_all(b"abcdef").unwrap();
    let peek = |n: usize| {
        let mut buf = vec![0u8; n];
        // SAFETY: recv(2) into a live buffer of the length given.
        let got = unsafe { libc::recv(b.as_raw_fd(), buf.as_mut_ptr().cast(), n, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        buf.truncate(got.max(0) as usize);
        buf
    };
    set_peek_offset(b.as_fd(), Some(0)).unwrap();
    assert_eq!(peek(3), b"abc");
    assert_eq!(peek(3), b"def");
    set_peek_offset(b.as_fd(), None).unwrap();
    assert_eq!(peek(3), b"abc", "off: every peek from the start");
    let mut all = [0u8; 6];
    (&b).read_exact(&mut all).unwrap();
    assert_eq!(&all, b"abcdef", "nothing was taken");
}
