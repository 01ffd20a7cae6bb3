//! A fake ReportedIP v2 API on 127.0.0.1 that records every request it receives and answers
//! as each test tells it: the documented JSON, any status, or faults (hang, trickle, close).
//! std only; threads end when the fake is dropped.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

pub const API_PATH: &str = "/wp-json/reportedip/v2";
/// Longest a hanging or trickling connection is held, so no test can leave one behind.
const FAULT_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which TCP connection (1-based, in accept order) carried it.
    pub connection: usize,
    /// How the fake answered (status), or 0 for a fault.
    pub answered: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn form(&self) -> HashMap<String, String> {
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    pub fn field(&self, name: &str) -> String {
        self.form().remove(name).unwrap_or_default()
    }

    /// A query parameter of the path, decoded.
    pub fn query(&self, name: &str) -> String {
        let query = self.path.split_once('?').map_or("", |(_, q)| q);
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| percent_decode(k) == name)
            .map(|(_, v)| percent_decode(v))
            .unwrap_or_default()
    }
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Read the request, never answer (until the fake is dropped or [`FAULT_LIMIT`]).
    Hang,
    /// Send a status line, then one header byte every 200 ms, never finishing.
    Trickle,
    /// Close the connection without a word.
    Close,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Reply::Http {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// Sets a header, replacing one of the same name.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Reply::Http { headers, .. } = &mut self {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    pub fn wp_error(status: u16, code: &str, message: &str) -> Self {
        let body =
            format!(r#"{{"code":"{code}","message":"{message}","data":{{"status":{status}}}}}"#);
        Reply::json(status, &body)
    }

    /// The confirmed success shape: a `meta` envelope beside `data`, a numeric `reportId`,
    /// and rate-limit headers (an unlimited plan's words).
    pub fn success(report_id: usize, ip: &str) -> Self {
        Reply::json(
            200,
            &format!(
                r#"{{"meta":{{"success":true,"code":200,"message":"OK"}},"data":{{"ipAddress":"{ip}","abuseConfidencePercentage":39,"reportId":{report_id},"aggregated":true}}}}"#
            ),
        )
        .with_header("X-RateLimit-Limit", "unlimited")
        .with_header("X-RateLimit-Remaining", "unlimited")
        .with_header("X-RateLimit-Reset", &tomorrow().to_string())
    }

    pub fn key_info() -> Self {
        Reply::json(
            200,
            r#"{"meta":{"success":true,"code":200,"message":"OK"},"data":{"valid":true,"keyName":"web1","userRole":"reportedip_free","permissions":["report","check"],"limits":{"dailyApiLimit":1000,"remainingApiCalls":990,"dailyReportLimit":50,"remainingReports":38,"dailyReportUsage":12,"resetTime":1796083200},"domains":{"used":1,"limit":3,"status":"active"}}}"#,
        )
    }

    /// The confirmed `/check` shape; verbose adds recent reports.
    pub fn check_info(ip: &str, verbose: bool) -> Self {
        let reports = if verbose {
            r#","reports":[{"reportedAt":"2026-11-30T07:55:02+00:00","categories":[18,22],"comment":"fail2ban sshd"}]"#
        } else {
            ""
        };
        Reply::json(
            200,
            &format!(
                r#"{{"meta":{{"success":true,"code":200,"message":"OK"}},"data":{{"ipAddress":"{ip}","abuseConfidencePercentage":39,"totalReports":12,"lastReportedAt":"2026-11-30T07:55:02+00:00","isTor":false,"isWhitelisted":false{reports}}}}}"#
            ),
        )
        .with_header("X-RateLimit-Limit", "1000")
        .with_header("X-RateLimit-Remaining", "999")
    }

    pub fn with_status(mut self, new: u16) -> Self {
        if let Reply::Http { status, .. } = &mut self {
            *status = new;
        }
        self
    }
}

/// The next UTC midnight, as the API's `X-RateLimit-Reset` gives it.
pub fn tomorrow() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now / 86_400 + 1) * 86_400
}

/// Decides the reply from the request and its 0-based index among all requests.
pub type Handler = Arc<dyn Fn(&Request, usize) -> Reply + Send + Sync>;

/// The documented happy path: reports succeed, the key is valid, anything else is 404.
pub fn documented_api(request: &Request, index: usize) -> Reply {
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", p) if p == format!("{API_PATH}/report") => {
            Reply::success(4_316_026 + index, &request.field("ip"))
        }
        ("GET", p) if p == format!("{API_PATH}/verify-key") => Reply::key_info(),
        ("GET", p) if p.starts_with(&format!("{API_PATH}/check?")) => {
            Reply::check_info(&request.query("ip"), request.query("verbose") == "true")
        }
        _ => Reply::wp_error(404, "rest_no_route", "No route was found"),
    }
}

struct Inner {
    requests: Mutex<Vec<Request>>,
    arrived: Condvar,
    handler: Mutex<Handler>,
    connections: AtomicUsize,
    shutdown: AtomicBool,
}

pub struct FakeApi {
    addr: SocketAddr,
    inner: Arc<Inner>,
    https: bool,
}

impl FakeApi {
    pub fn start() -> Self {
        Self::start_with(documented_api)
    }

    pub fn start_with(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0", handler)
    }

    pub fn start_on(
        addr: &str,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::listen(addr, None, handler)
    }

    /// The fake over TLS, presenting the certificate of `tls`; a client that refuses it is
    /// never read from, so no request is recorded.
    pub fn start_tls(
        tls: Arc<ServerConfig>,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::listen("127.0.0.1:0", Some(tls), handler)
    }

    fn listen(
        addr: &str,
        tls: Option<Arc<ServerConfig>>,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind(addr).expect("bind fake API");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            handler: Mutex::new(Arc::new(handler)),
            connections: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let accept_inner = Arc::clone(&inner);
        let https = tls.is_some();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_inner.shutdown.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let id = accept_inner.connections.fetch_add(1, Ordering::SeqCst) + 1;
                let conn_inner = Arc::clone(&accept_inner);
                let tls = tls.clone();
                thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                    match tls.map(ServerConnection::new) {
                        Some(Ok(conn)) => serve(StreamOwned::new(conn, stream), id, &conn_inner),
                        Some(Err(_)) => {}
                        None => serve(stream, id, &conn_inner),
                    }
                });
            }
        });
        Self { addr, inner, https }
    }

    pub fn set_handler(&self, handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) {
        *self.inner.handler.lock().unwrap() = Arc::new(handler);
    }

    /// Base URL, as `api_url` in the config.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{API_PATH}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Reports that the fake accepted (answered 2xx).
    pub fn accepted_reports(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/report") && (200..300).contains(&r.answered))
            .collect()
    }

    /// One form field of every request, in arrival order.
    pub fn fields(&self, name: &str) -> Vec<String> {
        self.requests().iter().map(|r| r.field(name)).collect()
    }

    pub fn request_count(&self) -> usize {
        self.inner.requests.lock().unwrap().len()
    }

    pub fn accepted_count(&self) -> usize {
        let requests = self.inner.requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.path.ends_with("/report") && (200..300).contains(&r.answered))
            .count()
    }

    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Waits until `done` holds for the recorded requests, or `limit` passes.
    pub fn wait_until(&self, limit: Duration, done: impl Fn(&[Request]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut requests = self.inner.requests.lock().unwrap();
        loop {
            if done(&requests) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            requests = self.inner.arrived.wait_timeout(requests, left).unwrap().0;
        }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        // Wake the accept loop so its thread ends.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve<S: Read + Write>(stream: S, connection: usize, inner: &Inner) {
    let mut conn = BufReader::new(stream);
    let opened = Instant::now();
    loop {
        let Some(mut request) = read_request(&mut conn, inner, opened) else {
            return;
        };
        request.connection = connection;
        // The handler runs unlocked, so a slow answer on one connection delays no other.
        let handler = Arc::clone(&inner.handler.lock().unwrap());
        let index = inner.requests.lock().unwrap().len();
        let reply = handler(&request, index);
        request.answered = match &reply {
            Reply::Http { status, .. } => *status,
            _ => 0,
        };
        inner.requests.lock().unwrap().push(request.clone());
        inner.arrived.notify_all();
        let writer = conn.get_mut();
        match reply {
            Reply::Http {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                // One write: split head and body would meet Nagle and delayed ACK (40 ms).
                let mut message = head.into_bytes();
                message.extend_from_slice(&body);
                if writer
                    .write_all(&message)
                    .and_then(|()| writer.flush())
                    .is_err()
                {
                    return;
                }
                if request
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    return;
                }
            }
            Reply::Hang => {
                hold(inner, opened, || true);
                return;
            }
            Reply::Trickle => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\n");
                let _ = writer.flush();
                hold(inner, opened, || {
                    thread::sleep(Duration::from_millis(200));
                    writer.write_all(b"X").and_then(|()| writer.flush()).is_ok()
                });
                return;
            }
            // Dropping the stream closes the connection without a word.
            Reply::Close => return,
        }
    }
}

/// Keeps a faulty connection open while `step` succeeds, until shutdown or the fault limit.
fn hold(inner: &Inner, opened: Instant, mut step: impl FnMut() -> bool) {
    while !inner.shutdown.load(Ordering::SeqCst) && opened.elapsed() < FAULT_LIMIT {
        if !step() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn read_request<S: Read + Write>(
    reader: &mut BufReader<S>,
    inner: &Inner,
    opened: Instant,
) -> Option<Request> {
    let mut head = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {
                if line == "\r\n" || line == "\n" {
                    if head.is_empty() {
                        continue;
                    }
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if inner.shutdown.load(Ordering::SeqCst) || opened.elapsed() > FAULT_LIMIT * 4 {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    let mut parts = head.first()?.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let headers: Vec<(String, String)> = head[1..]
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let mut filled = 0;
    while filled < length {
        match reader.read(&mut body[filled..]) {
            Ok(0) => return None,
            Ok(n) => filled += n,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if inner.shutdown.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    Some(Request {
        method,
        path,
        headers,
        body,
        connection: 0,
        answered: 0,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        201 => "Created",
        499 => "Client Closed Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
