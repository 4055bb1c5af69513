//! Property tests of what reads a person's input: profile text (well-formed TOML with
//! odd values, and bytes that are not TOML at all), conditions, units and limits
//! never panic; they parse or fail with a located message.

use super::policy::{Overrides, Policy};
use super::profile::Profile;
use crate::seccomp::Condition;
use proptest::prelude::*;

/// Keys a profile has, and a few it has not.
const KEYS: &[&str] = &[
    "description",
    "extends",
    "hostname",
    "uid",
    "gid",
    "cwd",
    "allow_exec",
    "args",
    "library_path",
    "env",
    "proc",
    "dev",
    "template",
    "src",
    "dst",
    "rw",
    "optional",
    "path",
    "size",
    "cpu_time",
    "wall_time",
    "memory",
    "processes",
    "output",
    "file_size",
    "stack",
    "open_files",
    "address_space",
    "groups",
    "allow",
    "remove",
    "name",
    "when",
    "errno",
    "socket",
    "ptrace",
    "nonsense",
];

const TABLES: &[&str] = &[
    "",
    "[process]",
    "[process.env]",
    "[filesystem]",
    "[[filesystem.bind]]",
    "[[filesystem.tmpfs]]",
    "[limits]",
    "[syscalls]",
    "[syscalls.errno]",
    "[[syscalls.rule]]",
    "[nonsense]",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<bool>().prop_map(|v| v.to_string()),
        Just("1e400".to_string()),
        Just("-0".to_string()),
        "[ -~]{0,24}".prop_map(|s| toml_string(&s)),
        prop::sample::select(vec![
            "\"/\"",
            "\"..\"",
            "\"/a\\u0000b\"",
            "\"5s\"",
            "\"0ms\"",
            "\"0.0001ms\"",
            "\"1 EiB\"",
            "\"64MB\"",
            "\"arg0 & 1 == 2\"",
            "\"arg9 == 1\"",
            "\"EPERM\"",
            "\"4096\"",
            "\"default\"",
            "\"/dev/zero\"",
            "\"{memory_mib*3/0}\"",
            "\"{memory_mib\"",
            "\"read\"",
            "\"clone3\"",
            "\"\"",
        ])
        .prop_map(str::to_string),
    ]
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => scalar(),
        1 => prop::collection::vec(scalar(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        1 => prop::collection::vec((prop::sample::select(KEYS), scalar()), 0..3).prop_map(|v| {
            let items: Vec<String> = v.iter().map(|(k, x)| format!("{k} = {x}")).collect();
            format!("{{ {} }}", items.join(", "))
        }),
    ]
}

fn profile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(TABLES),
            prop::collection::vec((prop::sample::select(KEYS), value()), 0..5),
        ),
        0..6,
    )
    .prop_map(|sections| {
        let mut text = String::new();
        for (table, lines) in sections {
            text += table;
            text += "\n";
            for (k, v) in lines {
                text += &format!("{k} = {v}\n");
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn profiles_parse_or_fail_with_a_location(text in profile_text()) {
        match Profile::parse(&text, "fuzz.toml") {
            Ok(p) => {
                if let Err(e) = Policy::resolve(&p, &Overrides::default()) {
                    let msg = e.to_string();
                    prop_assert!(!msg.is_empty());
                    prop_assert!(!msg.contains(" { "), "a Rust struct in {msg}");
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("fuzz.toml:")),
        }
    }

    #[test]
    fn bytes_that_are_not_toml_are_refused_with_a_location(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = Profile::parse_bytes(&bytes, "fuzz.toml") {
            prop_assert!(e.to_string().starts_with("fuzz.toml:"));
        }
    }

    #[test]
    fn conditions_and_units_never_panic(text in "[ -~]{0,40}") {
        let _ = Condition::parse(&text).map(|c| c.satisfiable());
        for spec in super::limits::TABLE {
            let _ = spec.parse(&text);
        }
        let _ = super::units::parse_size(&text);
        let _ = super::units::parse_duration(&text);
        let _ = super::args::check(&text);
    }
}
