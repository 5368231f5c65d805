//! Raw bytes on both ends, for the attacker tests: an app that records each request
//! head exactly as it arrived (no parser that would fold or normalise names), and a
//! client that writes bytes as given and reads one response.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// One request as the app received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The head, byte for byte, up to and including the blank line.
    pub head: Vec<u8>,
    pub body: Vec<u8>,
    /// A chunked body's trailer section, byte for byte (without the final blank line).
    pub trailers: Vec<u8>,
}

impl Seen {
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// The request line.
    pub fn request_line(&self) -> String {
        self.head_text()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Header lines as (name as sent, value).
    pub fn headers(&self) -> Vec<(String, String)> {
        self.head_text()
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                Some((n.to_owned(), v.trim().to_owned()))
            })
            .collect()
    }

    /// Trailer lines as (name as sent, value).
    pub fn trailer_fields(&self) -> Vec<(String, String)> {
        String::from_utf8_lossy(&self.trailers)
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                Some((n.to_owned(), v.trim().to_owned()))
            })
            .collect()
    }

    /// Values of the header named exactly `name` (byte for byte, case-insensitive only).
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }
}

/// The raw app: records every request and answers `200` with body `ok` (keep-alive).
pub struct RawApp {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl RawApp {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

pub async fn spawn_raw_app() -> RawApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve_raw(stream, log.clone()));
        }
    });
    RawApp { addr, seen }
}

/// The raw app on a Unix socket at `path`: what it received, and how many connections it
/// accepted.
pub struct RawUnixApp {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

pub fn spawn_raw_unix_app(path: &std::path::Path) -> RawUnixApp {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (log, count) = (seen.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(serve_raw(stream, log.clone()));
        }
    });
    RawUnixApp { seen, connections }
}

/// One connection of the raw app: record each request, answer `200 ok`, keep alive.
async fn serve_raw<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        log.lock().unwrap().push(req);
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads a message body framed as `lower_head` (the head, lower-cased) says: chunked
/// (with its trailer section), Content-Length, or none.
async fn read_body<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    lower_head: &str,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut body = Vec::new();
    if lower_head.contains("\r\ntransfer-encoding: chunked") {
        loop {
            let line = read_line(s, buf).await?;
            let size_text = String::from_utf8_lossy(&line).to_string();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailer fields until the blank line.
                let mut trailers = Vec::new();
                loop {
                    let line = read_line(s, buf).await?;
                    if line.is_empty() {
                        return Some((body, trailers));
                    }
                    trailers.extend_from_slice(&line);
                    trailers.extend_from_slice(b"\r\n");
                }
            }
            while buf.len() < size + 2 {
                if !fill(s, buf).await {
                    return None;
                }
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
        }
    }
    if let Some(cl) = lower_head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        while buf.len() < cl {
            if !fill(s, buf).await {
                return None;
            }
        }
        body = buf.drain(..cl).collect();
    }
    Some((body, Vec::new()))
}

/// One CRLF-terminated line, without the CRLF.
async fn read_line<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(i) = find(buf, b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).collect();
            return Some(line[..i].to_vec());
        }
        if !fill(s, buf).await {
            return None;
        }
    }
}

/// Reads one HTTP/1.1 request (Content-Length or chunked body) from `s`.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<Seen> {
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if !fill(s, buf).await {
            return None;
        }
    };
    let head: Vec<u8> = buf.drain(..end).collect();
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let (body, trailers) = read_body(s, buf, &text).await?;
    Some(Seen {
        head,
        body,
        trailers,
    })
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Reads one response (skipping `1xx`); `None` if the connection closed first or nothing
/// complete arrived within 5 s.
pub async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Option<RawResponse> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let end = loop {
                if let Some(i) = find(buf, b"\r\n\r\n") {
                    break i + 4;
                }
                if !fill(s, buf).await {
                    return None;
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
            if (100..200).contains(&status) {
                continue;
            }
            let (body, _) = read_body(s, buf, &head.to_ascii_lowercase()).await?;
            return Some(RawResponse { status, head, body });
        }
    })
    .await
    .ok()
    .flatten()
}

/// Writes `bytes` to a new connection to `addr` and reads one response.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Option<RawResponse> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.ok()?;
    read_response(&mut s, &mut Vec::new()).await
}

/// Writes `bytes` and reads `n` responses from the same connection.
pub async fn exchange_n(addr: SocketAddr, bytes: &[u8], n: usize) -> Vec<RawResponse> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    if s.write_all(bytes).await.is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for _ in 0..n {
        match read_response(&mut s, &mut buf).await {
            Some(r) => out.push(r),
            None => break,
        }
    }
    out
}

/// Waits until the peer closes `s` (EOF or error), up to `within`; true if it did.
pub async fn closed_within<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut b = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}
