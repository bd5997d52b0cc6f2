//! A member-to-member connection: plain TCP, or TLS over it.
//!
//! Each connection is used by one thread only (the peer worker on the
//! dialing side, the connection thread on the serving side), so the TLS
//! state needs no lock. Reads block within the socket's timeouts, except
//! [`Stream::drain_nonblocking`], which the peer worker uses to hear pongs
//! between writes.

use super::tls::TlsConfig;
use super::Identity;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, Connection, ServerConnection};
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Reads per wake-up when draining what the peer sent: a peer cannot keep the worker reading forever.
const MAX_DRAIN_READS: usize = 64;

pub(super) struct Stream {
    sock: TcpStream,
    tls: Option<Box<Connection>>,
    /// Set when bytes were accepted but could not be written: reported by
    /// the next write or flush, so the bytes count as written (in doubt),
    /// never as certainly unsent.
    broken: Option<(io::ErrorKind, String)>,
    /// The tail of a frame [`Stream::send_nonblocking`] could not write at
    /// once (plain TCP; under TLS, rustls keeps it). Written before anything else.
    unsent: Vec<u8>,
}

/// What [`Stream::drain_nonblocking`] found.
pub(super) enum Readable {
    /// At least one byte arrived.
    Heard,
    /// Nothing to read: open and quiet.
    Silent,
    Closed(String),
}

impl Stream {
    pub fn plain(sock: TcpStream) -> Stream {
        Stream {
            sock,
            tls: None,
            broken: None,
            unsent: Vec::new(),
        }
    }

    /// TLS as the dialing side, to `member`: the peer's certificate must
    /// speak for it among the members of `identity`'s configuration (see
    /// [`TlsConfig::refusal`]), or the connection is dropped before a byte
    /// of it is written or read. Blocks for the handshake within the socket's timeouts.
    pub fn tls_client(
        sock: TcpStream,
        cfg: &TlsConfig,
        member: SocketAddr,
        identity: &Identity,
    ) -> io::Result<Stream> {
        let conn = ClientConnection::new(cfg.client(), ServerName::IpAddress(member.ip().into()))
            .map_err(tls_error)?;
        let stream = Self::handshake(sock, Connection::Client(conn))?;
        let refusal = match stream.peer_certificate() {
            Some(cert) => cfg.refusal(cert, member, &identity.member_addrs()),
            None => Some("no certificate presented".to_string()),
        };
        match refusal {
            None => Ok(stream),
            Some(why) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("TLS: {why} (the member dialed)"),
            )),
        }
    }

    /// TLS as the serving side: the peer must present a certificate from the CA.
    pub fn tls_server(sock: TcpStream, cfg: &TlsConfig) -> io::Result<Stream> {
        let conn = ServerConnection::new(cfg.server()).map_err(tls_error)?;
        Self::handshake(sock, Connection::Server(conn))
    }

    fn handshake(sock: TcpStream, mut conn: Connection) -> io::Result<Stream> {
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut NoSignal(&sock)) {
                // Tell the peer why (a TLS alert), if rustls queued one.
                let _ = conn.write_tls(&mut NoSignal(&sock));
                return Err(e);
            }
        }
        Ok(Stream {
            sock,
            tls: Some(Box::new(conn)),
            broken: None,
            unsent: Vec::new(),
        })
    }

    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The peer's own certificate, on a TLS connection.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.tls.as_ref()?.peer_certificates()?.first()
    }

    /// Reads and discards what the peer sent, without blocking. After the
    /// handshake the server writes only pongs, so their content does not matter.
    pub fn drain_nonblocking(&mut self) -> Readable {
        let mut buf = [0u8; 4096];
        let mut heard = false;
        for _ in 0..MAX_DRAIN_READS {
            let got = match self.tls.as_mut() {
                None => recv_dontwait(&self.sock, &mut buf),
                Some(tls) => tls.read_tls(&mut DontWait(&self.sock)).and_then(|n| {
                    discard_plaintext(tls, &mut buf)?;
                    Ok(n)
                }),
            };
            match got {
                Ok(0) => return Readable::Closed("the peer closed the connection".into()),
                Ok(_) => heard = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Readable::Closed(format!("read failed: {e}")),
            }
        }
        if heard {
            Readable::Heard
        } else {
            Readable::Silent
        }
    }

    /// Whether a frame is partly written, or the connection broke, since
    /// the last blocking write: a writer must see to it first (`flush`).
    pub fn has_unsent(&self) -> bool {
        !self.unsent.is_empty() || self.broken.is_some() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes `frame` without blocking; true if it all went out. What the
    /// socket does not take stays for the next write or `flush`; an error is
    /// kept for them too. Call only when nothing is unsent.
    pub fn send_nonblocking(&mut self, frame: &[u8]) -> bool {
        debug_assert!(!self.has_unsent());
        let sent = match self.tls.as_mut() {
            None => match send_dontwait(&self.sock, frame) {
                Ok(n) => {
                    self.unsent.extend_from_slice(&frame[n..]);
                    Ok(())
                }
                Err(e) if would_block(&e) => {
                    self.unsent.extend_from_slice(frame);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            // What the socket does not take stays in rustls' buffer.
            Some(tls) => tls
                .writer()
                .write_all(frame)
                .and_then(|()| write_records(tls, &mut DontWait(&self.sock)))
                .or_else(|e| if would_block(&e) { Ok(()) } else { Err(e) }),
        };
        if let Err(e) = sent {
            self.broken = Some((e.kind(), e.to_string()));
        }
        !self.has_unsent()
    }

    /// Before any blocking write: the error a direct send met, or the rest of its frame.
    fn finish_unsent(&mut self) -> io::Result<()> {
        if let Some((kind, msg)) = &self.broken {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        if !self.unsent.is_empty() {
            NoSignal(&self.sock).write_all(&self.unsent)?;
            self.unsent.clear();
        }
        Ok(())
    }

    /// After `tls` accepted plaintext: writes its records, remembering a failure for later.
    fn push_records(&mut self) {
        let Some(tls) = self.tls.as_mut() else { return };
        if let Err(e) = write_records(tls, &mut NoSignal(&self.sock)) {
            self.broken = Some((e.kind(), e.to_string()));
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.sock.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            // After end of file the reader answers Ok(0) or UnexpectedEof: the loop ends.
            tls.read_tls(&mut self.sock)?;
            let processed = tls.process_new_packets();
            // Alerts, key updates: best effort, the read's own outcome matters more.
            let _ = write_records(tls, &mut NoSignal(&self.sock));
            processed.map_err(tls_error)?;
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.finish_unsent()?;
        let Some(tls) = self.tls.as_mut() else {
            return NoSignal(&self.sock).write_vectored(bufs);
        };
        let n = tls.writer().write_vectored(bufs)?;
        self.push_records();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.finish_unsent()?;
        if let Some(tls) = self.tls.as_mut() {
            write_records(tls, &mut NoSignal(&self.sock))?;
        }
        Ok(())
    }
}

fn write_records(tls: &mut Connection, sock: &mut impl Write) -> io::Result<()> {
    while tls.wants_write() {
        if tls.write_tls(sock)? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Processes the records read and throws their plaintext away.
fn discard_plaintext(tls: &mut Connection, buf: &mut [u8]) -> io::Result<()> {
    tls.process_new_packets().map_err(tls_error)?;
    loop {
        match tls.reader().read(buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            // Closed without close_notify: the next read_tls reports the end.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The socket cannot take (or give) more now; not an error of the connection.
fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

/// A reader and writer that never blocks, whatever the socket's mode.
struct DontWait<'a>(&'a TcpStream);

impl Read for DontWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        recv_dontwait(self.0, buf)
    }
}

impl Write for DontWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send_dontwait(self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Blocking reads and writes on the socket, every write with MSG_NOSIGNAL.
/// std's `write` passes the flag, but its `write_vectored` is a plain
/// `writev`, and rustls writes its records with `write_vectored`: a write to
/// a connection the peer had reset raised SIGPIPE, which kills a C or C++
/// host program that does not ignore it (found as a C test killed while a
/// member closed).
struct NoSignal<'a>(&'a TcpStream);

impl Read for NoSignal<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for NoSignal<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // std's write is send(…, MSG_NOSIGNAL).
        (&*self.0).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on Unix (documented by std).
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
        // SAFETY: a valid socket descriptor; the iovecs point into `bufs`, which outlive the call.
        let n = unsafe { libc::sendmsg(self.0.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// MSG_NOSIGNAL too: a host program that does not ignore SIGPIPE must not
/// die of a peer that closed the connection (std's own writes do the same).
fn send_dontwait(sock: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor and a buffer that outlives the call.
    let n = unsafe {
        libc::send(
            sock.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn recv_dontwait(sock: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor and a buffer that outlives the call.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connected pair whose sending side's buffers are full.
    fn clogged_pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (receiver, _) = listener.accept().unwrap();
        let mut filler = 0usize;
        let chunk = [7u8; 64 << 10];
        loop {
            match send_dontwait(&sender, &chunk) {
                Ok(n) => filler += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(filler > 0);
        // Drain what the filler put in, in a thread, once the test has queued its frame.
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        (Stream::plain(sender), receiver)
    }

    #[test]
    fn a_frame_the_socket_cannot_take_at_once_is_finished_by_the_next_flush_in_order() {
        let (mut stream, mut receiver) = clogged_pair();
        let frame: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        assert!(
            !stream.send_nonblocking(&frame),
            "the socket is full: nothing goes at once"
        );
        assert!(stream.has_unsent());
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 64 << 10];
            while let Ok(n) = receiver.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        // A later write goes after the unsent tail, never into its middle.
        stream.write_all(b"after").unwrap();
        stream.flush().unwrap();
        assert!(!stream.has_unsent());
        stream.socket().shutdown(std::net::Shutdown::Write).unwrap();
        let all = reader.join().unwrap();
        let filler = all.iter().take_while(|b| **b == 7).count();
        assert_eq!(&all[filler..filler + frame.len()], &frame[..]);
        assert_eq!(&all[filler + frame.len()..], b"after");
    }

    /// SIGPIPE blocked on this thread, so that one raised by a write stays
    /// pending (Linux keeps a blocked signal even when it is ignored).
    fn sigpipe_raised_by(f: impl FnOnce()) -> bool {
        // SAFETY: signal sets on the stack, this thread's mask only.
        unsafe {
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
            f();
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            let raised = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            if raised {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            raised
        }
    }

    #[test]
    fn writing_to_a_connection_the_peer_reset_raises_no_sigpipe() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (receiver, _) = listener.accept().unwrap();
        drop(receiver);
        let mut stream = Stream::plain(sender);
        let raised = sigpipe_raised_by(|| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let frames = [b"one".to_vec(), b"two".to_vec()];
            // The first writes may still be taken; the peer's reset breaks a later one.
            while super::super::outbox::write_all_vectored(&mut stream, &frames).is_ok() {
                assert!(std::time::Instant::now() < deadline, "the reset never showed");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        assert!(
            !raised,
            "a host program that does not ignore SIGPIPE would have died"
        );
    }

    #[test]
    fn an_error_of_a_direct_send_is_reported_by_the_next_write() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (receiver, _) = listener.accept().unwrap();
        drop(receiver);
        let mut stream = Stream::plain(sender);
        // The first send may still be taken; the peer's reset breaks a later one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stream.send_nonblocking(b"frame") {
            assert!(std::time::Instant::now() < deadline, "the reset never showed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(stream.has_unsent());
        assert!(stream.write_all(b"next").is_err());
        assert!(
            stream.flush().is_err(),
            "the error stays until the connection is dropped"
        );
    }
}
