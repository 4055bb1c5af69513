//! The `moat` command line: parses arguments and calls the library.

use clap::{Args, Parser, Subcommand};
use moat::{Overrides, Plan, Policy};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "moat",
    version,
    about = "Run one untrusted program in a jail and report one exact verdict"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program in the jail.
    Run(RunArgs),
    /// Print what `run` would build, without running anything.
    Plan(RunArgs),
    /// Tell what this host supports and how to fix what is missing.
    Check {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Profile name (looked up in ~/.config/moat/profiles, /etc/moat/profiles, then the
    /// built-in ones) or path to a TOML file.
    #[arg(long, short, default_value = "default")]
    profile: String,
    /// Write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Print a one-line summary to stderr.
    #[arg(long)]
    summary: bool,
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
    /// Wall-clock limit, e.g. 5s or 1500ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    wall_time: Option<std::time::Duration>,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    moat::units::parse_duration(s).map_err(|e| e.to_string())
}

fn overrides(a: &RunArgs) -> Result<Overrides, moat::Error> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut binds = Vec::new();
    for (specs, rw) in [(&a.bind, false), (&a.bind_rw, true)] {
        for spec in specs {
            binds.push(moat::policy::Bind::parse(spec, rw, &cwd)?);
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
        wall_time: a.wall_time,
    })
}

use moat::PolicyError;

fn build(a: &RunArgs) -> Result<Plan, moat::Error> {
    let policy = Policy::load(&a.profile, &overrides(a)?)?;
    Ok(Plan::build(policy, &a.command)?)
}

fn write_report(a: &RunArgs, outcome: &moat::Outcome) {
    if let Some(path) = &a.report {
        if let Err(e) = std::fs::write(path, outcome.to_json() + "\n") {
            eprintln!("moat: cannot write the report to {}: {e}", path.display());
        }
    }
    if a.summary {
        eprintln!("{}", outcome.summary());
    }
}

fn run(a: &RunArgs) -> u8 {
    let outcome = match build(a).and_then(|plan| moat::run(&plan).map_err(moat::Error::from)) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("moat: {e}");
            let outcome = e.to_outcome();
            write_report(a, &outcome);
            return outcome.exit_code() as u8;
        }
    };
    if let Some(err) = &outcome.error {
        eprintln!("moat: {}", err.message);
    }
    if let Some(v) = &outcome.violation {
        eprintln!(
            "moat: violation: {} (nr {}, arch {}) is not allowed by profile {}",
            v.syscall, v.nr, v.arch, a.profile
        );
    }
    write_report(a, &outcome);
    outcome.exit_code() as u8
}

/// Makes sure fds 0, 1 and 2 are open (on /dev/null if the caller closed them): the
/// jail's program gets exactly these three, and a pipe moat opens must never land on one.
fn ensure_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            // SAFETY: open returns the lowest free descriptor, which is `fd`.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

fn main() -> ExitCode {
    ensure_stdio();
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Run(a) => run(a),
        Command::Plan(a) => match build(a) {
            Ok(plan) => {
                use std::io::Write;
                // A reader that stops early (`moat plan | head`) is not an error.
                let _ = write!(std::io::stdout().lock(), "{plan}");
                0
            }
            Err(e) => {
                eprintln!("moat: {e}");
                e.to_outcome().exit_code() as u8
            }
        },
        Command::Check { json } => {
            let report = moat::check::probe();
            use std::io::Write;
            let text = if *json {
                serde_json::to_string_pretty(&report).expect("the findings serialize") + "\n"
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
