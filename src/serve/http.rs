//! HTTP/1.1, as much as a sandbox service needs: requests with `Content-Length` or
//! chunked bodies, keep-alive, `Expect: 100-continue`, and responses with a length.
//! Written here rather than taken from a framework so that every limit is ours: the
//! head and the body are capped before they are read whole, and a connection is a
//! plain descriptor the service can watch for a client that went away.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// The most bytes of a request's line and headers.
pub const MAX_HEAD: usize = 64 << 10;

/// A client connection, over TCP or a unix socket.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Conn {
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }

    pub fn set_read_timeout(&self, t: Option<std::time::Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(t),
            Conn::Unix(s) => s.set_read_timeout(t),
        }
    }
}

/// One request as read.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    /// The path, without the query (which no endpoint takes).
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// HTTP/1.0, or `Connection: close`.
    pub close: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read: the response to send, then the connection is
/// closed.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection between requests.
    Closed,
    /// The connection failed or timed out.
    Io,
    /// A request the service refuses: a status and a message.
    Refuse(u16, String),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> ReadError {
        ReadError::Io
    }
}

/// Reads one request. `max_body` caps the body: a larger `Content-Length` is refused
/// before a byte of it is read, and a chunked body as soon as it passes the cap.
pub fn read_request<R: BufRead>(
    r: &mut R,
    out: &mut impl Write,
    max_body: u64,
) -> Result<Request, ReadError> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = r
            .by_ref()
            .take((MAX_HEAD - head.len()) as u64 + 1)
            .read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(if head.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Refuse(400, "the request ended inside its head".into())
            });
        }
        if head.len() > MAX_HEAD {
            return Err(ReadError::Refuse(
                431,
                format!("the request's head is over {MAX_HEAD} bytes"),
            ));
        }
        let line = &head[before..];
        // Blank lines before a request line are allowed (RFC 9112 2.2).
        if (line == b"\r\n" || line == b"\n") && before == 0 {
            head.clear();
            continue;
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let text = std::str::from_utf8(&head)
        .map_err(|_| ReadError::Refuse(400, "the request's head is not UTF-8".into()))?;
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Refuse(
            400,
            format!("a malformed request line: {first:?}"),
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Refuse(
            505,
            format!("{version} is not served: use HTTP/1.1"),
        ));
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        close: version == "HTTP/1.0",
        ..Request::default()
    };
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Refuse(
                400,
                format!("a malformed header: {line:?}"),
            ));
        };
        req.headers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    if let Some(c) = req.header("connection") {
        let c = c.to_ascii_lowercase();
        if c.contains("close") {
            req.close = true;
        } else if c.contains("keep-alive") {
            req.close = false;
        }
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length = match req.header("content-length") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ReadError::Refuse(400, format!("Content-Length {v:?} is not a number"))
        })?),
        None => None,
    };
    if length.is_some_and(|l| l > max_body) {
        return Err(ReadError::Refuse(
            413,
            format!(
                "the body of {} bytes is over this server's cap of {max_body} (--max-body)",
                length.unwrap_or_default()
            ),
        ));
    }
    let expects = req
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    if expects && (chunked || length.is_some_and(|l| l > 0)) {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        out.flush()?;
    }
    if chunked {
        req.body = read_chunked(r, max_body)?;
    } else if let Some(len) = length {
        let mut body = Vec::with_capacity(len.min(1 << 20) as usize);
        r.by_ref().take(len).read_to_end(&mut body)?;
        if (body.len() as u64) < len {
            return Err(ReadError::Refuse(
                400,
                "the body ended before its Content-Length".into(),
            ));
        }
        req.body = body;
    }
    Ok(req)
}

fn read_chunked<R: BufRead>(r: &mut R, max_body: u64) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        r.by_ref().take(1024).read_until(b'\n', &mut line)?;
        let text = String::from_utf8_lossy(&line);
        let size = text.trim().split(';').next().unwrap_or_default();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| ReadError::Refuse(400, format!("a malformed chunk size: {size:?}")))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut t = Vec::new();
                let n = r.by_ref().take(MAX_HEAD as u64).read_until(b'\n', &mut t)?;
                if n == 0 || t == b"\r\n" || t == b"\n" {
                    return Ok(body);
                }
            }
        }
        if body.len() as u64 + size > max_body {
            return Err(ReadError::Refuse(
                413,
                format!("the body is over this server's cap of {max_body} bytes (--max-body)"),
            ));
        }
        let at = body.len();
        r.by_ref().take(size).read_to_end(&mut body)?;
        if ((body.len() - at) as u64) < size {
            return Err(ReadError::Refuse(
                400,
                "the body ended inside a chunk".into(),
            ));
        }
        let mut crlf = Vec::new();
        r.by_ref().take(2).read_until(b'\n', &mut crlf)?;
    }
}

/// A response to write.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

pub const JSON: &str = "application/json; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: TEXT,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// An empty body, as go-judge answers its file errors.
    pub fn empty(status: u16) -> Response {
        Response::text(status, Vec::new())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Writes a response whole. `close`: tells the client the connection ends after it.
pub fn write_response(w: &mut impl Write, r: &Response, close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head += &format!("{k}: {v}\r\n");
    }
    if close {
        head += "Connection: close\r\n";
    }
    head += "\r\n";
    let mut all = head.into_bytes();
    all.extend_from_slice(&r.body);
    w.write_all(&all)?;
    w.flush()
}

/// A buffered reader over a connection, for a keep-alive loop.
pub fn reader(c: Conn) -> BufReader<Conn> {
    BufReader::with_capacity(16 << 10, c)
}

/// An eventfd that wakes a thread waiting in [`await_hang_up`].
pub struct Wake(std::os::fd::OwnedFd);

impl Wake {
    pub fn new() -> io::Result<Wake> {
        // SAFETY: eventfd with a zero count and flags.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor owned by no one else.
        Ok(Wake(unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: an 8-byte write from a live u64 to our eventfd.
        unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }
}

/// Waits until the peer of `fd` hangs up (true) or `wake` is woken (false). Bytes the
/// client sends meanwhile (a pipelined request) are left for the next read.
pub fn await_hang_up(fd: RawFd, wake: RawFd) -> bool {
    loop {
        let mut p = [
            libc::pollfd {
                fd,
                events: libc::POLLRDHUP,
                revents: 0,
            },
            libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on a live array of two pollfd.
        let n = unsafe { libc::poll(p.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        if p[1].revents != 0 {
            return false;
        }
        if p[0].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &[u8], max: u64) -> Result<Request, ReadError> {
        let mut out = Vec::new();
        read_request(&mut io::Cursor::new(raw.to_vec()), &mut out, max)
    }

    #[test]
    fn a_request_with_a_length_and_one_chunked() {
        let r = read(
            b"POST /run?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd",
            10,
        )
        .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/run"));
        assert_eq!(r.body, b"abcd");
        assert!(!r.close);
        let r = read(
            b"POST /run HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            10,
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        let r = read(b"GET / HTTP/1.0\r\n\r\n", 10).unwrap();
        assert!(r.close);
    }

    #[test]
    fn oversize_and_malformed_requests_are_refused() {
        let refused = |raw: &[u8], want: u16| match read(raw, 10) {
            Err(ReadError::Refuse(s, _)) => assert_eq!(s, want, "{}", String::from_utf8_lossy(raw)),
            other => panic!("{other:?}"),
        };
        refused(b"POST /run HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 413);
        refused(
            b"POST /run HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n",
            413,
        );
        refused(b"POST /run HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400);
        refused(b"POST /run HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", 400);
        refused(b"BREW\r\n\r\n", 400);
        refused(b"GET / HTTP/2\r\n\r\n", 505);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        big.extend_from_slice(b"\r\n\r\n");
        refused(&big, 431);
        assert!(matches!(read(b"", 10), Err(ReadError::Closed)));
    }

    #[test]
    fn expect_continue_is_answered_before_the_body() {
        let mut out = Vec::new();
        let raw =
            b"POST /run HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok".to_vec();
        let r = read_request(&mut io::Cursor::new(raw), &mut out, 10).unwrap();
        assert_eq!(r.body, b"ok");
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}
