//! What to tell a person about a violation: which syscall, and what would allow it.

use crate::config::policy::Policy;
use crate::config::syscalls::groups;
use crate::report::outcome::Violation;
use crate::seccomp::{self, Rule};

/// What to tell a person about a violation: which syscall, and what would allow it.
pub fn violation_advice(v: &Violation, policy: &Policy) -> String {
    // The name a person would pass back to --profile: the last layer, without the
    // built-in: prefix.
    let last = policy
        .profile
        .rsplit(" <- ")
        .next()
        .unwrap_or(&policy.profile);
    let profile = last.strip_prefix("built-in:").unwrap_or(last);
    let what = format!(
        "{} (nr {}, arch {}) is not allowed by profile {profile}",
        v.syscall, v.nr, v.arch
    );
    if v.arch != "x86_64" {
        return format!("{what}; calls of a foreign architecture are never allowed");
    }
    if seccomp::core::is_denied(&v.syscall) {
        return format!("{what}; it is in moat's always-denied core, which no profile can allow");
    }
    if v.syscall == "execve" || v.syscall == "execveat" {
        return format!(
            "{what}; set `allow_exec = true` under [process] to let the program start others"
        );
    }
    let rules: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|r| r.name == v.syscall)
        .collect();
    let args = v
        .args
        .iter()
        .map(|a| format!("{a:#x}"))
        .collect::<Vec<_>>()
        .join(", ");
    if rules.iter().any(|r| r.conditions.is_empty()) {
        // Allowed outright, so moat's core refused this use of it.
        let why = seccomp::CORE_CONDITIONAL
            .iter()
            .find(|(n, _)| *n == v.syscall)
            .map_or("with these arguments", |(_, why)| why);
        return format!(
            "{} (nr {}, arch {}) with arguments [{args}] is refused by moat's core, which allows it {why}, whatever a profile says",
            v.syscall, v.nr, v.arch
        );
    }
    if !rules.is_empty() {
        let when: Vec<String> = rules
            .iter()
            .map(|r| {
                r.conditions
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" && ")
            })
            .collect();
        return format!(
            "{} (nr {}, arch {}) is allowed by profile {profile} only when {} ({}); this call had arguments [{args}]",
            v.syscall,
            v.nr,
            v.arch,
            when.join(" or "),
            rules[0].origin
        );
    }
    let groups: Vec<String> = groups()
        .iter()
        .filter(|(_, g)| g.syscalls.contains(&v.syscall))
        .map(|(n, _)| format!("`{n}`"))
        .collect();
    let group_hint = if groups.is_empty() {
        String::new()
    } else {
        format!(" (or the group {} under groups)", groups.join(" or "))
    };
    format!(
        "{what}; add it to [syscalls] allow{group_hint}, or run `moat learn --profile {profile} -- PROGRAM` to write a profile that allows what the program needs"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::Overrides;
    use crate::config::profile::Profile;

    fn parse(text: &str) -> Policy {
        Policy::resolve(
            &Profile::parse(text, "t.toml").unwrap(),
            &Overrides::default(),
        )
        .unwrap()
    }

    #[test]
    fn violation_advice_says_what_would_allow_the_call() {
        let v = |name: &str, args: [u64; 6]| Violation {
            syscall: name.into(),
            nr: seccomp::names::syscall_nr(name).unwrap() as u64,
            args,
            arch: "x86_64".into(),
            pid: 1,
        };
        let p = Policy::load("default", &Overrides::default()).unwrap();
        let a = violation_advice(&v("socket", [2, 1, 0, 0, 0, 0]), &p);
        assert!(a.contains("socket (nr 41, arch x86_64) is not allowed by profile default; add it to [syscalls] allow"), "{a}");
        assert!(a.contains("moat learn --profile default"), "{a}");
        let a = violation_advice(&v("pipe2", [0; 6]), &p);
        assert!(a.contains("(or the group `pipes` under groups)"), "{a}");
        let a = violation_advice(&v("ptrace", [0; 6]), &p);
        assert!(a.contains("always-denied core"), "{a}");
        let a = violation_advice(&v("ioctl", [0, 0x5412, 0, 0, 0, 0]), &p);
        assert!(
            a.contains("refused by moat's core, which allows it never TIOCSTI or TIOCLINUX"),
            "{a}"
        );
        let p = parse("[[syscalls.rule]]\nname = \"write\"\nwhen = [\"arg0 >= 1\"]\n");
        let a = violation_advice(&v("write", [0; 6]), &p);
        assert!(a.contains("is allowed by profile t.toml only when arg0 >= 0x1 (rule); this call had arguments [0x0,"), "{a}");
    }
}
