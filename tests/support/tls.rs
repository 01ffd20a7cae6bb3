//! A CA and server certificates made at test time, a rustls server config for the fake API,
//! and a CONNECT proxy that records what passes through it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA, as an administrator's or a TLS-inspecting proxy's.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// How the server certificate is wrong, if it is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// Valid now for 127.0.0.1 and localhost.
    Good,
    /// Valid, but for another name only.
    WrongName,
    /// For the right names, but expired in 2021.
    Expired,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A rustls server config presenting a certificate of this CA.
    pub fn server_config(&self, leaf: Leaf) -> Arc<ServerConfig> {
        let names = match leaf {
            Leaf::WrongName => vec!["api.example.net".to_string()],
            _ => vec!["127.0.0.1".to_string(), "localhost".to_string()],
        };
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "fake ReportedIP API");
        if leaf == Leaf::Expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let chain = vec![cert.der().clone(), self.issuer.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }
}

/// An HTTP CONNECT proxy on 127.0.0.1 that tunnels to the asked-for target and keeps every
/// byte the client sent, so a test can check what a proxy could have read.
pub struct ConnectProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    targets: Arc<Mutex<Vec<String>>>,
    shutdown: Arc<AtomicBool>,
}

impl ConnectProxy {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let shutdown = Arc::new(AtomicBool::new(false));
        let (s, t, stop) = (seen.clone(), targets.clone(), shutdown.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (s, t) = (s.clone(), t.clone());
                thread::spawn(move || tunnel(stream, &s, &t));
            }
        });
        Self {
            addr,
            seen,
            targets,
            shutdown,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything clients sent through the proxy, CONNECT lines included.
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }

    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn tunnel(client: TcpStream, seen: &Mutex<Vec<u8>>, targets: &Mutex<Vec<String>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    seen.lock().unwrap().extend_from_slice(head.as_bytes());
    let Some(target) = head
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.split_whitespace().next())
    else {
        return;
    };
    targets.lock().unwrap().push(target.to_string());
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = (&client).write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
        return;
    };
    let _ = (&client).write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let mut up_writer = upstream.try_clone().unwrap();
    let mut client_writer = client.try_clone().unwrap();
    let mut up_reader = upstream;
    let down = thread::spawn(move || {
        let _ = std::io::copy(&mut up_reader, &mut client_writer);
        let _ = client_writer.shutdown(std::net::Shutdown::Both);
    });
    let mut buf = [0u8; 16 * 1024];
    // Bytes already buffered after the CONNECT head belong to the tunnel.
    let pending = reader.buffer().to_vec();
    if !pending.is_empty() {
        seen.lock().unwrap().extend_from_slice(&pending);
        let _ = up_writer.write_all(&pending);
    }
    let mut client_reader = reader.into_inner();
    loop {
        match client_reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if up_writer.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = up_writer.shutdown(std::net::Shutdown::Both);
    let _ = down.join();
}
