//! A test CA that signs member certificates, written as PEM files: for the
//! mutual TLS tests, the fault harness over TLS and `examples/bench.rs`.
// Each of them uses only part of it.
#![allow(dead_code)]

use floyd::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its files under `dir/name`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Ca { cert, key, dir }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A member certificate naming `ip` only (an IP subjectAltName), valid
    /// now unless `expired`: it speaks for any member at that IP.
    pub fn member(&self, file: &str, ip: &str, expired: bool) -> TlsFiles {
        let mut params = CertificateParams::new(vec![ip.to_string()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.issue(file, params)
    }

    /// A certificate bound to the members `addrs` (`ip:port`, IPv6 as
    /// `[ip]:port`): a `floyd://` URI subjectAltName for each, and an IP
    /// subjectAltName for each of their IPs.
    pub fn member_of<S: AsRef<str>>(&self, file: &str, addrs: impl IntoIterator<Item = S>) -> TlsFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        for addr in addrs {
            let addr: SocketAddr = addr.as_ref().parse().expect("a member address");
            let ip = SanType::IpAddress(addr.ip());
            if !params.subject_alt_names.contains(&ip) {
                params.subject_alt_names.push(ip);
            }
            let uri = format!("floyd://{addr}").try_into().unwrap();
            params.subject_alt_names.push(SanType::URI(uri));
        }
        self.issue(file, params)
    }

    /// Signs `params` as a member certificate (TLS server and client use)
    /// and writes it and a new key as `file.pem` and `file.key`.
    fn issue(&self, file: &str, mut params: CertificateParams) -> TlsFiles {
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        TlsFiles::new(self.ca_path(), cert_path, key_path)
    }
}
