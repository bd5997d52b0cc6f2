//! Mutual TLS between members (optional, off unless configured).
//!
//! With it, every connection between members is TLS 1.3 with a certificate
//! on both sides, and both must chain to the cluster's CA. A certificate also
//! binds its holder to members: each side checks that the other's
//! certificate speaks for the member at the other end (the dialer checks the
//! member it dialed; the server checks the member the handshake claims to
//! be) before it trusts a frame of the connection. A certificate speaks for
//! member `ip:port` if it names `ip` as an IP `subjectAltName` and either
//!
//! - names `floyd://ip:port` as a URI `subjectAltName` (IPv6:
//!   `floyd://[ip]:port`); a certificate naming any `floyd://` URI speaks
//!   for the members it names and no other, or
//! - names no `floyd://` URI at all (a certificate for an IP), and no other
//!   member this node knows of (its configuration, and itself) has that IP.
//!
//! So a holder of a valid certificate for one member cannot pose as another,
//! even one on the same host; a certificate for an IP is refused where
//! members share the IP, because it could be either's. Forwarded client
//! commands and snapshots travel the same connections, so they are covered too.
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
use std::net::{IpAddr, SocketAddr};
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
    #[error("the certificate in {path} names {names}, not this member's address floyd://{local}, so peers would refuse it")]
    NotThisMember {
        path: String,
        names: String,
        local: SocketAddr,
    },
    #[error(
        "the certificate in {path} names only IP {}, which members {members} share, so peers could not tell them apart: \
         issue each member a certificate that also names it as a URI subjectAltName \
         (for this one: subjectAltName = IP:{}, URI:floyd://{local})",
        local.ip(),
        local.ip()
    )]
    SharedIp {
        path: String,
        members: String,
        local: SocketAddr,
    },
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// The member's TLS identity and trust, ready for connections. Cheap to share.
#[derive(Debug)]
pub struct TlsConfig {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    /// This member's address: a member a peer's certificate may be confused with.
    local: SocketAddr,
}

impl TlsConfig {
    /// Reads the CA, this member's certificate chain and its private key (PEM),
    /// and checks that the certificate chains to the CA, is valid now and
    /// speaks for this member, `local`, among `members` (the member list of
    /// the options): peers would refuse it otherwise.
    pub fn load(files: &TlsFiles, local: SocketAddr, members: &[String]) -> Result<TlsConfig, TlsError> {
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
        let members: Vec<SocketAddr> = members.iter().filter_map(|m| m.parse().ok()).collect();
        check_own_certificate(&chain, &store, &provider, local, &members, &path(&files.cert))?;
        Self::build(store, chain, key, provider, local)
    }

    fn build(
        roots: RootCertStore,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provider: Arc<CryptoProvider>,
        local: SocketAddr,
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
            local,
        })
    }

    pub(super) fn client(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    pub(super) fn server(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// Why `cert`, a peer's certificate (already verified to chain to the
    /// CA), does not speak for `member`, if it does not. `members` are the
    /// members this node knows of besides itself (its configuration).
    pub(super) fn refusal(
        &self,
        cert: &CertificateDer<'_>,
        member: SocketAddr,
        members: &[SocketAddr],
    ) -> Option<String> {
        let known: Vec<SocketAddr> = members.iter().copied().chain([self.local]).collect();
        refusal(cert, member, &known)
    }
}

/// Why `cert` does not speak for `member` among the members `known`, if it
/// does not: the rule of the module's documentation.
fn refusal(cert: &CertificateDer<'_>, member: SocketAddr, known: &[SocketAddr]) -> Option<String> {
    if !names_address(cert, member.ip()) {
        return Some(format!("the certificate does not name {}", member.ip()));
    }
    let named = match member_names(cert) {
        Ok(named) => named,
        Err(e) => return Some(format!("the certificate cannot be read ({e})")),
    };
    if !named.is_empty() {
        return match named.contains(&MemberName::Member(member)) {
            true => None,
            false => Some(format!(
                "the certificate names {}, not floyd://{member}",
                list(&named)
            )),
        };
    }
    let sharing = sharing_ip(member, known);
    match sharing.len() > 1 {
        true => Some(format!(
            "the certificate names only IP {}, which members {} share: \
             issue certificates with a floyd://ip:port URI subjectAltName",
            member.ip(),
            list(&sharing)
        )),
        false => None,
    }
}

/// The members among `known` (and `member` itself) at `member`'s IP, sorted.
fn sharing_ip(member: SocketAddr, known: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut sharing: Vec<SocketAddr> = known
        .iter()
        .copied()
        .chain([member])
        .filter(|m| m.ip() == member.ip())
        .collect();
    sharing.sort_unstable();
    sharing.dedup();
    sharing
}

/// `a`, `a and b`, `a, b and c`.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(T::to_string).collect();
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => items.concat(),
    }
}

/// A `floyd://` URI subjectAltName.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MemberName {
    Member(SocketAddr),
    /// Not `floyd://ip:port`: it names no member, but marks the certificate
    /// as one for members all the same.
    Malformed(String),
}

impl std::fmt::Display for MemberName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberName::Member(addr) => write!(f, "floyd://{addr}"),
            MemberName::Malformed(uri) => write!(f, "{uri:?}"),
        }
    }
}

/// The members `cert` names, as `floyd://` URI subjectAltNames.
fn member_names(cert: &CertificateDer<'_>) -> Result<Vec<MemberName>, yasna::ASN1Error> {
    const SCHEME: &str = "floyd://";
    let names = uri_names(cert)?
        .into_iter()
        .filter(|uri| {
            uri.get(..SCHEME.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
        })
        .map(|uri| match uri[SCHEME.len()..].parse() {
            Ok(addr) => MemberName::Member(addr),
            Err(_) => MemberName::Malformed(uri),
        })
        .collect();
    Ok(names)
}

/// The URI subjectAltNames of a DER certificate (RFC 5280, 4.1 and 4.2.1.6).
fn uri_names(cert: &[u8]) -> Result<Vec<String>, yasna::ASN1Error> {
    use yasna::models::ObjectIdentifier;
    use yasna::Tag;
    let extensions = yasna::parse_der(cert, |r| {
        r.read_sequence(|cert| {
            let extensions = cert.next().read_sequence(|tbs| {
                // version [0] (optional), serialNumber, signature, issuer,
                // validity, subject, subjectPublicKeyInfo.
                tbs.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
                for _ in 0..6 {
                    tbs.next().read_der()?;
                }
                // Then issuerUniqueID [1], subjectUniqueID [2] and extensions [3], all optional.
                let mut extensions = None;
                while let Some(field) = tbs.read_optional(|r| r.read_tagged_der())? {
                    if field.tag() == Tag::context(3) {
                        extensions = Some(field.value().to_vec());
                    }
                }
                Ok(extensions)
            })?;
            cert.next().read_der()?; // signatureAlgorithm
            cert.next().read_der()?; // signatureValue
            Ok(extensions)
        })
    })?;
    let Some(extensions) = extensions else {
        return Ok(Vec::new());
    };
    let subject_alt_name = ObjectIdentifier::from_slice(&[2, 5, 29, 17]);
    let mut uris = Vec::new();
    yasna::parse_der(&extensions, |r| {
        r.read_sequence_of(|r| {
            r.read_sequence(|extension| {
                let id = extension.next().read_oid()?;
                extension.read_optional(|r| r.read_bool())?; // critical
                let value = extension.next().read_bytes()?;
                if id != subject_alt_name {
                    return Ok(());
                }
                // GeneralNames; a URI is uniformResourceIdentifier [6] IA5String.
                yasna::parse_der(&value, |r| {
                    r.read_sequence_of(|r| {
                        let name = r.read_tagged_der()?;
                        if name.tag() == Tag::context(6) {
                            uris.push(String::from_utf8_lossy(name.value()).into_owned());
                        }
                        Ok(())
                    })
                })
            })
        })
    })?;
    Ok(uris)
}

/// ring, not rustls' default aws-lc-rs: it builds in seconds without cmake.
/// rustls marks it deprecated because its key exchange (X25519, P-256) is
/// classical only, not post-quantum; that is the one thing given up.
#[allow(deprecated)]
fn crypto_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Whether `cert` names `ip` as an IP subjectAltName.
fn names_address(cert: &CertificateDer<'_>, ip: IpAddr) -> bool {
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
    local: SocketAddr,
    members: &[SocketAddr],
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
    if !names_address(&chain[0], local.ip()) {
        return Err(TlsError::NotForThisNode {
            path: path.to_string(),
            ip: local.ip(),
        });
    }
    let named =
        member_names(&chain[0]).map_err(|e| invalid(format!("its subjectAltNames cannot be read ({e})")))?;
    if !named.is_empty() && !named.contains(&MemberName::Member(local)) {
        return Err(TlsError::NotThisMember {
            path: path.to_string(),
            names: list(&named),
            local,
        });
    }
    let sharing = sharing_ip(local, members);
    if named.is_empty() && sharing.len() > 1 {
        return Err(TlsError::SharedIp {
            path: path.to_string(),
            members: list(&sharing),
            local,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn cert(sans: Vec<SanType>) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn ip(ip: &str) -> SanType {
        SanType::IpAddress(ip.parse().unwrap())
    }

    fn uri(uri: &str) -> SanType {
        SanType::URI(uri.try_into().unwrap())
    }

    fn addr(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    #[test]
    fn floyd_uris_are_read_from_the_subject_alt_names_and_others_ignored() {
        let c = cert(vec![
            ip("10.0.0.1"),
            uri("floyd://10.0.0.1:8901"),
            uri("https://example.com/"),
            SanType::DnsName("example.com".try_into().unwrap()),
            uri("floyd://[::1]:7"),
            uri("FLOYD://10.0.0.1:8902"),
            uri("floyd://nowhere"),
        ]);
        assert_eq!(
            member_names(&c).unwrap(),
            [
                MemberName::Member(addr("10.0.0.1:8901")),
                MemberName::Member(addr("[::1]:7")),
                MemberName::Member(addr("10.0.0.1:8902")),
                MemberName::Malformed("floyd://nowhere".into()),
            ]
        );
        assert!(member_names(&cert(vec![ip("10.0.0.1")])).unwrap().is_empty());
        assert!(
            uri_names(&cert(vec![])).unwrap().is_empty(),
            "no subjectAltName at all"
        );
        assert!(uri_names(b"\x30\x03\x02\x01\x01").is_err(), "not a certificate");
    }

    #[test]
    fn a_certificate_naming_members_speaks_for_those_and_no_other() {
        let c = cert(vec![
            ip("10.0.0.1"),
            uri("floyd://10.0.0.1:1"),
            uri("floyd://10.0.0.1:2"),
        ]);
        let known = [addr("10.0.0.1:1"), addr("10.0.0.1:2"), addr("10.0.0.1:3")];
        assert_eq!(refusal(&c, addr("10.0.0.1:1"), &known), None);
        assert_eq!(refusal(&c, addr("10.0.0.1:2"), &known), None);
        assert_eq!(
            refusal(&c, addr("10.0.0.1:3"), &known).unwrap(),
            "the certificate names floyd://10.0.0.1:1 and floyd://10.0.0.1:2, not floyd://10.0.0.1:3"
        );
        // Whoever else is known: the URIs decide.
        assert!(refusal(&c, addr("10.0.0.1:3"), &[]).is_some());
        // It must name the IP too (the dialer's TLS handshake checks that).
        let no_ip = cert(vec![uri("floyd://10.0.0.1:1")]);
        assert_eq!(
            refusal(&no_ip, addr("10.0.0.1:1"), &known).unwrap(),
            "the certificate does not name 10.0.0.1"
        );
        // A floyd:// URI that names no member still makes it a member's certificate.
        let malformed = cert(vec![ip("10.0.0.1"), uri("floyd://nowhere")]);
        assert_eq!(
            refusal(&malformed, addr("10.0.0.1:1"), &[]).unwrap(),
            "the certificate names \"floyd://nowhere\", not floyd://10.0.0.1:1"
        );
        let v6 = cert(vec![ip("::1"), uri("floyd://[::1]:5")]);
        assert_eq!(refusal(&v6, addr("[::1]:5"), &[]), None);
        assert!(refusal(&v6, addr("[::1]:6"), &[]).is_some());
    }

    #[test]
    fn a_certificate_naming_only_an_ip_speaks_for_the_one_known_member_there() {
        let c = cert(vec![ip("10.0.0.1")]);
        assert_eq!(
            refusal(&c, addr("10.0.0.1:1"), &[addr("10.0.0.1:1"), addr("10.0.0.2:1")]),
            None
        );
        assert_eq!(refusal(&c, addr("10.0.0.1:9"), &[addr("10.0.0.2:1")]), None);
        assert_eq!(
            refusal(
                &c,
                addr("10.0.0.1:1"),
                &[addr("10.0.0.1:2"), addr("10.0.0.1:1"), addr("10.0.0.2:1")]
            )
            .unwrap(),
            "the certificate names only IP 10.0.0.1, which members 10.0.0.1:1 and 10.0.0.1:2 share: \
             issue certificates with a floyd://ip:port URI subjectAltName"
        );
        // A member not (yet) known shares the IP with one that is.
        assert!(refusal(&c, addr("10.0.0.1:9"), &[addr("10.0.0.1:1")]).is_some());
        assert_eq!(
            refusal(&c, addr("10.0.0.2:1"), &[]).unwrap(),
            "the certificate does not name 10.0.0.2"
        );
    }

    #[test]
    fn lists_read_as_english() {
        assert_eq!(list::<&str>(&[]), "");
        assert_eq!(list(&["a"]), "a");
        assert_eq!(list(&["a", "b"]), "a and b");
        assert_eq!(list(&["a", "b", "c"]), "a, b and c");
    }
}
