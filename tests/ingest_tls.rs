//! Issue 20, the front door: ingest's TLS. The real binary against Tansu on
//! 127.0.0.1, with certificates made in the test (rcgen), clients speaking
//! rustls directly so a test can see which certificate the server presents.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::ingest::Ingest;
use common::pipeline::workload;
use common::{data, eventually, s, tidemark};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tidemark_testkit::{TansuBroker, unique_topic};

/// A certificate authority that signs server and client certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

/// A certificate with its key, as PEM and DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { pem: cert.pem(), der: cert.der().clone(), issuer: Issuer::new(params, key) }
    }

    /// A certificate for `names` (DNS names or IP addresses) named `cn`.
    fn leaf(&self, cn: &str, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

impl Leaf {
    /// Writes the certificate and key as `NAME.crt` and `NAME.key` in `dir`.
    fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

fn client_config(trust: &Ca, identity: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.der.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
            builder.with_client_auth_cert(vec![leaf.der.clone()], key).unwrap()
        }
    };
    Arc::new(config)
}

/// What a TLS client saw: the server's leaf certificate (if the handshake
/// got that far) and the HTTP answer, or the error that ended it.
struct Seen {
    server_cert: Option<CertificateDer<'static>>,
    answer: Result<String, String>,
}

/// POSTs one envelope over TLS to `addr` (verified as `127.0.0.1`).
fn tls_post(addr: &str, config: Arc<rustls::ClientConfig>, envelope: &str) -> Seen {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        envelope.len()
    );
    let sent = tls.write_all(head.as_bytes()).and_then(|()| tls.write_all(envelope.as_bytes()));
    let mut raw = Vec::new();
    let answer = sent.and_then(|()| tls.read_to_end(&mut raw)).map_err(|e| e.to_string());
    let server_cert = tls.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned());
    let answer = answer.map(|_| String::from_utf8_lossy(&raw).into_owned());
    Seen {
        server_cert,
        answer: answer.and_then(|a| if a.is_empty() { Err("closed, no answer".into()) } else { Ok(a) }),
    }
}

fn accepted(seen: &Seen) -> bool {
    seen.answer.as_ref().is_ok_and(|a| a.starts_with("HTTP/1.1 202"))
}

fn envelope(seed: u64) -> String {
    workload(1, 1, seed)[0].envelope.clone()
}

fn start(broker: &TansuBroker, name: &str, tls: &[&str]) -> Ingest {
    let prefix = format!("{}.", unique_topic(name));
    Ingest::spawn(broker.bootstrap(), &prefix, tls)
}

#[test]
fn issue_20_tls_answers_202_to_a_tls_client_and_nothing_to_plaintext() {
    let broker = TansuBroker::start().expect("tansu starts");
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tidemark test CA");
    let (cert, key) = ca.leaf("ingest", &["127.0.0.1", "localhost"]).write(dir.path(), "server");
    let ingest = start(&broker, "tls-basic", &["--tls-cert", s(&cert), "--tls-key", s(&key)]);

    let seen = tls_post(&ingest.http, client_config(&ca, None), &envelope(3001));
    assert!(accepted(&seen), "a TLS client: {:?}", seen.answer);

    let mut plain = TcpStream::connect(&ingest.http).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let body = envelope(3002);
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = plain.write_all(head.as_bytes());
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(!raw.starts_with(b"HTTP/"), "a plaintext client got an HTTP answer: {}", String::from_utf8_lossy(&raw));
    let refused = ingest.series("tidemark_ingest_connections_refused_total{cause=\"tls_handshake\"}");
    assert_eq!(refused, Some(1.0), "{}", ingest.scrape());

    // loadgen over https, trusting the test CA.
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let signing = common::private_test_key(dir.path());
    let target = format!("https://{}", ingest.http);
    let run = tidemark(
        &[
            "loadgen",
            "--target",
            &target,
            "--cacert",
            s(&ca_file),
            "--key",
            s(&signing),
            "--rate",
            "50",
            "--duration",
            "1",
            "--concurrency",
            "2",
            "--batch",
            "5",
            "--patients",
            "10",
            "--json",
        ],
        b"",
        &[],
    );
    run.code(0);
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("--json prints one JSON object");
    assert!(report["totals"]["accepted"].as_u64().unwrap_or(0) > 0, "{run:?}");
}

#[test]
fn issue_20_mutual_tls_takes_only_clients_with_a_certificate_from_the_ca() {
    let broker = TansuBroker::start().expect("tansu starts");
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("tidemark server CA");
    let (cert, key) = server_ca.leaf("ingest", &["127.0.0.1"]).write(dir.path(), "server");
    let sites = Ca::new("tidemark sites CA");
    let client_ca = dir.path().join("sites-ca.pem");
    std::fs::write(&client_ca, &sites.pem).unwrap();
    let args = ["--tls-cert", s(&cert), "--tls-key", s(&key), "--tls-client-ca", s(&client_ca)];
    let ingest = start(&broker, "tls-mutual", &args);

    let none = tls_post(&ingest.http, client_config(&server_ca, None), &envelope(3101));
    assert!(none.answer.is_err(), "a client without a certificate was answered: {:?}", none.answer);

    let stranger = Ca::new("someone else's CA").leaf("site-x", &["site-x.example"]);
    let other = tls_post(&ingest.http, client_config(&server_ca, Some(&stranger)), &envelope(3102));
    assert!(other.answer.is_err(), "a certificate from another CA was answered: {:?}", other.answer);

    let site = sites.leaf("site-a-ehr", &["site-a.example"]);
    let good = tls_post(&ingest.http, client_config(&server_ca, Some(&site)), &envelope(3103));
    assert!(accepted(&good), "a site certificate from the client CA: {:?}", good.answer);
    let refused = ingest.series("tidemark_ingest_connections_refused_total{cause=\"tls_handshake\"}");
    assert_eq!(refused, Some(2.0), "{}", ingest.scrape());
}

#[test]
fn issue_20_plaintext_on_a_non_loopback_address_is_a_config_error() {
    let registry = data("test-registry.toml");
    let base = [
        "ingest",
        "--brokers",
        "127.0.0.1:1",
        "--keys",
        s(&registry),
        "--metrics-listen",
        "127.0.0.1:0",
        "--startup-timeout-ms",
        "1000",
    ];
    let args: Vec<&str> = base.iter().copied().chain(["--listen", "0.0.0.0:0"]).collect();
    let run = tidemark(&args, b"", &[]);
    run.code(2).stderr_has("--listen 0.0.0.0:0 is not a loopback address").stderr_has("--insecure-plaintext");
    // With the flag the address is accepted, and the broker is the next
    // thing it fails on (a runtime error: 3).
    let args: Vec<&str> = base.iter().copied().chain(["--listen", "0.0.0.0:0", "--insecure-plaintext"]).collect();
    tidemark(&args, b"", &[]).code(3);
}

#[test]
fn issue_20_a_renewed_certificate_is_served_without_a_restart() {
    let broker = TansuBroker::start().expect("tansu starts");
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tidemark test CA");
    let first = ca.leaf("ingest first", &["127.0.0.1"]);
    let (cert, key) = first.write(dir.path(), "server");
    let ingest = start(&broker, "tls-reload", &["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    let config = client_config(&ca, None);
    let seen = tls_post(&ingest.http, config.clone(), &envelope(3201));
    assert!(accepted(&seen), "{:?}", seen.answer);
    assert_eq!(seen.server_cert.as_ref(), Some(&first.der), "the first certificate is served");
    let reloads = |result: &str| ingest.series(&format!("tidemark_ingest_tls_reloads_total{{result=\"{result}\"}}"));

    // A broken certificate file: counted as failed, the first one stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    eventually("the broken certificate fails to load", Duration::from_secs(15), || reloads("failed") >= Some(1.0));
    let seen = tls_post(&ingest.http, config.clone(), &envelope(3202));
    assert_eq!(seen.server_cert.as_ref(), Some(&first.der), "a bad file keeps the previous certificate");
    assert!(accepted(&seen), "{:?}", seen.answer);

    // The renewal: new files in place, the new certificate on new connections.
    let second = ca.leaf("ingest second", &["127.0.0.1"]);
    let (new_cert, new_key) = second.write(dir.path(), "renewed");
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    let mut seed = 3300;
    eventually("the renewed certificate is served", Duration::from_secs(15), || {
        seed += 1;
        let seen = tls_post(&ingest.http, config.clone(), &envelope(seed));
        if seen.server_cert.as_ref() == Some(&second.der) && accepted(&seen) {
            Ok(())
        } else {
            Err(format!("{:?}", seen.answer))
        }
    });
    assert!(reloads("ok") >= Some(1.0), "{}", ingest.scrape());
}
