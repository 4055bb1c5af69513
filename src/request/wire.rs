//! The JSON form of requests and responses (schema 1).
//!
//! A request is read in two steps: serde takes the text into plain structs that refuse
//! unknown keys (every fault located by its JSON path, through `serde_path_to_error`),
//! then each value is read in its unit (sizes, limits, modes, base64) into a
//! [`Request`], the fault again named by its path. What a request means beyond its
//! form (pipes that join, files that exist) is `check`'s.

use super::{
    key, CacheAs, Command, CommandResult, CopyOut, FileOutResult, FileSource, Input, Output, Pipe,
    PipeEnd, Request, RequestError, Response, DEFAULT_WORKDIR, DEFAULT_WORKDIR_SIZE, SCHEMA,
};
use crate::config::limits::{Limit, Limits, Written, TABLE};
use crate::config::units;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A JSON object whose keys all differ: serde's own maps keep the last of two equal
/// keys without a word, and `{"cpu_time": "1s", "cpu_time": "9s"}` is a mistake.
struct Unique<V>(BTreeMap<String, V>);

impl<V> Default for Unique<V> {
    fn default() -> Unique<V> {
        Unique(BTreeMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Unique<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Unique<V>, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Unique<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Unique<V>, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = m.next_key::<String>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("`{k}` is given twice")));
                    }
                    let v = m.next_value()?;
                    out.insert(k, v);
                }
                Ok(Unique(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    schema: Value,
    #[serde(default)]
    id: Option<Value>,
    commands: Vec<WireCommand>,
    #[serde(default)]
    pipes: Vec<WirePipe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCommand {
    args: Vec<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    env: Unique<String>,
    #[serde(default)]
    limits: Unique<Value>,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    workdir_size: Option<Value>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    stdin: Option<WireInput>,
    #[serde(default)]
    stdout: Option<WireOutput>,
    #[serde(default)]
    stderr: Option<WireOutput>,
    #[serde(default)]
    files_in: Unique<WireFileIn>,
    #[serde(default)]
    files_out: Vec<WireFileOut>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireInput {
    content: Option<String>,
    base64: Option<String>,
    file: Option<String>,
    cached: Option<String>,
    pipe: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireOutput {
    collect: Option<Value>,
    file: Option<String>,
    pipe: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFileIn {
    content: Option<String>,
    base64: Option<String>,
    host: Option<String>,
    cached: Option<String>,
    mode: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFileOut {
    path: String,
    #[serde(default)]
    max: Option<Value>,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    cache: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePipe {
    name: String,
    #[serde(default)]
    record: Option<Value>,
    #[serde(default)]
    from: Option<WireEnd>,
    #[serde(default)]
    to: Option<WireEnd>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnd {
    command: usize,
    fd: i64,
}

/// A request's id from a JSON text that may be no valid request at all, so that even
/// the error response of a bad request carries it.
pub fn id_of(text: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(text).ok()?;
    v.get("id")
        .filter(|id| id.is_string() || id.is_i64() || id.is_u64())
        .cloned()
}

/// Reads a request from its JSON text.
pub fn parse(text: &str) -> Result<Request, RequestError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let wire: WireRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde_path_to_error writes the root as `.` and a step it could not name as
        // `?` (the text ended inside it).
        let path = e.path().to_string();
        let path = path.trim_end_matches(".?").trim_end_matches('?');
        let path = if path == "." {
            String::new()
        } else {
            path.to_string()
        };
        RequestError::at(path, e.into_inner().to_string())
    })?;
    de.end()
        .map_err(|e| RequestError::at("", format!("text after the request: {e}")))?;
    from_wire(wire)
}

fn from_wire(w: WireRequest) -> Result<Request, RequestError> {
    match w.schema.as_u64() {
        Some(n) if n == u64::from(SCHEMA) => {}
        _ => {
            return Err(RequestError::at(
                "schema",
                format!(
                    "this moat reads schema {SCHEMA}; the request says {}",
                    w.schema
                ),
            ))
        }
    }
    let id = match w.id {
        None | Some(Value::Null) => None,
        Some(v @ Value::String(_)) => Some(v),
        // Echoed exactly: a whole number within 64 bits (JSON readers turn others into
        // floats that come back changed).
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n)),
        Some(_) => {
            return Err(RequestError::at(
                "id",
                "must be a string or a whole number within 64 bits",
            ))
        }
    };
    let commands = w
        .commands
        .into_iter()
        .enumerate()
        .map(|(i, c)| command(&format!("commands[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    let pipes = w
        .pipes
        .into_iter()
        .enumerate()
        .map(|(i, p)| pipe(&format!("pipes[{i}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Request {
        id,
        commands,
        pipes,
    })
}

/// A size: a string in units ("64KiB") or a number of bytes.
fn size(path: &str, v: &Value) -> Result<u64, RequestError> {
    match v {
        Value::String(s) => units::parse_size(s).map_err(|e| RequestError::at(path, e.to_string())),
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            RequestError::at(path, format!("{n} is not a size: give bytes as a whole number, at least 0, or a string such as \"64KiB\""))
        }),
        _ => Err(RequestError::at(
            path,
            "expected a size: a string such as \"64KiB\" or a number of bytes",
        )),
    }
}

/// A permission mode: a string of octal digits ("755").
fn mode(path: &str, v: &Value) -> Result<u32, RequestError> {
    let bad = || {
        RequestError::at(
            path,
            "expected the mode as a string of octal digits, e.g. \"755\" or \"0644\"",
        )
    };
    let Value::String(s) = v else {
        return Err(bad());
    };
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let m = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if m > 0o777 {
        return Err(RequestError::at(
            path,
            format!("{s}: only permission bits (at most 777); set-id and sticky bits are refused"),
        ));
    }
    Ok(m)
}

fn base64_bytes(path: &str, text: &str) -> Result<Vec<u8>, RequestError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| RequestError::at(path, format!("not base64: {e}")))
}

/// The one key of several that may be given.
fn exactly_one<'a, T>(
    path: &str,
    choices: &'a [(&'static str, Option<T>)],
) -> Result<(&'static str, &'a T), RequestError> {
    let given: Vec<(&'static str, &T)> = choices
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
        .collect();
    let names = || {
        choices
            .iter()
            .map(|(k, _)| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match given.as_slice() {
        [one] => Ok(*one),
        [] => Err(RequestError::at(path, format!("give one of {}", names()))),
        many => Err(RequestError::at(
            path,
            format!(
                "give only one of {}; this gives {}",
                names(),
                many.iter()
                    .map(|(k, _)| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        )),
    }
}

fn limits(path: &str, given: &BTreeMap<String, Value>) -> Result<Limits, RequestError> {
    let mut out = Limits::default();
    for (name, value) in given {
        let at = key(path, name);
        let Some(limit) = Limit::from_key(name) else {
            let known: Vec<&str> = TABLE.iter().map(|s| s.key).collect();
            return Err(RequestError::at(
                at,
                format!("unknown limit; known limits: {}", known.join(", ")),
            ));
        };
        let written = match value {
            Value::String(s) => Written::Text(s),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Written::Integer(i128::from(i)),
                (_, Some(u)) => Written::Integer(i128::from(u)),
                _ => Written::Other,
            },
            _ => Written::Other,
        };
        let raw = limit
            .spec()
            .parse_written(written)
            .map_err(|m| RequestError::at(&at, m))?;
        out.set(limit, Some(raw));
    }
    Ok(out)
}

fn command(path: &str, c: WireCommand) -> Result<Command, RequestError> {
    let stdin = match &c.stdin {
        None => Input::Empty,
        Some(s) => {
            let at = format!("{path}.stdin");
            let choices = [
                ("content", s.content.as_ref()),
                ("base64", s.base64.as_ref()),
                ("file", s.file.as_ref()),
                ("cached", s.cached.as_ref()),
                ("pipe", s.pipe.as_ref()),
            ];
            match exactly_one(&at, &choices)? {
                ("content", v) => Input::Bytes(v.as_bytes().into()),
                ("base64", v) => Input::Bytes(base64_bytes(&format!("{at}.base64"), v)?.into()),
                ("file", v) => Input::File(v.to_string()),
                ("cached", v) => Input::Cached(v.to_string()),
                (_, v) => Input::Pipe(v.to_string()),
            }
        }
    };
    let output = |name: &str, o: &Option<WireOutput>| -> Result<Output, RequestError> {
        let Some(o) = o else {
            return Ok(Output::Discard);
        };
        let at = format!("{path}.{name}");
        let collect = o.collect.as_ref().map(|_| "");
        let choices = [
            ("collect", collect),
            ("file", o.file.as_deref()),
            ("pipe", o.pipe.as_deref()),
        ];
        Ok(match exactly_one(&at, &choices)? {
            ("collect", _) => {
                let v = o.collect.as_ref().unwrap_or(&Value::Null);
                Output::Collect(size(&format!("{at}.collect"), v)?)
            }
            ("file", v) => Output::File(v.to_string()),
            (_, v) => Output::Pipe(v.to_string()),
        })
    };
    let stdout = output("stdout", &c.stdout)?;
    let stderr = output("stderr", &c.stderr)?;
    let mut files_in = BTreeMap::new();
    for (name, f) in &c.files_in.0 {
        let at = key(&format!("{path}.files_in"), name);
        let m = f
            .mode
            .as_ref()
            .map(|m| mode(&format!("{at}.mode"), m))
            .transpose()?;
        let choices = [
            ("content", f.content.as_ref()),
            ("base64", f.base64.as_ref()),
            ("host", f.host.as_ref()),
            ("cached", f.cached.as_ref()),
        ];
        let source = match exactly_one(&at, &choices)? {
            ("content", v) => FileSource::Bytes {
                data: v.as_bytes().into(),
                mode: m.unwrap_or(0o644),
            },
            ("base64", v) => FileSource::Bytes {
                data: base64_bytes(&format!("{at}.base64"), v)?.into(),
                mode: m.unwrap_or(0o644),
            },
            ("host", v) => FileSource::Host {
                path: PathBuf::from(v),
                mode: m,
            },
            (_, v) => FileSource::Cached {
                id: v.to_string(),
                mode: m,
            },
        };
        files_in.insert(name.clone(), source);
    }
    let files_out =
        c.files_out
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let at = format!("{path}.files_out[{i}]");
                Ok(CopyOut {
                    path: f.path.clone(),
                    max: f
                        .max
                        .as_ref()
                        .map(|m| size(&format!("{at}.max"), m))
                        .transpose()?,
                    optional: f.optional,
                    cache: match &f.cache {
                        None | Some(Value::Bool(false)) | Some(Value::Null) => CacheAs::No,
                        Some(Value::Bool(true)) => CacheAs::Auto,
                        Some(Value::String(id)) => CacheAs::Id(id.clone()),
                        Some(_) => return Err(RequestError::at(
                            format!("{at}.cache"),
                            "expected true (moat picks the id), false, or the id to cache it under",
                        )),
                    },
                })
            })
            .collect::<Result<Vec<_>, RequestError>>()?;
    Ok(Command {
        args: c.args,
        profile: c.profile.unwrap_or_else(|| "default".into()),
        env: c.env.0,
        limits: limits(&format!("{path}.limits"), &c.limits.0)?,
        workdir: PathBuf::from(c.workdir.as_deref().unwrap_or(DEFAULT_WORKDIR)),
        workdir_size: c
            .workdir_size
            .as_ref()
            .map(|v| size(&format!("{path}.workdir_size"), v))
            .transpose()?
            .unwrap_or(DEFAULT_WORKDIR_SIZE),
        cwd: c.cwd.map(PathBuf::from),
        stdin,
        stdout,
        stderr,
        files_in,
        files_out,
    })
}

fn pipe(path: &str, p: WirePipe) -> Result<Pipe, RequestError> {
    let end = |name: &str, e: &Option<WireEnd>| -> Result<Option<PipeEnd>, RequestError> {
        let Some(e) = e else { return Ok(None) };
        let fd = i32::try_from(e.fd)
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| {
                RequestError::at(
                    format!("{path}.{name}.fd"),
                    format!("{} is not a descriptor number (0 or more)", e.fd),
                )
            })?;
        Ok(Some(PipeEnd {
            command: e.command,
            fd,
        }))
    };
    Ok(Pipe {
        name: p.name.clone(),
        record: p
            .record
            .as_ref()
            .map(|v| size(&format!("{path}.record"), v))
            .transpose()?,
        from: end("from", &p.from)?,
        to: end("to", &p.to)?,
    })
}

/// Bytes as the response gives them: under `key` as text when they are UTF-8, else
/// under `key_base64`.
fn put_bytes(map: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => map.insert(key.to_string(), Value::String(text.to_string())),
        Err(_) => map.insert(
            format!("{key}_base64"),
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    };
}

fn result(r: &CommandResult) -> Value {
    let mut map = match serde_json::to_value(&r.outcome) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Some(out) = &r.stdout {
        put_bytes(&mut map, "stdout", out);
    }
    if let Some(err) = &r.stderr {
        put_bytes(&mut map, "stderr", err);
    }
    let mut files = Map::new();
    for (name, f) in &r.files_out {
        let mut entry = Map::new();
        match f {
            // As files_in takes them: `content` for text, `base64` for other bytes.
            FileOutResult::Bytes(b) => {
                let (key, value) = match std::str::from_utf8(b) {
                    Ok(text) => ("content", text.to_string()),
                    Err(_) => (
                        "base64",
                        base64::engine::general_purpose::STANDARD.encode(b),
                    ),
                };
                entry.insert(key.into(), Value::String(value));
            }
            FileOutResult::Cached { id, size } => {
                entry.insert("cached".into(), Value::String(id.clone()));
                entry.insert("size".into(), json!(size));
            }
        }
        files.insert(name.clone(), Value::Object(entry));
    }
    map.insert("files_out".into(), Value::Object(files));
    map.insert(
        "file_errors".into(),
        Value::Array(
            r.file_errors
                .iter()
                .map(|e| json!({"path": e.path, "reason": e.reason}))
                .collect(),
        ),
    );
    Value::Object(map)
}

/// The response as JSON.
pub fn response(r: &Response) -> Value {
    let mut map = Map::new();
    map.insert("schema".into(), json!(SCHEMA));
    map.insert("id".into(), r.id.clone().unwrap_or(Value::Null));
    if let Some(e) = &r.error {
        map.insert(
            "error".into(),
            json!({"path": e.path, "message": e.message}),
        );
        return Value::Object(map);
    }
    map.insert(
        "results".into(),
        Value::Array(r.results.iter().map(result).collect()),
    );
    if !r.pipes.is_empty() {
        let mut pipes = Map::new();
        let mut totals = Map::new();
        for (name, rec) in &r.pipes {
            put_bytes(&mut pipes, name, &rec.bytes);
            totals.insert(name.clone(), json!(rec.total));
        }
        map.insert("pipes".into(), Value::Object(pipes));
        map.insert("pipe_bytes".into(), Value::Object(totals));
    }
    Value::Object(map)
}

impl Request {
    /// Reads a request from its JSON text (schema 1); a fault is named by its JSON path.
    pub fn from_json(text: &str) -> Result<Request, RequestError> {
        parse(text)
    }

    /// The `id` of a request's JSON text, even when the text is no valid request, so an
    /// error response can still carry it.
    pub fn id_of(text: &str) -> Option<Value> {
        id_of(text)
    }
}

impl Response {
    /// The response as one line of JSON.
    pub fn to_json(&self) -> String {
        response(self).to_string()
    }

    /// The response as indented JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&response(self)).unwrap_or_else(|_| self.to_json())
    }
}
