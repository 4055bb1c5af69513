//! Rules: what a policy says about one syscall, with its argument conditions.

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Action {
    Allow,
    Errno(i32),
}

/// How an argument is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`
    MaskedEq(u64),
}

/// One argument condition of a rule: `arg{arg} {op} {value}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Condition {
    pub arg: u32,
    pub op: CmpOp,
    pub value: u64,
}

/// Constants a condition may name instead of a number (`|` combines them).
const CONSTANTS: &[(&str, u64)] = &[
    ("O_RDONLY", libc::O_RDONLY as u64),
    ("O_WRONLY", libc::O_WRONLY as u64),
    ("O_RDWR", libc::O_RDWR as u64),
    ("O_ACCMODE", libc::O_ACCMODE as u64),
    ("O_CREAT", libc::O_CREAT as u64),
    ("O_TRUNC", libc::O_TRUNC as u64),
    ("O_APPEND", libc::O_APPEND as u64),
    ("O_EXCL", libc::O_EXCL as u64),
    ("O_TMPFILE", libc::O_TMPFILE as u64),
    ("CLONE_VM", libc::CLONE_VM as u64),
    ("CLONE_FS", libc::CLONE_FS as u64),
    ("CLONE_FILES", libc::CLONE_FILES as u64),
    ("CLONE_SIGHAND", libc::CLONE_SIGHAND as u64),
    ("CLONE_THREAD", libc::CLONE_THREAD as u64),
    ("CLONE_VFORK", libc::CLONE_VFORK as u64),
    ("CLONE_SETTLS", libc::CLONE_SETTLS as u64),
    ("CLONE_PARENT_SETTID", libc::CLONE_PARENT_SETTID as u64),
    ("CLONE_CHILD_SETTID", libc::CLONE_CHILD_SETTID as u64),
    ("CLONE_CHILD_CLEARTID", libc::CLONE_CHILD_CLEARTID as u64),
    ("CLONE_UNTRACED", libc::CLONE_UNTRACED as u64),
    ("CLONE_NEWNS", libc::CLONE_NEWNS as u64),
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER as u64),
    ("CLONE_NEWPID", libc::CLONE_NEWPID as u64),
    ("CLONE_NEWNET", libc::CLONE_NEWNET as u64),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC as u64),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS as u64),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP as u64),
    ("SIGCHLD", libc::SIGCHLD as u64),
    ("AF_UNIX", libc::AF_UNIX as u64),
    ("AF_INET", libc::AF_INET as u64),
    ("AF_INET6", libc::AF_INET6 as u64),
    ("AF_NETLINK", libc::AF_NETLINK as u64),
    ("PROT_READ", libc::PROT_READ as u64),
    ("PROT_WRITE", libc::PROT_WRITE as u64),
    ("PROT_EXEC", libc::PROT_EXEC as u64),
    ("MAP_SHARED", libc::MAP_SHARED as u64),
    ("MAP_PRIVATE", libc::MAP_PRIVATE as u64),
    ("MAP_ANONYMOUS", libc::MAP_ANONYMOUS as u64),
    ("SIGKILL", libc::SIGKILL as u64),
];

fn parse_value(text: &str) -> Result<u64, String> {
    let mut total = 0u64;
    for part in text.split('|') {
        let part = part.trim();
        let v = if let Some(hex) = part.strip_prefix("0x") {
            u64::from_str_radix(hex, 16).ok()
        } else if let Some(oct) = part.strip_prefix("0o") {
            u64::from_str_radix(oct, 8).ok()
        } else if part.starts_with(|c: char| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            CONSTANTS.iter().find(|(n, _)| *n == part).map(|(_, v)| *v)
        };
        total |= v.ok_or_else(|| {
            format!(
                "`{part}` is neither a number nor a known constant ({})",
                CONSTANTS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    }
    Ok(total)
}

impl Condition {
    /// Parses `argN OP VALUE` (OP one of == != < <= > >=) or `argN & MASK == VALUE`.
    /// Values are decimal, 0x hex, 0o octal or constants such as `O_WRONLY|O_RDWR`.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let syntax =
            || format!("`{text}`: expected `argN OP VALUE` or `argN & MASK == VALUE` (N 0 to 5)");
        let arg = words
            .first()
            .and_then(|w| w.strip_prefix("arg"))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n < 6)
            .ok_or_else(syntax)?;
        match words.as_slice() {
            [_, "&", mask, "==", value] => Ok(Condition {
                arg,
                op: CmpOp::MaskedEq(parse_value(mask)?),
                value: parse_value(value)?,
            }),
            [_, op, value] => {
                let op = match *op {
                    "==" => CmpOp::Eq,
                    "!=" => CmpOp::Ne,
                    "<" => CmpOp::Lt,
                    "<=" => CmpOp::Le,
                    ">" => CmpOp::Gt,
                    ">=" => CmpOp::Ge,
                    _ => return Err(syntax()),
                };
                Ok(Condition {
                    arg,
                    op,
                    value: parse_value(value)?,
                })
            }
            _ => Err(syntax()),
        }
    }
}

impl Condition {
    /// Whether some argument value meets the condition. One that none can meet would
    /// make its rule dead (or, in libraries that mask the value too, quietly a
    /// different rule), so it is refused where it is written.
    pub fn satisfiable(&self) -> Result<(), String> {
        match self.op {
            CmpOp::MaskedEq(mask) if self.value & !mask != 0 => Err(format!(
                "`{self}` can never hold: the value has bits ({:#x}) outside the mask",
                self.value & !mask
            )),
            CmpOp::Lt if self.value == 0 => {
                Err(format!("`{self}` can never hold: arguments are unsigned"))
            }
            CmpOp::Gt if self.value == u64::MAX => Err(format!(
                "`{self}` can never hold: no argument is above {:#x}",
                u64::MAX
            )),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::MaskedEq(m) => {
                return write!(f, "arg{} & {m:#x} == {:#x}", self.arg, self.value)
            }
        };
        write!(f, "arg{} {op} {:#x}", self.arg, self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    pub name: String,
    pub nr: i32,
    pub action: Action,
    /// All must hold (at most one per argument); none: the rule always applies.
    pub conditions: Vec<Condition>,
    /// Where the rule came from (`group startup`, `allow`, `errno`, `core`), for `moat plan`.
    pub origin: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse() {
        let c = Condition::parse("arg0 <= 2").unwrap();
        assert_eq!((c.arg, c.op, c.value), (0, CmpOp::Le, 2));
        let c = Condition::parse("arg2 & O_WRONLY|O_RDWR|O_CREAT == 0").unwrap();
        assert_eq!(
            c.op,
            CmpOp::MaskedEq((libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT) as u64)
        );
        assert_eq!(c.to_string(), "arg2 & 0x43 == 0x0");
        assert!(Condition::parse("arg6 == 1").is_err());
        assert!(Condition::parse("arg0 =~ 1").is_err());
        assert!(Condition::parse("arg0 == O_NOPE")
            .unwrap_err()
            .contains("O_NOPE"));
        let never = |t: &str| Condition::parse(t).unwrap().satisfiable().unwrap_err();
        assert!(never("arg0 & 1 == 2").contains("bits (0x2) outside the mask"));
        assert!(never("arg1 < 0").contains("unsigned"));
        assert!(never("arg1 > 0xffffffffffffffff").contains("no argument is above"));
        for ok in [
            "arg0 & 3 == 2",
            "arg0 <= 0",
            "arg0 >= 0xffffffffffffffff",
            "arg0 != 0",
        ] {
            assert!(Condition::parse(ok).unwrap().satisfiable().is_ok(), "{ok}");
        }
    }
}
