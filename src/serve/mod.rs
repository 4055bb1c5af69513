//! `moat serve`: a long-lived sandbox service that speaks go-judge's REST API (and
//! moat's own request schema beside it), starting each run in a fresh jail from the
//! warm pool.
//!
//! Owns: the listener and its connections (`http`), the translation of go-judge's
//! requests and results (`gojudge`), the file store's endpoints, metrics and the
//! drain on SIGTERM. May use: `request` (every run is a moat [`Request`]), the pool.
//! Decides no verdict: each result is its run's, renamed in go-judge's words.

pub(crate) mod gojudge;
pub(crate) mod http;
mod metrics;
mod multipart;

use crate::jail::pool::Pool;
use crate::request::{ExecOptions, FileCache, Request};
use crate::watch::cancel::Cancel;
use http::{Conn, ReadError, Response};
use serde_json::{json, Value};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where the service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket (made 0600).
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Listen {
    /// `unix:PATH` or `tcp:HOST:PORT`.
    pub fn parse(s: &str) -> Result<Listen, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a path, as in unix:/run/moat/moat.sock".into());
            }
            return Ok(Listen::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            return a
                .parse()
                .map(Listen::Tcp)
                .map_err(|_| format!("{a:?} is not an address: give tcp:127.0.0.1:5050"));
        }
        Err(format!("{s:?}: give unix:PATH or tcp:HOST:PORT"))
    }

    /// The default: a socket under `$XDG_RUNTIME_DIR`, else `/run/moat` for root, else
    /// the temp dir.
    pub fn default_unix() -> Listen {
        let dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(|| {
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 {
                    PathBuf::from("/run/moat")
                } else {
                    std::env::temp_dir()
                }
            });
        Listen::Unix(dir.join("moat.sock"))
    }
}

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen.
    pub listen: Listen,
    /// Required of every request but `/version`, `/config`, `/healthz` and `/metrics`
    /// when set; required at all for a non-loopback address.
    pub auth_token: Option<String>,
    /// Runs at once; more wait.
    pub parallelism: usize,
    /// The profile of a command that names none.
    pub profile: String,
    /// The file store's cap in bytes.
    pub store_bytes: u64,
    /// How long a file is kept in the store (none: until deleted).
    pub store_ttl: Option<Duration>,
    /// Host directories a request may copy files in from.
    pub src_prefix: Vec<PathBuf>,
    /// The largest request body.
    pub max_body: u64,
    /// How long running requests may take to finish after SIGTERM before they are
    /// cancelled.
    pub drain: Duration,
    /// One JSON line per request on stderr.
    pub log: bool,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {what}: {source}")]
    Listen {
        /// The address, as given.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The options are unsafe or the address is taken; the message says what to do.
    #[error("{0}")]
    Refused(String),
}

struct Slots {
    free: Mutex<usize>,
    wake: Condvar,
}

impl Slots {
    fn take(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.wake.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.wake.notify_one();
    }
}

struct State {
    opts: ServeOptions,
    rules: gojudge::Rules,
    pool: Option<Arc<Pool>>,
    store: FileCache,
    metrics: metrics::Metrics,
    slots: Slots,
    /// The cancel tokens of requests running now, to end them when draining runs out.
    running: Mutex<std::collections::HashMap<u64, Cancel>>,
    next: AtomicU64,
    draining: AtomicBool,
    connections: AtomicU64,
}

/// Runs the service until `shutdown` is cancelled (SIGTERM), then drains: stops
/// accepting, lets running requests finish for up to `drain`, cancels the rest, and
/// removes its socket. `pool`: jails made ahead (start it first thing in `main`).
pub fn serve(
    opts: ServeOptions,
    pool: Option<Arc<Pool>>,
    shutdown: Cancel,
) -> Result<(), ServeError> {
    let loopback = match &opts.listen {
        Listen::Tcp(a) => a.ip().is_loopback(),
        Listen::Unix(_) => true,
    };
    if !loopback && opts.auth_token.is_none() {
        return Err(ServeError::Refused(
            "a non-loopback address needs --auth-token: without one anyone who reaches it could run programs".into(),
        ));
    }
    let listener = bind(&opts.listen)?;
    let state = Arc::new(State {
        rules: gojudge::Rules {
            profile: opts.profile.clone(),
            src_prefix: opts
                .src_prefix
                .iter()
                .filter_map(|p| p.canonicalize().ok())
                .collect(),
            max_src: opts.max_body,
        },
        store: FileCache::new(opts.store_bytes),
        metrics: metrics::Metrics::default(),
        slots: Slots {
            free: Mutex::new(opts.parallelism.max(1)),
            wake: Condvar::new(),
        },
        running: Mutex::new(Default::default()),
        next: AtomicU64::new(0),
        draining: AtomicBool::new(false),
        connections: AtomicU64::new(0),
        pool,
        opts,
    });
    log_line(
        &state,
        json!({"event": "listening", "on": describe(&state.opts.listen)}),
    );
    let mut last_expiry = Instant::now();
    loop {
        if shutdown.cancelled().is_some() {
            break;
        }
        if let Some(ttl) = state.opts.store_ttl {
            if last_expiry.elapsed() > Duration::from_secs(1) {
                state.store.expire(ttl);
                last_expiry = Instant::now();
            }
        }
        let mut p = libc::pollfd {
            fd: listener.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one live pollfd.
        if unsafe { libc::poll(&mut p, 1, 100) } <= 0 {
            continue;
        }
        let conn = match listener.accept() {
            Ok(c) => c,
            Err(_) => continue,
        };
        let st = state.clone();
        st.connections.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("moat-conn".into())
            .spawn(move || {
                connection(&st, conn);
                st.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            state.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // Drain.
    state.draining.store(true, Ordering::SeqCst);
    listener.cleanup();
    log_line(
        &state,
        json!({"event": "draining", "running": state.running.lock().map(|r| r.len()).unwrap_or(0)}),
    );
    let deadline = Instant::now() + state.opts.drain;
    while state.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for c in state
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
    {
        c.cancel(libc::SIGTERM);
    }
    let hard = Instant::now() + Duration::from_secs(10);
    while state.connections.load(Ordering::SeqCst) > 0 && Instant::now() < hard {
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(p) = &state.pool {
        p.close();
    }
    log_line(&state, json!({"event": "stopped"}));
    Ok(())
}

fn describe(l: &Listen) -> String {
    match l {
        Listen::Unix(p) => format!("unix:{}", p.display()),
        Listen::Tcp(a) => format!("tcp:{a}"),
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    fn fd(&self) -> i32 {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }

    fn accept(&self) -> io::Result<Conn> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }
            Listener::Unix(l, _) => Conn::Unix(l.accept()?.0),
        })
    }

    /// Removes the socket file (a unix listener's).
    fn cleanup(self) {
        if let Listener::Unix(l, path) = self {
            drop(l);
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind(listen: &Listen) -> Result<Listener, ServeError> {
    let err = |what: String| move |source| ServeError::Listen { what, source };
    match listen {
        Listen::Tcp(a) => TcpListener::bind(a)
            .map(Listener::Tcp)
            .map_err(err(format!("tcp:{a}"))),
        Listen::Unix(path) => {
            let what = format!("unix:{}", path.display());
            if let Some(dir) = path.parent() {
                use std::os::unix::fs::DirBuilderExt;
                let _ = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir);
            }
            // A socket left by a service that was killed is replaced; anything else at
            // the path is not.
            if let Ok(m) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if !m.file_type().is_socket() {
                    return Err(ServeError::Refused(format!(
                        "{} exists and is not a socket: remove it or listen elsewhere",
                        path.display()
                    )));
                }
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(ServeError::Refused(format!(
                        "another service listens on {}: stop it or listen elsewhere",
                        path.display()
                    )));
                }
                let _ = std::fs::remove_file(path);
            }
            // Made 0600 from the start: the umask covers the window before chmod.
            // SAFETY: umask has no preconditions; restored right after the bind.
            let old = unsafe { libc::umask(0o177) };
            let l = UnixListener::bind(path);
            // SAFETY: as above.
            unsafe { libc::umask(old) };
            let l = l.map_err(err(what))?;
            Ok(Listener::Unix(l, path.clone()))
        }
    }
}

fn log_line(state: &State, v: Value) {
    if state.opts.log {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut v = v;
        if let Value::Object(m) = &mut v {
            m.insert("ts".into(), json!((ts * 1000.0).round() / 1000.0));
        }
        let _ = writeln!(io::stderr(), "{v}");
    }
}

/// One connection: requests in turn until it closes.
fn connection(state: &State, conn: Conn) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    // A client that sends nothing for a minute is let go.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let fd = conn.as_raw_fd();
    let mut r = http::reader(conn);
    loop {
        let req = match http::read_request(&mut r, &mut out, state.opts.max_body) {
            Ok(req) => req,
            Err(ReadError::Closed) | Err(ReadError::Io) => return,
            Err(ReadError::Refuse(status, message)) => {
                state.metrics.request(status, Duration::ZERO);
                let _ = http::write_response(
                    &mut out,
                    &Response::json(status, json_string(&message)),
                    true,
                );
                return;
            }
        };
        let began = Instant::now();
        let resp = route(state, &req, fd);
        let took = began.elapsed();
        state.metrics.request(resp.status, took);
        log_line(
            state,
            json!({"method": req.method, "path": req.path, "status": resp.status, "ms": (took.as_secs_f64() * 1e6).round() / 1e3}),
        );
        let close = req.close || state.draining.load(Ordering::SeqCst);
        if http::write_response(&mut out, &resp, close).is_err() || close {
            return;
        }
    }
}

fn json_string(s: &str) -> Vec<u8> {
    Value::String(s.to_string()).to_string().into_bytes()
}

fn authorized(state: &State, req: &http::Request) -> bool {
    let Some(token) = &state.opts.auth_token else {
        return true;
    };
    let given = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared in time that does not depend on where they differ.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn route(state: &State, req: &http::Request, fd: i32) -> Response {
    let m = req.method.as_str();
    let p = req.path.as_str();
    match (m, p) {
        ("GET", "/healthz") => return Response::text(200, "ok\n"),
        ("GET", "/version") => return Response::json(200, version().to_string()),
        ("GET", "/config") => return Response::json(200, config(state).to_string()),
        ("GET", "/metrics") => {
            let mut r = Response::text(
                200,
                state.metrics.render(state.pool.as_deref(), &state.store),
            );
            r.content_type = "text/plain; version=0.0.4; charset=utf-8";
            return r;
        }
        _ => {}
    }
    if !authorized(state, req) {
        return Response::empty(401);
    }
    if state.draining.load(Ordering::SeqCst) && m == "POST" {
        return Response::json(503, json_string("the service is shutting down"));
    }
    match (m, p) {
        ("POST", "/run") => run_gojudge(state, req, fd),
        ("POST", "/moat/run") => run_moat(state, req, fd),
        ("GET", "/file") => {
            let list: serde_json::Map<String, Value> = state
                .store
                .list()
                .into_iter()
                .map(|(id, name)| (id, Value::String(name)))
                .collect();
            Response::json(200, Value::Object(list).to_string())
        }
        ("POST", "/file") => post_file(state, req),
        (_, p) if p.starts_with("/file/") => {
            let id = &p["/file/".len()..];
            match m {
                "GET" => match state.store.get(id) {
                    Some(f) => {
                        let name = state.store.name_of(id).unwrap_or_default();
                        let mut r = Response {
                            status: 200,
                            content_type: "application/octet-stream",
                            headers: Vec::new(),
                            body: f.data.to_vec(),
                        };
                        if !name.is_empty() {
                            r.headers.push((
                                "Content-Disposition",
                                format!(
                                    "attachment; filename=\"{}\"",
                                    name.replace(['"', '\r', '\n'], "_")
                                ),
                            ));
                        }
                        r
                    }
                    None => Response::empty(404),
                },
                "DELETE" => {
                    if state.store.remove(id) {
                        Response::empty(200)
                    } else {
                        Response::empty(404)
                    }
                }
                _ => Response::empty(405),
            }
        }
        _ => Response::text(404, "404 page not found"),
    }
}

/// What this server supports of go-judge's features, as `/version` and `/config` both
/// give it.
fn features() -> serde_json::Map<String, Value> {
    let v = json!({
        "copyOutOptional": true,
        "pipeProxy": true,
        "symlink": false,
        "copyOutTruncate": false,
        "addressSpaceLimit": true,
        "stream": false,
        "procPeak": false,
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn version() -> Value {
    let mut m = features();
    m.insert(
        "buildVersion".into(),
        concat!("moat ", env!("CARGO_PKG_VERSION")).into(),
    );
    m.insert("os".into(), std::env::consts::OS.into());
    m.insert("platform".into(), std::env::consts::ARCH.into());
    m.insert("moat".into(), true.into());
    m.insert("moatCommit".into(), env!("MOAT_GIT_COMMIT").into());
    Value::Object(m)
}

fn config(state: &State) -> Value {
    let mut m = features();
    m.insert("fileStorePath".into(), "".into());
    m.insert(
        "runnerConfig".into(),
        json!({
            "workDir": "/w",
            "profile": state.opts.profile,
            "parallelism": state.opts.parallelism,
            "preFork": state.pool.as_ref().map_or(0, |p| p.stats().target),
        }),
    );
    Value::Object(m)
}

fn post_file(state: &State, req: &http::Request) -> Response {
    let Some((name, data)) = req
        .header("content-type")
        .and_then(|ct| multipart::file_part(ct, &req.body, "file"))
    else {
        return Response::empty(400);
    };
    match state.store.insert(None, data.into(), 0o644) {
        Ok(id) => {
            state.store.name(&id, &name);
            Response::json(200, json_string(&id))
        }
        Err(_) => Response::empty(500),
    }
}

/// Runs a moat request with a cancel token that ends it if the client goes away, or
/// when draining runs out.
fn exec(state: &State, request: &Request, fd: i32) -> crate::request::Response {
    let _slot = state.slots.take();
    let cancel = Cancel::new();
    let key = state.next.fetch_add(1, Ordering::SeqCst);
    state
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, cancel.clone());
    // Woken by the client hanging up, or by `done` once the run is over.
    let done = http::Wake::new();
    let watcher = done.as_ref().ok().and_then(|wake| {
        let (wake, cancel) = (wake.fd(), cancel.clone());
        std::thread::Builder::new()
            .name("moat-hangup".into())
            .spawn(move || {
                if http::await_hang_up(fd, wake) {
                    cancel.cancel(0);
                }
            })
            .ok()
    });
    let opts = ExecOptions {
        cancel: Some(cancel),
        pool: state.pool.clone(),
        ..ExecOptions::default()
    };
    let resp = crate::request::exec_with(request, &state.store, &opts);
    if let Ok(wake) = &done {
        wake.wake();
    }
    if let Some(w) = watcher {
        let _ = w.join();
    }
    state
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    for r in &resp.results {
        state.metrics.run(gojudge::status_string(r.outcome.status));
    }
    resp
}

fn run_gojudge(state: &State, req: &http::Request, fd: i32) -> Response {
    let parsed =
        gojudge::parse(&req.body).and_then(|g| gojudge::translate(&g, &state.rules, &state.store));
    let (request, shape) = match parsed {
        Ok(x) => x,
        Err(f) => return Response::json(f.status, json_string(&f.message)),
    };
    let resp = exec(state, &request, fd);
    if let Some(e) = &resp.error {
        return Response::json(400, json_string(&e.to_string()));
    }
    let mut body = gojudge::results(&resp, &shape, &state.store).to_string();
    body.push('\n');
    Response::json(200, body)
}

fn run_moat(state: &State, req: &http::Request, fd: i32) -> Response {
    let text = match std::str::from_utf8(&req.body) {
        Ok(t) => t,
        Err(_) => return Response::json(400, json_string("the body is not UTF-8")),
    };
    match Request::from_json(text) {
        Ok(r) => {
            let resp = exec(state, &r, fd);
            let status = if resp.error.is_some() { 400 } else { 200 };
            Response::json(status, resp.to_json())
        }
        Err(e) => {
            let resp = crate::request::Response {
                id: Request::id_of(text),
                results: Vec::new(),
                pipes: Default::default(),
                error: Some(e),
            };
            Response::json(400, resp.to_json())
        }
    }
}
