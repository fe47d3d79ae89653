//! A real ACME directory for the ACME tests, fully offline: Debian's `pebble` on a free loopback
//! port, serving HTTPS with a certificate made at test time (its CA is what tether's `ca_path`
//! trusts), validating against tether's own listeners (`httpPort`/`tlsPort`), and resolving every
//! name to 127.0.0.1 through `pebble-challtestsrv`'s DNS. Both are ended by their own pids.
#![allow(clippy::unwrap_used)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;

use super::tls_upstream::Ca;
use super::{free_port, wait_for};

/// A running pebble and its DNS server.
pub struct Pebble {
    pebble: Option<Child>,
    dns: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    pub management: u16,
    /// The CA of pebble's own HTTPS certificate (PEM file): tether's `ca_path`.
    pub ca_path: PathBuf,
    config: PathBuf,
    dns_port: u16,
    runs: usize,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on 127.0.0.1:`http_port` and TLS-ALPN-01 on
    /// 127.0.0.1:`tls_port`; certificates valid for `validity` seconds when given.
    pub fn start(http_port: u16, tls_port: u16, validity: Option<u64>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("tether test: pebble's HTTPS CA");
        let ca_path = ca.write(dir.path(), "pebble-https-ca");
        let (cert, key) = ca
            .issue(&["127.0.0.1", "localhost"], "pebble", false)
            .write(dir.path(), "pebble-https");
        let (port, management, dns_port) = (free_port(), free_port(), free_port());
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(v) = validity {
            pebble["certificateValidityPeriod"] = v.into();
        }
        let config = dir.path().join("pebble.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string()).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv runs (make deps installs pebble)");
        let mut p = Pebble {
            pebble: None,
            dns,
            dir,
            port,
            management,
            ca_path,
            config,
            dns_port,
            runs: 0,
        };
        p.restart();
        p
    }

    /// Starts pebble (again) on the same ports and config: a directory back from an outage.
    /// Pebble keeps nothing across runs: accounts and orders start empty.
    pub fn restart(&mut self) {
        self.stop();
        self.runs += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&self.config)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{}", self.dns_port))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            // Reused authorizations would let a second order skip its challenges.
            .env("PEBBLE_AUTHZREUSE", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble runs (make deps installs it)");
        self.pebble = Some(child);
        let port = self.port;
        wait_for("pebble to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops pebble (the DNS server stays): a directory that is down.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.pebble.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("pebble-{}.log", self.runs))
    }

    /// The directory URL tether is configured with.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Everything this run of pebble logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Orders this run of pebble received.
    pub fn orders(&self) -> usize {
        self.log().matches("Added order").count()
    }

    /// The root pebble issues under (it makes a new one at every start), from its management
    /// interface.
    pub fn root(&self) -> X509 {
        let pem = reqwest::blocking::Client::builder()
            .no_proxy()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&self.ca_path).unwrap()).unwrap(),
            )
            .build()
            .unwrap()
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        X509::from_pem(&pem).unwrap()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}

/// The certificate 127.0.0.1:`port` presents for `sni`, unverified; `None` if the handshake fails.
pub fn served_cert(port: u16, sni: &str) -> Option<X509> {
    let mut b = SslConnector::builder(SslMethod::tls()).ok()?;
    b.set_verify(SslVerifyMode::NONE);
    let tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let s = b
        .build()
        .configure()
        .ok()?
        .verify_hostname(false)
        .connect(sni, tcp)
        .ok()?;
    s.ssl().peer_certificate()
}

/// The DNS names of `cert`'s SAN, sorted.
pub fn san_names(cert: &X509) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .map(|n| {
            n.iter()
                .filter_map(|g| g.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The common name of `cert`'s issuer.
pub fn issuer_cn(cert: &X509) -> String {
    cert.issuer_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map(|e| e.data().to_string().unwrap())
        .unwrap_or_default()
}
