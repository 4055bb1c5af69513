//! The `moat` command line: parses arguments and calls the library.

use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use moat::limits::{Limits, TABLE};
use moat::{Bind, Overrides, Plan, PolicyError};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

// Built for musl (the release build: see .cargo/config.toml), moat uses dlmalloc: musl's
// own allocator returns memory to the kernel so eagerly that one `moat run` made about
// 100 mmap and munmap calls. The jail's children never allocate after fork, so a global
// lock held by another thread at the fork cannot bite.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// `moat --version`: the version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MOAT_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "moat",
    version = VERSION,
    about = "Run one untrusted program in a jail and report one exact verdict"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Say what moat decided and why on stderr: -v the profile file, the program, the
    /// limits' mechanisms, the stages with their times and the verdict; -vv also each
    /// file and mount step; -vvv everything. RUST_LOG (e.g. `moat=debug`) sets the same
    /// when neither -v nor -q is given. By default only errors are shown.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only moat's own failures on stderr (it could not start the run or the service,
    /// write the report, read the request): no violation advice, no log lines (the
    /// report and the exit status still say everything; `moat serve` writes no request
    /// log lines).
    #[arg(short, long, global = true)]
    quiet: bool,
}

/// moat's lines on stderr: errors as `moat: MESSAGE` (as they always were), anything
/// else as `moat: LEVEL MESSAGE`, so a program's own stderr stays apart from them.
struct Lines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Lines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        if level == tracing::Level::ERROR {
            write!(w, "moat: ")?;
        } else {
            write!(w, "moat: {} ", level.as_str().to_ascii_lowercase())?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Sets where moat's events go: -q moat's own failures only, -v info, -vv debug,
/// -vvv trace; without either, RUST_LOG, else errors only.
fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match (quiet, verbose) {
        (true, _) => EnvFilter::new("error,moat::verdict=off"),
        (false, 0) => EnvFilter::try_from_default_env().unwrap_or_else(|e| {
            if std::env::var_os("RUST_LOG").is_some() {
                let _ = writeln!(std::io::stderr(), "moat: RUST_LOG ignored: {e}");
            }
            EnvFilter::new("error")
        }),
        (false, 1) => EnvFilter::new("info"),
        (false, 2) => EnvFilter::new("debug"),
        (false, _) => EnvFilter::new("trace"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A stderr that cannot be written (full, closed) is not a reason to abort:
        // tracing would say so with eprintln!, which panics on that very stderr.
        .log_internal_errors(false)
        .event_format(Lines)
        .try_init();
}

#[derive(Subcommand)]
enum Command {
    /// Run a program in the jail.
    Run(RunArgs),
    /// Run a program with every call outside the profile noted and allowed, then write
    /// a profile (extending the one given) that lets it run.
    Learn(LearnArgs),
    /// Print what `run` would build, without running anything.
    Plan(RunArgs),
    /// Run one request (JSON, schema 1: commands with files in and out, collected
    /// output, pipes) and print its response on stdout.
    Exec(ExecArgs),
    /// Run a stream of requests (JSON Lines on stdin) and write one response line per
    /// request on stdout, in the order asked; files cached by one request are there for
    /// the later ones.
    Batch(BatchArgs),
    /// Start a sandbox service speaking go-judge's REST API (POST /run, /file, /version,
    /// /config) and moat's own requests (POST /moat/run), each run in a fresh jail from
    /// a warm pool.
    Serve(ServeArgs),
    /// List the profiles: the built-in ones and those in the profile directories.
    Profiles,
    /// Tell what this host supports and how to fix what is missing.
    Check {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the shell completion script for SHELL on stdout (e.g. `moat completions
    /// bash > ~/.local/share/bash-completion/completions/moat`).
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print moat's man page (roff) on stdout, or with --dir write moat.1 and a page per
    /// command (moat-run.1, …) into DIR (e.g. ~/.local/share/man/man1).
    Man {
        /// Write every page into this directory (made if missing) instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Writes the completion script for `shell` to stdout.
fn completions(shell: clap_complete::Shell) -> u8 {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "moat", &mut out);
    // A reader that stops early (`| head`) is not an error.
    let _ = std::io::stdout().lock().write_all(&out);
    0
}

/// Renders the man page of `cmd` (roff).
fn man_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}

/// Prints moat.1, or writes it and one page per command into `dir`.
fn man(dir: Option<&std::path::Path>) -> u8 {
    let cmd = <Cli as clap::CommandFactory>::command();
    let Some(dir) = dir else {
        return match man_page(cmd) {
            Ok(page) => {
                let _ = std::io::stdout().lock().write_all(&page);
                0
            }
            Err(e) => {
                say(format!("moat: cannot render the man page: {e}"));
                1
            }
        };
    };
    let write_all = || -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        let mut pages = vec![("moat".to_string(), cmd.clone())];
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            // `moat-run(1)` is named and titled as man(1) finds it.
            let name = format!("moat-{}", sub.get_name());
            pages.push((name.clone(), sub.clone().name(name)));
        }
        for (name, page) in pages {
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, man_page(page)?)?;
            written.push(path);
        }
        Ok(written)
    };
    match write_all() {
        Ok(written) => {
            show(format!(
                "moat: wrote {} man pages into {} (try: man moat-run)",
                written.len(),
                dir.display()
            ));
            0
        }
        Err(e) => {
            say(format!(
                "moat: cannot write the man pages into {}: {e}",
                dir.display()
            ));
            1
        }
    }
}

#[derive(Args)]
struct ExecArgs {
    /// The request: a JSON file, or - for stdin.
    #[arg(value_name = "REQUEST")]
    request: PathBuf,
    /// Indent the response.
    #[arg(long)]
    pretty: bool,
    /// A delegated cgroup v2 directory to create each run's cgroup in.
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
}

#[derive(Args)]
struct BatchArgs {
    /// How many requests run at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: u16,
    /// The most the file cache holds, e.g. 1GiB.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    cache_size: u64,
    /// The longest request line taken, e.g. 256MiB.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    max_request: u64,
    /// A delegated cgroup v2 directory to create each run's cgroup in.
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// Where to listen: unix:PATH (a 0600 socket; default
    /// $XDG_RUNTIME_DIR/moat.sock, or /run/moat/moat.sock for root) or
    /// tcp:HOST:PORT (a non-loopback host needs --auth-token).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Requests must carry `Authorization: Bearer TOKEN` (all but /version, /config,
    /// /healthz and /metrics). Also read from MOAT_AUTH_TOKEN.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MOAT_AUTH_TOKEN",
        hide_env_values = true
    )]
    auth_token: Option<String>,
    /// Runs at once (default: the CPUs this process may use).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    parallelism: Option<u16>,
    /// Jails made ahead and kept ready (0: every jail is made when its run starts).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(0..=256))]
    pre_fork: u16,
    /// The profile of a command that names none ("moatProfile" in a command names one).
    #[arg(long, value_name = "NAME", default_value = "gojudge")]
    profile: String,
    /// The most the file store holds, e.g. 1GiB.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    file_store_size: u64,
    /// How long a stored file is kept, e.g. 10m (default: until deleted).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    file_ttl: Option<std::time::Duration>,
    /// A host directory whose files a request may copy in by "src" (repeatable; none:
    /// no host file but /dev/null).
    #[arg(long, value_name = "DIR")]
    src_prefix: Vec<PathBuf>,
    /// The largest request body, e.g. 64MiB (larger ones are refused before they are
    /// read).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    max_body: u64,
    /// How long running requests may take to finish after SIGTERM before they are
    /// cancelled.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_duration)]
    drain: std::time::Duration,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    moat::units::parse_duration(s).map_err(|e| e.to_string())
}

fn serve(a: &ServeArgs, quiet: bool) -> u8 {
    // SIGTERM, SIGINT and SIGHUP are blocked before any thread exists (the pool's
    // filler among them), so only the waiter of `cancel_on_signals` takes them.
    let _ = stop_signals().thread_block();
    // The pool's fork server is forked next, while this process has one thread.
    let pool = if a.pre_fork > 0 {
        match moat::Pool::start(usize::from(a.pre_fork)) {
            Ok(p) => Some(p),
            Err(e) => {
                say(format!(
                    "moat: cannot start the warm pool: {e}; see `moat check`"
                ));
                return 125;
            }
        }
    } else {
        None
    };
    let listen = match a.listen.as_deref().map(moat::serve::Listen::parse) {
        None => moat::serve::Listen::default_unix(),
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            say(format!("moat: --listen {e}"));
            return 2;
        }
    };
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let opts = moat::serve::ServeOptions {
        listen,
        auth_token: a.auth_token.clone().filter(|t| !t.is_empty()),
        parallelism: a.parallelism.map_or(cpus, usize::from),
        profile: a.profile.clone(),
        store_bytes: a.file_store_size,
        store_ttl: a.file_ttl,
        src_prefix: a.src_prefix.clone(),
        max_body: a.max_body,
        drain: a.drain,
        log: !quiet,
    };
    match moat::serve::serve(opts, pool, cancel_on_signals()) {
        Ok(()) => 0,
        Err(e) => {
            say(format!("moat: {e}"));
            125
        }
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    moat::units::parse_size(s).map_err(|e| e.to_string())
}

#[derive(Args)]
struct LearnArgs {
    /// Where to write the learned profile.
    #[arg(long, value_name = "FILE", default_value = "learned.toml")]
    save: PathBuf,
    #[command(flatten)]
    run: RunArgs,
}

/// How `--help` explains the units of limit values.
fn units_help() -> String {
    format!(
        "Sizes: {}. Durations: ms, s, m, h (fractions allowed: 1.5s).",
        moat::units::SIZE_UNITS
    )
}

#[derive(Args)]
#[command(after_help = units_help())]
struct RunArgs {
    /// Profile name (looked up in ~/.config/moat/profiles, /etc/moat/profiles, then the
    /// built-in ones) or path to a TOML file.
    #[arg(long, short, default_value = "default")]
    profile: String,
    /// Write the JSON report (schema 1, see docs/report.schema.json) to FILE; `-` is
    /// stdout (after the program's own output, when that goes to stdout too).
    /// /dev/stdout, /dev/stderr and /dev/fd/N are written through the descriptor moat
    /// already holds, never reopened.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// What moat's exit status says. `program` (the default): the program's own exit
    /// code, 128+signal, and for moat's verdicts the codes of timeout(1) and the shells
    /// (124 time limit, 137 memory limit, 159 violation, 153 output limit, 125-127 not
    /// run), so a program exiting 124 itself looks like a time limit. `verdict`: 0 only
    /// for ok, then one fixed code per verdict whatever the program exited with:
    /// nonzero_exit 1, signaled 2, violation 3, cpu_time_limit 4, wall_time_limit 5,
    /// memory_limit 6, output_limit 7, cancelled 9, setup_error 125 (126/127: not
    /// executable, not found).
    #[arg(long, value_enum, value_name = "MODE", default_value = "program")]
    exit_status: ExitStatus,
    /// Print a one-line summary to stderr.
    #[arg(long)]
    summary: bool,
    /// Build the plan afresh and keep nothing: the profile, the program and its
    /// libraries are read again even when a plan for the same command is kept in
    /// $XDG_CACHE_HOME/moat/plans.
    #[arg(long)]
    no_cache: bool,
    /// Print to stderr where the run's time went, phase by phase (moat's own start,
    /// planning, each step of the jail, the program, the teardown).
    #[arg(long)]
    timings: bool,
    /// Mount a host path read-only: PATH (same place inside) or SRC:DST.
    #[arg(long, value_name = "PATH")]
    bind: Vec<String>,
    /// Mount a host path writable (and noexec): PATH or SRC:DST.
    #[arg(long, value_name = "PATH")]
    bind_rw: Vec<String>,
    /// Working directory inside the jail.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Add K=V to the program's environment.
    #[arg(long, value_name = "K=V")]
    env: Vec<String>,
    #[command(flatten)]
    limits: LimitFlags,
    /// Read the program's stdin from FILE.
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Write the program's stdout to FILE.
    #[arg(long, value_name = "FILE")]
    stdout: Option<PathBuf>,
    /// Write the program's stderr to FILE.
    #[arg(long, value_name = "FILE")]
    stderr: Option<PathBuf>,
    /// A delegated cgroup v2 directory to create the run's cgroup in.
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

/// What moat's exit status says (`--exit-status`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExitStatus {
    /// The program's exit code, or a conventional code for moat's verdicts.
    Program,
    /// One fixed code per verdict.
    Verdict,
}

impl RunArgs {
    /// The exit status `outcome` gives under `--exit-status`.
    fn exit_code(&self, outcome: &moat::Outcome) -> u8 {
        let code = match self.exit_status {
            ExitStatus::Program => outcome.exit_code(),
            ExitStatus::Verdict => outcome.verdict_exit_code(),
        };
        code as u8
    }
}

/// One flag per row of the limits table (`--cpu-time 2s`, `--memory 256MiB`, …).
struct LimitFlags(Limits);

impl FromArgMatches for LimitFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut limits = Limits::default();
        for spec in TABLE {
            limits.set(spec.limit, m.get_one::<u64>(spec.key).copied());
        }
        Ok(LimitFlags(limits))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for LimitFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for spec in TABLE {
            cmd = cmd.arg(
                Arg::new(spec.key)
                    .long(spec.flag)
                    .value_name(spec.value_name())
                    .help(spec.help)
                    .value_parser(move |s: &str| spec.parse(s).map_err(|e| e.to_string())),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

fn overrides(a: &RunArgs, learn: bool) -> Result<Overrides, moat::Error> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut binds = Vec::new();
    for (specs, rw) in [(&a.bind, false), (&a.bind_rw, true)] {
        for spec in specs {
            binds.push(Bind::parse(spec, rw, &cwd)?);
        }
    }
    let mut env = Vec::new();
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(PolicyError::Option {
                option: "--env",
                value: kv.clone(),
                message: "expected K=V".into(),
            }
            .into());
        };
        env.push((k.to_string(), v.to_string()));
    }
    Ok(Overrides {
        binds,
        cwd: a.cwd.clone(),
        env,
        limits: a.limits.0.clone(),
        learn,
        workdir: None,
    })
}

fn build(a: &RunArgs, learn: bool) -> Result<Plan, moat::Error> {
    build_timed(a, learn, &mut moat::Timings::default())
}

/// As [`build`], through the plan cache unless `--no-cache`, adding the planning
/// phase to `t`.
fn build_timed(a: &RunArgs, learn: bool, t: &mut moat::Timings) -> Result<Plan, moat::Error> {
    let begun = Instant::now();
    let cache = if a.no_cache {
        None
    } else {
        moat::PlanCache::from_env()
    };
    let plan = moat::prepare(
        &a.profile,
        &overrides(a, learn)?,
        &a.command,
        cache.as_ref(),
    )?;
    t.push(
        if plan.from_cache() {
            "plan from the cache: inputs checked, filter compiled"
        } else {
            "plan: profile, ELF and libraries, root tree, filter"
        },
        begun.elapsed(),
    );
    Ok(plan)
}

/// moat's own start, as the kernel accounted it: the CPU time this process used
/// before `main` (the kernel's exec, relocation, the Rust runtime), and when `main`
/// began.
struct Started {
    cpu: Duration,
    main: Instant,
}

impl Started {
    fn now() -> Started {
        let main = Instant::now();
        let cpu = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
            .map(|ru| {
                let tv = |t: nix::sys::time::TimeVal| {
                    Duration::from_secs(t.tv_sec() as u64)
                        + Duration::from_micros(t.tv_usec() as u64)
                };
                tv(ru.user_time()) + tv(ru.system_time())
            })
            .unwrap_or_default();
        Started { cpu, main }
    }
}

/// When `main` began, for `--timings`.
static STARTED: std::sync::OnceLock<Started> = std::sync::OnceLock::new();

/// An error for people on stderr (shown unless -q), through the log: `moat: …`. A
/// stderr that cannot be written (a full disk, a closed pipe) is not a reason to fail
/// the run, let alone to abort: the report still says everything.
fn say(line: impl std::fmt::Display) {
    let line = line.to_string();
    tracing::error!("{}", line.strip_prefix("moat: ").unwrap_or(&line));
}

/// Why a run ended as it did (a violation and what would allow it, a cancelling
/// signal), shown unless -q: said as an error, as the run failed, but not one of moat's
/// own failures, which -q still shows.
fn explain(line: impl std::fmt::Display) {
    tracing::error!(target: "moat::verdict", "{line}");
}

/// What the caller asked to see (`--summary`, `--timings`) on stderr, whatever the log
/// level: not a log line, an answer.
fn show(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Writes the report where asked; false when it could not be (the caller asked for a
/// report and has none, so the run must not look like a success).
fn write_report(a: &RunArgs, outcome: &moat::Outcome) -> bool {
    if a.summary {
        show(outcome.summary());
    }
    let Some(path) = &a.report else {
        return true;
    };
    let text = outcome.to_json() + "\n";
    let written = match held_descriptor(path) {
        Some(fd) => write_to_fd(fd, text.as_bytes()),
        None => std::fs::write(path, text),
    };
    match written {
        Ok(()) => true,
        Err(e) => {
            say(format!(
                "moat: cannot write the report to {}: {e}",
                path.display()
            ));
            false
        }
    }
}

/// The descriptor a report path names when it names one moat already holds: `-` and
/// /dev/stdout are fd 1, /dev/stderr fd 2, /dev/fd/N and /proc/self/fd/N fd N. Writing
/// there through the descriptor, not by opening the path again, is what a caller
/// means: opening /proc/self/fd/1 anew is an open of the pipe or tty it points to, and
/// is refused (EACCES) when that belongs to another user, as a pipe from a root shell
/// into a moat run as uid 65534 does; it would also truncate a file from its start.
fn held_descriptor(path: &std::path::Path) -> Option<i32> {
    let p = path.to_str()?;
    let fd = match p {
        "-" | "/dev/stdout" => 1,
        "/dev/stderr" => 2,
        _ => p
            .strip_prefix("/dev/fd/")
            .or_else(|| p.strip_prefix("/proc/self/fd/"))?
            .parse()
            .ok()?,
    };
    Some(fd)
}

/// Writes all of `bytes` to the open descriptor `fd` (left open).
fn write_to_fd(fd: i32, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::fd::BorrowedFd;
    // SAFETY: F_GETFD only asks whether `fd` is open; borrowing it is sound only if so.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above) and stays open for the borrow: moat closes
    // none of its standard descriptors, and nothing else runs on this thread meanwhile.
    let held = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut file = std::fs::File::from(held.try_clone_to_owned()?);
    file.write_all(bytes)
}

/// Exit status when the report asked for could not be written.
const NO_REPORT: u8 = 125;

/// Builds and runs; reports errors and the verdict on stderr and in the report.
/// Err carries the exit status of a run that could not start.
fn run_as(a: &RunArgs, learn: bool) -> Result<(Plan, moat::Outcome), u8> {
    let options = moat::RunOptions {
        stdin: a.stdin.clone(),
        stdout: a.stdout.clone(),
        stderr: a.stderr.clone(),
        cgroup: a.cgroup.clone(),
        cancel: Some(cancel_by_handlers()),
        pool: None,
    };
    let mut timings = moat::Timings::default();
    if let Some(s) = STARTED.get() {
        timings.push("moat's start before main (CPU time)", s.cpu);
        timings.push("command line parsed", s.main.elapsed());
    }
    let ran = build_timed(a, learn, &mut timings).and_then(|plan| {
        let outcome = moat::run_with(&plan, &options)?;
        Ok((plan, outcome))
    });
    let (plan, outcome) = match ran {
        Ok(r) => r,
        Err(e) => {
            say(format!("moat: {e}"));
            let outcome = e.to_outcome();
            if !write_report(a, &outcome) {
                return Err(NO_REPORT);
            }
            return Err(a.exit_code(&outcome));
        }
    };
    if let Some(err) = &outcome.error {
        say(format!("moat: {}", err.message));
    }
    if let Some(v) = &outcome.violation {
        explain(format!(
            "violation: {}",
            moat::violation_advice(v, plan.policy())
        ));
    }
    if let Some(signal) = outcome.cancelled_by {
        explain(format!(
            "cancelled by signal {signal}: the jail was ended and everything it held removed"
        ));
    }
    let reporting = Instant::now();
    let written = write_report(a, &outcome);
    if a.timings {
        timings.extend(&outcome.timings);
        timings.push("verdict and report", reporting.elapsed());
        show(format!("moat: where the run's time went\n{timings}"));
    }
    if !written {
        return Err(NO_REPORT);
    }
    Ok((plan, outcome))
}

fn run(a: &RunArgs) -> u8 {
    match run_as(a, false) {
        Ok((_, outcome)) => a.exit_code(&outcome),
        Err(code) => code,
    }
}

/// The token that ends this process's run when moat gets SIGTERM, SIGINT or SIGHUP:
/// the signals are blocked and a thread waits for them, so the run ends through the
/// monitor (jail killed, report written, cgroups removed) and moat exits 128+signal.
/// The signals that stop moat: SIGTERM, SIGINT and SIGHUP.
fn stop_signals() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        set.add(sig);
    }
    set
}

fn cancel_on_signals() -> moat::Cancel {
    static TOKEN: std::sync::OnceLock<moat::Cancel> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let token = moat::Cancel::new();
            let set = stop_signals();
            // Blocked in this thread before any other exists, so in every thread after.
            if set.thread_block().is_ok() {
                let waiter = token.clone();
                let spawned = std::thread::Builder::new()
                    .name("signals".into())
                    .spawn(move || loop {
                        if let Ok(sig) = set.wait() {
                            waiter.cancel(sig as i32);
                        }
                    });
                if spawned.is_err() {
                    // Without the waiter the signals must not stay blocked.
                    let _ = set.thread_unblock();
                }
            }
            token
        })
        .clone()
}

/// As [`cancel_on_signals`], for `run` and `learn`, which run one jail: the token is
/// cancelled from signal handlers (it takes no lock there), so no thread has to be
/// started and joined on every run. As with the blocked signals `cancel_on_signals`
/// waits for, a signal the caller set to be ignored (SIGINT for a background job of a
/// script) still ends the run: moat's own handling replaces the disposition it got.
fn cancel_by_handlers() -> moat::Cancel {
    static TOKEN: std::sync::OnceLock<moat::Cancel> = std::sync::OnceLock::new();
    extern "C" fn on_signal(sig: libc::c_int) {
        if let Some(token) = TOKEN.get() {
            token.cancel_from_signal_handler(sig);
        }
    }
    let token = TOKEN.get_or_init(moat::Cancel::new).clone();
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: sigaction with a handler that only calls the token's lock-free cancel
        // (atomics and one system call per jail), and SA_RESTART, so no call of moat's
        // sees EINTR.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    token
}

fn learn(l: &LearnArgs) -> u8 {
    let (plan, outcome) = match run_as(&l.run, true) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let learned = outcome.learned.clone().unwrap_or_default();
    // A base given as a relative path must still be found from where the profile is saved.
    let base = match std::fs::canonicalize(&l.run.profile) {
        Ok(p) if l.run.profile.contains('/') || l.run.profile.ends_with(".toml") => {
            p.display().to_string()
        }
        _ => l.run.profile.clone(),
    };
    let command: Vec<String> = l
        .run
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if outcome.status == moat::Status::Cancelled {
        return l.run.exit_code(&outcome);
    }
    let text = moat::learn::profile_text(&base, &plan, &learned, &outcome.summary(), &command);
    if let Err(e) = std::fs::write(&l.save, text) {
        say(format!("moat: cannot write {}: {e}", l.save.display()));
        return 125;
    }
    show(format!(
        "moat: wrote {} ({} syscalls beyond {}, {} files to bind{}); run it with --profile {}",
        l.save.display(),
        learned.syscalls.len(),
        l.run.profile,
        moat::learn::missing_files(&plan, &learned).len(),
        if learned.exec { ", exec allowed" } else { "" },
        l.save.display()
    ));
    l.run.exit_code(&outcome)
}

/// Whether fd 1 or 2 was closed when moat started. The Rust runtime reopens a closed
/// standard descriptor on /dev/null before `main`, read-write; a shell's `>/dev/null`
/// opens it write-only. So /dev/null held read-write on stdout or stderr is taken to be
/// one the caller closed.
fn was_closed(fd: i32) -> bool {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(format!("/proc/self/fd/{fd}")) else {
        return false;
    };
    let null = meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3);
    // SAFETY: F_GETFL only queries the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    null && flags >= 0 && flags & libc::O_ACCMODE == libc::O_RDWR
}

/// Makes sure the jail's program finds fds 0, 1 and 2 (it gets exactly these three,
/// and a pipe moat opens must never land on one). A stdout or stderr the caller closed
/// becomes a pipe nobody reads: what is written there goes nowhere, and the report says
/// so (`output_errors`) rather than count it delivered.
fn ensure_stdio() {
    for fd in 1..3 {
        if !was_closed(fd) {
            continue;
        }
        let mut ends = [-1; 2];
        // SAFETY: pipe2 writes two new descriptors into the array.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
            // SAFETY: dup2 onto `fd` (dropping the runtime's /dev/null; dup2 clears
            // close-on-exec on the copy) and close the two descriptors just made.
            unsafe {
                libc::dup2(ends[1], fd);
                libc::close(ends[0]);
                libc::close(ends[1]);
            }
        }
    }
}

/// Exit status of `moat exec` for a request that cannot run (as a usage error).
const BAD_REQUEST: u8 = 2;

/// The largest request `moat exec` reads.
const MAX_REQUEST: u64 = 1 << 30;

fn read_request(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    let got = if path == std::path::Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_REQUEST)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_REQUEST).read_to_string(&mut text))
    };
    match got {
        Ok(_) => Ok(text),
        Err(e) => Err(format!("cannot read the request {}: {e}", path.display())),
    }
}

/// Writes a response line; false when stdout is gone.
fn print_response(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .is_ok()
}

fn exec(a: &ExecArgs) -> u8 {
    let cancel = cancel_on_signals();
    let request = match read_request(&a.request) {
        Err(message) => Err((
            None,
            moat::request::RequestError {
                path: String::new(),
                message,
            },
        )),
        Ok(text) => moat::Request::from_json(&text).map_err(|e| (moat::Request::id_of(&text), e)),
    };
    let response = match request {
        Ok(r) => {
            let opts = moat::request::ExecOptions {
                cgroup: a.cgroup.clone(),
                cancel: Some(cancel.clone()),
                pool: None,
            };
            moat::request::exec_with(&r, &moat::request::FileCache::default(), &opts)
        }
        Err((id, error)) => moat::Response {
            id,
            results: Vec::new(),
            pipes: Default::default(),
            error: Some(error),
        },
    };
    if let Some(e) = &response.error {
        say(format!("moat: bad request: {e}"));
    }
    if !print_response(&render(&response, a.pretty)) {
        return NO_REPORT;
    }
    match (response.error.is_some(), cancel.cancelled()) {
        (true, _) => BAD_REQUEST,
        (false, Some(sig)) if sig > 0 => 128 + sig as u8,
        (false, Some(_)) => NO_REPORT,
        (false, None) => 0,
    }
}

fn render(r: &moat::Response, pretty: bool) -> String {
    if pretty {
        r.to_json_pretty()
    } else {
        r.to_json()
    }
}

fn batch(a: &BatchArgs) -> u8 {
    let cancel = cancel_on_signals();
    let opts = moat::request::BatchOptions {
        parallel: usize::from(a.parallel),
        max_line: usize::try_from(a.max_request).unwrap_or(usize::MAX),
        exec: moat::request::ExecOptions {
            cgroup: a.cgroup.clone(),
            cancel: Some(cancel.clone()),
            pool: None,
        },
    };
    let cache = moat::request::FileCache::new(a.cache_size);
    let input = Box::new(std::io::BufReader::new(std::io::stdin()));
    let mut output = std::io::stdout();
    match moat::request::batch(input, &mut output, &cache, &opts) {
        Ok(summary) => {
            if summary.bad > 0 {
                say(format!(
                    "moat: {} of {} requests were bad (see their error responses)",
                    summary.bad, summary.requests
                ));
            }
            match cancel.cancelled() {
                Some(sig) if sig > 0 => 128 + sig as u8,
                Some(_) => NO_REPORT,
                None => 0,
            }
        }
        Err(e) => {
            say(format!("moat: cannot write the responses: {e}"));
            NO_REPORT
        }
    }
}

fn main() -> ExitCode {
    let _ = STARTED.set(Started::now());
    ensure_stdio();
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let code = match &cli.command {
        Command::Run(a) => run(a),
        Command::Learn(l) => learn(l),
        Command::Plan(a) => match build(a, false) {
            Ok(plan) => {
                // A reader that stops early (`moat plan | head`) is not an error.
                let _ = write!(std::io::stdout().lock(), "{plan}");
                0
            }
            Err(e) => {
                say(format!("moat: {e}"));
                a.exit_code(&e.to_outcome())
            }
        },
        Command::Exec(a) => exec(a),
        Command::Batch(a) => batch(a),
        Command::Serve(a) => serve(a, cli.quiet),
        Command::Profiles => {
            let _ = std::io::stdout()
                .lock()
                .write_all(moat::profile_listing().as_bytes());
            0
        }
        Command::Completions { shell } => completions(*shell),
        Command::Man { dir } => man(dir.as_deref()),
        Command::Check { json } => {
            let report = moat::check::probe();
            let text = if *json {
                serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
            } else {
                report.render()
            };
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            if report.usable() {
                0
            } else {
                1
            }
        }
    };
    ExitCode::from(code)
}
