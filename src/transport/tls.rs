//! Mutual TLS between members (optional, off unless configured).
//!
//! With it, every connection between members is TLS 1.3 with a certificate
//! on both sides, and both must chain to the cluster's CA. A certificate also
//! binds its holder to member addresses: each side checks that the other's
//! certificate names, as an IP `subjectAltName`, the address it speaks for
//! (the dialer checks the peer it dialed; the server checks the member the
//! handshake claims to be). So a holder of a valid certificate for one member
//! cannot pose as another. Forwarded client commands and snapshots travel the
//! same connections, so they are covered too.
//!
//! Files are read once, at open: replacing them needs a restart of the member.
//! Certificates must allow both TLS server and client use (extendedKeyUsage
//! `serverAuth` and `clientAuth`, or none).

use crate::options::TlsFiles;
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// Why the TLS files cannot be used. Reported by `open` as an invalid argument.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("the TLS {what} {path} is unusable: {why}")]
    Invalid {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("the certificate in {path} does not name this node's address {ip} as an IP subjectAltName, so peers would refuse it")]
    NotForThisNode { path: String, ip: IpAddr },
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// The member's TLS identity and trust, ready for connections. Cheap to share.
#[derive(Debug)]
pub struct TlsConfig {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl TlsConfig {
    /// Reads the CA, this member's certificate chain and its private key (PEM),
    /// and checks that the certificate chains to the CA, is valid now and
    /// names `local_ip`.
    pub fn load(files: &TlsFiles, local_ip: IpAddr) -> Result<TlsConfig, TlsError> {
        let ca = read("CA file", &files.ca)?;
        let cert = read("certificate file", &files.cert)?;
        let key = read("private key file", &files.key)?;
        let path = |p: &Path| p.display().to_string();
        let roots = parse_certs(&ca, "CA file", &path(&files.ca))?;
        let chain = parse_certs(&cert, "certificate file", &path(&files.cert))?;
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| TlsError::Invalid {
            what: "private key file",
            path: path(&files.key),
            why: format!("no PEM private key in it ({e})"),
        })?;
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root).map_err(|e| TlsError::Invalid {
                what: "CA file",
                path: path(&files.ca),
                why: e.to_string(),
            })?;
        }
        let provider = Arc::new(crypto_provider());
        check_own_certificate(&chain, &store, &provider, local_ip, &path(&files.cert))?;
        Self::build(store, chain, key, provider)
    }

    fn build(
        roots: RootCertStore,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provider: Arc<CryptoProvider>,
    ) -> Result<TlsConfig, TlsError> {
        let setup = |e: rustls::Error| TlsError::Setup(e.to_string());
        let roots = Arc::new(roots);
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(setup)?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(setup)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(setup)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(setup)?;
        Ok(TlsConfig {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }

    pub(super) fn client(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    pub(super) fn server(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }
}

/// ring, not rustls' default aws-lc-rs: it builds in seconds without cmake.
/// rustls marks it deprecated because its key exchange (X25519, P-256) is
/// classical only, not post-quantum; that is the one thing given up.
#[allow(deprecated)]
fn crypto_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Whether `cert` names `ip` as an IP subjectAltName.
pub(super) fn names_address(cert: &CertificateDer<'_>, ip: IpAddr) -> bool {
    ParsedCertificate::try_from(cert)
        .and_then(|c| verify_server_name(&c, &ServerName::IpAddress(ip.into())))
        .is_ok()
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn parse_certs(pem: &[u8], what: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |why: String| TlsError::Invalid {
        what,
        path: path.to_string(),
        why,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM ({e})")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// A misconfigured member would be refused by every peer, one handshake at
/// a time: better to say why at open.
fn check_own_certificate(
    chain: &[CertificateDer<'static>],
    roots: &RootCertStore,
    provider: &CryptoProvider,
    local_ip: IpAddr,
    path: &str,
) -> Result<(), TlsError> {
    let invalid = |why: String| TlsError::Invalid {
        what: "certificate file",
        path: path.to_string(),
        why,
    };
    let parsed = ParsedCertificate::try_from(&chain[0]).map_err(|e| invalid(e.to_string()))?;
    verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &chain[1..],
        UnixTime::now(),
        provider.signature_verification_algorithms.all,
    )
    .map_err(|e| invalid(format!("it does not chain to the CA, or is not valid now ({e})")))?;
    if !names_address(&chain[0], local_ip) {
        return Err(TlsError::NotForThisNode {
            path: path.to_string(),
            ip: local_ip,
        });
    }
    Ok(())
}
