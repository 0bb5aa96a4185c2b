//! The little HTTP/1.1 both XCAP sides (and the metrics endpoint) need: accepting
//! connections, reading one request or response from a stream with hard limits on
//! header and body size (httparse does the framing), and writing one. No redirects, no compression, no TLS; chunked bodies are read, never
//! written.

use std::fmt;
use std::io;

use futures_lite::{AsyncRead, AsyncReadExt};

/// Most header fields accepted in one message.
const MAX_HEADERS: usize = 64;

/// Why a message could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed before a message started.
    Closed,
    Io(io::Error),
    Malformed(&'static str),
    HeadTooLarge,
    /// The body (or its announced length) exceeds the limit.
    BodyTooLarge,
    /// A request body without Content-Length (RFC 9112 §6.3: 411).
    LengthRequired,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => write!(f, "connection closed"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Malformed(why) => write!(f, "malformed HTTP message: {why}"),
            ReadError::HeadTooLarge => write!(f, "HTTP header too large"),
            ReadError::BodyTooLarge => write!(f, "HTTP body too large"),
            ReadError::LengthRequired => write!(f, "request body without Content-Length"),
        }
    }
}

impl std::error::Error for ReadError {}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// HTTP/1.0 (0) or HTTP/1.1 (1).
    pub minor: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// First value of a header, by case-insensitive name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("Connection").map(str::to_ascii_lowercase);
        match self.minor {
            0 => conn.is_some_and(|c| c.contains("keep-alive")),
            _ => !conn.is_some_and(|c| c.contains("close")),
        }
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Reads more bytes into `buf`; `Ok(false)` at end of stream.
async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<bool, ReadError> {
    let mut chunk = [0u8; 8192];
    let n = r.read(&mut chunk).await.map_err(ReadError::Io)?;
    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    Ok(n > 0)
}

fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect()
}

fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, ReadError> {
    match header(headers, "Content-Length") {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ReadError::Malformed("bad Content-Length")),
    }
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// Reads one request. `buf` carries bytes already read past the previous request
/// (pipelining); what follows this request stays in it.
pub async fn read_request<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max_head: usize,
    max_body: usize,
) -> Result<Request, ReadError> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = req.method.unwrap_or_default().to_owned();
                let path = req.path.unwrap_or_default().to_owned();
                let minor = req.version.unwrap_or(1);
                let headers = owned_headers(req.headers);
                buf.drain(..head_len);
                if is_chunked(&headers) {
                    return Err(ReadError::LengthRequired);
                }
                let len = content_length(&headers)?.unwrap_or(0);
                if len > max_body {
                    return Err(ReadError::BodyTooLarge);
                }
                while buf.len() < len {
                    if !fill(r, buf).await? {
                        return Err(ReadError::Malformed("body cut short"));
                    }
                }
                let body: Vec<u8> = buf.drain(..len).collect();
                return Ok(Request {
                    method,
                    path,
                    minor,
                    headers,
                    body,
                });
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > max_head {
                    return Err(ReadError::HeadTooLarge);
                }
                if !fill(r, buf).await? {
                    return Err(if buf.is_empty() {
                        ReadError::Closed
                    } else {
                        ReadError::Malformed("head cut short")
                    });
                }
            }
            Err(_) => return Err(ReadError::Malformed("bad request head")),
        }
    }
}

/// Reads one response to a GET: body by Content-Length, chunked, or up to the close.
pub async fn read_response<R: AsyncRead + Unpin>(
    r: &mut R,
    max_head: usize,
    max_body: usize,
) -> Result<Response, ReadError> {
    let mut buf = Vec::with_capacity(4096);
    let (status, headers) = loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut slots);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = resp.code.unwrap_or(0);
                let headers = owned_headers(resp.headers);
                buf.drain(..head_len);
                break (status, headers);
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > max_head {
                    return Err(ReadError::HeadTooLarge);
                }
                if !fill(r, &mut buf).await? {
                    return Err(ReadError::Malformed("head cut short"));
                }
            }
            Err(_) => return Err(ReadError::Malformed("bad response head")),
        }
    };
    // RFC 9112 §6.3: these never carry a body.
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Response {
            status,
            headers,
            body: Vec::new(),
        });
    }
    let body = if is_chunked(&headers) {
        read_chunked(r, buf, max_body).await?
    } else if let Some(len) = content_length(&headers)? {
        if len > max_body {
            return Err(ReadError::BodyTooLarge);
        }
        while buf.len() < len {
            if !fill(r, &mut buf).await? {
                return Err(ReadError::Malformed("body cut short"));
            }
        }
        buf.truncate(len);
        buf
    } else {
        loop {
            if buf.len() > max_body {
                return Err(ReadError::BodyTooLarge);
            }
            if !fill(r, &mut buf).await? {
                break buf;
            }
        }
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// RFC 9112 §7.1 chunked transfer coding; trailers are skipped.
async fn read_chunked<R: AsyncRead + Unpin>(
    r: &mut R,
    mut buf: Vec<u8>,
    max_body: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if buf.len() > 1024 {
                return Err(ReadError::Malformed("chunk size line too long"));
            }
            if !fill(r, &mut buf).await? {
                return Err(ReadError::Malformed("chunked body cut short"));
            }
        };
        let line = String::from_utf8_lossy(buf.get(..line_end).unwrap_or_default()).into_owned();
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Malformed("bad chunk size"))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            return Ok(body);
        }
        if body.len().saturating_add(size) > max_body {
            return Err(ReadError::BodyTooLarge);
        }
        while buf.len() < size + 2 {
            if !fill(r, &mut buf).await? {
                return Err(ReadError::Malformed("chunk cut short"));
            }
        }
        body.extend_from_slice(buf.get(..size).unwrap_or_default());
        buf.drain(..size + 2);
    }
}

/// A response in wire form. `Content-Length` is always written (also for 304, where it
/// is 0, which RFC 9110 §8.6 allows).
pub fn response_bytes(status: u16, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Accepts connections on `listener` for ever, each handed to `serve` on a task of its
/// own; `what` names the server in the log. A failed accept (out of descriptors) waits a
/// moment instead of spinning.
pub async fn accept_each<F, Fut, E>(
    listener: smol::net::TcpListener,
    what: &'static str,
    ex: std::sync::Arc<smol::Executor<'static>>,
    serve: F,
) where
    F: Fn(smol::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("{what}: accept: {e}");
                smol::Timer::after(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let served = serve(stream);
        ex.spawn(async move {
            if let Err(e) = served.await {
                log::debug!("{what}: {peer}: {e}");
            }
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        futures_lite::future::block_on(f)
    }

    #[test]
    fn pipelined_requests_are_read_one_at_a_time() {
        let wire =
            b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.0\r\n\r\n";
        let mut r = &wire[..];
        let mut buf = Vec::new();
        let a = block(read_request(&mut r, &mut buf, 1024, 10)).unwrap();
        assert_eq!(
            (a.method.as_str(), a.path.as_str(), &a.body[..]),
            ("PUT", "/a", &b"abc"[..])
        );
        assert!(a.keep_alive());
        let b = block(read_request(&mut r, &mut buf, 1024, 10)).unwrap();
        assert_eq!(b.path, "/b");
        assert!(!b.keep_alive());
        assert!(matches!(
            block(read_request(&mut r, &mut buf, 1024, 10)),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn oversized_bodies_and_heads_are_refused() {
        let mut r = &b"PUT /a HTTP/1.1\r\nContent-Length: 11\r\n\r\n"[..];
        assert!(matches!(
            block(read_request(&mut r, &mut Vec::new(), 1024, 10)),
            Err(ReadError::BodyTooLarge)
        ));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(2000));
        let mut r = long.as_bytes();
        assert!(matches!(
            block(read_request(&mut r, &mut Vec::new(), 1024, 10)),
            Err(ReadError::HeadTooLarge)
        ));
    }

    #[test]
    fn responses_are_read_by_length_chunks_or_close() {
        let mut r = &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiXX"[..];
        assert_eq!(block(read_response(&mut r, 1024, 10)).unwrap().body, b"hi");
        let mut r = &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n3;x\r\n!!!\r\n0\r\n\r\n"[..];
        assert_eq!(
            block(read_response(&mut r, 1024, 10)).unwrap().body,
            b"hi!!!"
        );
        let mut r = &b"HTTP/1.0 200 OK\r\n\r\nuntil close"[..];
        assert_eq!(
            block(read_response(&mut r, 1024, 100)).unwrap().body,
            b"until close"
        );
        let mut r = &b"HTTP/1.0 200 OK\r\n\r\nuntil close"[..];
        assert!(matches!(
            block(read_response(&mut r, 1024, 5)),
            Err(ReadError::BodyTooLarge)
        ));
        let mut r = &b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n"[..];
        let resp = block(read_response(&mut r, 1024, 5)).unwrap();
        assert_eq!((resp.status, resp.header("etag")), (304, Some("\"a\"")));
    }
}
