//! A member-to-member connection: plain TCP, or TLS over it.
//!
//! Each connection is used by one thread only (the peer worker on the
//! dialing side, the connection thread on the serving side), so the TLS
//! state needs no lock. Reads block within the socket's timeouts, except
//! [`Stream::drain_nonblocking`], which the peer worker uses to hear pongs
//! between writes.

use super::tls::TlsConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, Connection, ServerConnection};
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, TcpStream};

/// Reads per wake-up when draining what the peer sent: a peer cannot keep the worker reading forever.
const MAX_DRAIN_READS: usize = 64;

pub(super) struct Stream {
    sock: TcpStream,
    tls: Option<Box<Connection>>,
    /// Set when plaintext was accepted but its records could not be written:
    /// reported by the next write or flush, so the bytes count as written
    /// (in doubt), never as certainly unsent.
    broken: Option<(io::ErrorKind, String)>,
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
        }
    }

    /// TLS as the dialing side: `peer_ip` must be named by the peer's certificate.
    /// Blocks for the handshake within the socket's timeouts.
    pub fn tls_client(sock: TcpStream, cfg: &TlsConfig, peer_ip: IpAddr) -> io::Result<Stream> {
        let conn =
            ClientConnection::new(cfg.client(), ServerName::IpAddress(peer_ip.into())).map_err(tls_error)?;
        Self::handshake(sock, Connection::Client(conn))
    }

    /// TLS as the serving side: the peer must present a certificate from the CA.
    pub fn tls_server(sock: TcpStream, cfg: &TlsConfig) -> io::Result<Stream> {
        let conn = ServerConnection::new(cfg.server()).map_err(tls_error)?;
        Self::handshake(sock, Connection::Server(conn))
    }

    fn handshake(mut sock: TcpStream, mut conn: Connection) -> io::Result<Stream> {
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut sock) {
                // Tell the peer why (a TLS alert), if rustls queued one.
                let _ = conn.write_tls(&mut sock);
                return Err(e);
            }
        }
        Ok(Stream {
            sock,
            tls: Some(Box::new(conn)),
            broken: None,
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

    fn check_broken(&mut self) -> io::Result<()> {
        match &self.broken {
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            None => Ok(()),
        }
    }

    /// After `tls` accepted plaintext: writes its records, remembering a failure for later.
    fn push_records(&mut self) {
        let Some(tls) = self.tls.as_mut() else { return };
        if let Err(e) = write_records(tls, &mut self.sock) {
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
            let _ = write_records(tls, &mut self.sock);
            processed.map_err(tls_error)?;
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_broken()?;
        let Some(tls) = self.tls.as_mut() else {
            return self.sock.write(buf);
        };
        let n = tls.writer().write(buf)?;
        self.push_records();
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.check_broken()?;
        let Some(tls) = self.tls.as_mut() else {
            return self.sock.write_vectored(bufs);
        };
        let n = tls.writer().write_vectored(bufs)?;
        self.push_records();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check_broken()?;
        if let Some(tls) = self.tls.as_mut() {
            write_records(tls, &mut self.sock)?;
        }
        self.sock.flush()
    }
}

fn write_records(tls: &mut Connection, sock: &mut TcpStream) -> io::Result<()> {
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

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

/// A reader that never blocks, whatever the socket's mode.
struct DontWait<'a>(&'a TcpStream);

impl Read for DontWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        recv_dontwait(self.0, buf)
    }
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
