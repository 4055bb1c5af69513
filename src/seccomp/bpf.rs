//! Classic BPF as seccomp runs it: a small assembler with labels for the filter's
//! hand-written parts, and an interpreter that runs a whole filter on a
//! `seccomp_data`, as the kernel would. The interpreter lets moat ask its own filter
//! what it decided for a call, without trusting anything the sandboxee can set.

/// Offsets into `struct seccomp_data`.
pub const NR: u32 = 0;
pub const ARCH: u32 = 4;
pub const ARGS: u32 = 16;

pub const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
pub const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
pub const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
pub const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
pub const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
pub const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
pub const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
pub const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// A jump target in an [`Asm`] program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum Target {
    /// The next instruction.
    Next,
    At(Label),
}

#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u16,
    k: u32,
    jt: Target,
    jf: Target,
}

/// An assembler for forward-only classic BPF with symbolic jump targets.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// Where each label points, once placed.
    labels: Vec<Option<usize>>,
}

/// A program the assembler could not lay out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("a jump of {0} instructions does not fit classic BPF's 8-bit offset")]
    TooFar(usize),
    #[error("a label was used but never placed, or placed before its jump")]
    Unplaced,
}

impl Asm {
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next instruction emitted.
    pub fn place(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    pub fn load(&mut self, offset: u32) {
        self.push(LD_W_ABS, offset, Target::Next, Target::Next);
    }

    /// `if (A op k) goto yes else goto no`; `None` means the next instruction.
    pub fn jump(&mut self, code: u16, k: u32, yes: Option<Label>, no: Option<Label>) {
        let to = |l: Option<Label>| l.map_or(Target::Next, Target::At);
        self.push(code, k, to(yes), to(no));
    }

    /// `if (A op k) goto target`, however far `target` is: a conditional jump over an
    /// unconditional one, whose offset is 32 bits.
    pub fn goto_if(&mut self, code: u16, k: u32, target: Label) {
        let skip = self.label();
        self.jump(code, k, None, Some(skip));
        self.goto(target);
        self.place(skip);
    }

    /// `if !(A op k) goto target`, however far `target` is.
    pub fn goto_unless(&mut self, code: u16, k: u32, target: Label) {
        let skip = self.label();
        self.jump(code, k, Some(skip), None);
        self.goto(target);
        self.place(skip);
    }

    /// `A &= k`.
    pub fn and(&mut self, k: u32) {
        self.push(AND_K, k, Target::Next, Target::Next);
    }

    pub fn goto(&mut self, label: Label) {
        self.push(JA, 0, Target::At(label), Target::Next);
    }

    pub fn ret(&mut self, value: u32) {
        self.push(RET_K, value, Target::Next, Target::Next);
    }

    fn push(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.insns.push(Insn { code, k, jt, jf });
    }

    /// The instructions with every jump resolved.
    pub fn finish(self) -> Result<Vec<libc::sock_filter>, AsmError> {
        let at = |t: Target, from: usize| -> Result<usize, AsmError> {
            match t {
                Target::Next => Ok(0),
                Target::At(l) => {
                    let to = self.labels[l.0].ok_or(AsmError::Unplaced)?;
                    to.checked_sub(from + 1).ok_or(AsmError::Unplaced)
                }
            }
        };
        let mut out = Vec::with_capacity(self.insns.len());
        for (i, insn) in self.insns.iter().enumerate() {
            let (jt, jf) = (at(insn.jt, i)?, at(insn.jf, i)?);
            let (code, k, jt, jf) = if insn.code == JA {
                // JA's offset is the 32-bit k.
                (
                    JA,
                    u32::try_from(jt).map_err(|_| AsmError::TooFar(jt))?,
                    0,
                    0,
                )
            } else {
                let byte = |d: usize| u8::try_from(d).map_err(|_| AsmError::TooFar(d));
                (insn.code, insn.k, byte(jt)?, byte(jf)?)
            };
            out.push(libc::sock_filter { code, jt, jf, k });
        }
        Ok(out)
    }
}

/// The input a seccomp filter sees: `struct seccomp_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeccompData {
    pub nr: u32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

impl SeccompData {
    /// The 32-bit word at byte offset `k`, as `BPF_LD|BPF_W|BPF_ABS` reads it.
    fn word(&self, k: u32) -> Option<u32> {
        let lo = |v: u64| v as u32;
        let hi = |v: u64| (v >> 32) as u32;
        Some(match k {
            0 => self.nr,
            4 => self.arch,
            8 => lo(self.instruction_pointer),
            12 => hi(self.instruction_pointer),
            16..=60 if k % 4 == 0 => {
                let i = ((k - 16) / 8) as usize;
                if (k - 16) % 8 == 0 {
                    lo(self.args[i])
                } else {
                    hi(self.args[i])
                }
            }
            _ => return None,
        })
    }
}

/// Size of `struct seccomp_data`, for `BPF_LEN` loads.
const DATA_LEN: u32 = 64;

/// Runs `prog` on `data` as the kernel's seccomp would, returning the filter's
/// 32-bit return value. `None` for a program the kernel would have refused (a bad
/// opcode, a load out of bounds, a jump past the end, a division by zero).
pub fn run(prog: &[libc::sock_filter], data: &SeccompData) -> Option<u32> {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    // Classic BPF only jumps forward, so every instruction runs at most once.
    while let Some(i) = prog.get(pc) {
        let code = u32::from(i.code);
        let class = code & 0x07;
        let src_x = code & 0x08 != 0;
        let operand = if src_x { x } else { i.k };
        pc += 1;
        match class {
            c if c == libc::BPF_LD || c == libc::BPF_LDX => {
                let mode = code & 0xe0;
                let value = match mode {
                    m if m == libc::BPF_ABS && c == libc::BPF_LD && code & 0x18 == libc::BPF_W => {
                        data.word(i.k)?
                    }
                    m if m == libc::BPF_IMM => i.k,
                    m if m == libc::BPF_MEM => *mem.get(i.k as usize)?,
                    m if m == libc::BPF_LEN => DATA_LEN,
                    _ => return None,
                };
                if c == libc::BPF_LD {
                    a = value;
                } else {
                    x = value;
                }
            }
            c if c == libc::BPF_ST => *mem.get_mut(i.k as usize)? = a,
            c if c == libc::BPF_STX => *mem.get_mut(i.k as usize)? = x,
            c if c == libc::BPF_ALU => {
                a = match code & 0xf0 {
                    o if o == libc::BPF_ADD => a.wrapping_add(operand),
                    o if o == libc::BPF_SUB => a.wrapping_sub(operand),
                    o if o == libc::BPF_MUL => a.wrapping_mul(operand),
                    o if o == libc::BPF_DIV => a.checked_div(operand)?,
                    o if o == libc::BPF_MOD => a.checked_rem(operand)?,
                    o if o == libc::BPF_OR => a | operand,
                    o if o == libc::BPF_AND => a & operand,
                    o if o == libc::BPF_XOR => a ^ operand,
                    o if o == libc::BPF_LSH => a.checked_shl(operand).unwrap_or(0),
                    o if o == libc::BPF_RSH => a.checked_shr(operand).unwrap_or(0),
                    o if o == libc::BPF_NEG => a.wrapping_neg(),
                    _ => return None,
                }
            }
            c if c == libc::BPF_JMP => {
                let op = code & 0xf0;
                if op == libc::BPF_JA {
                    pc = pc.checked_add(i.k as usize)?;
                    continue;
                }
                let taken = match op {
                    o if o == libc::BPF_JEQ => a == operand,
                    o if o == libc::BPF_JGT => a > operand,
                    o if o == libc::BPF_JGE => a >= operand,
                    o if o == libc::BPF_JSET => a & operand != 0,
                    _ => return None,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            c if c == libc::BPF_RET => {
                return Some(match code & 0x18 {
                    r if r == libc::BPF_K => i.k,
                    r if r == libc::BPF_A => a,
                    _ => return None,
                })
            }
            c if c == libc::BPF_MISC => match code & 0xf8 {
                m if m == libc::BPF_TAX => x = a,
                m if m == libc::BPF_TXA => a = x,
                _ => return None,
            },
            _ => return None,
        }
    }
    // Falling off the end is something the kernel's checker refuses.
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembles_forward_jumps_and_runs_them() {
        let mut asm = Asm::default();
        let (yes, no) = (asm.label(), asm.label());
        asm.load(NR);
        asm.jump(JEQ_K, 39, Some(yes), None);
        asm.load(ARGS);
        asm.jump(JSET_K, 0x10, Some(yes), Some(no));
        asm.place(yes);
        asm.ret(7);
        asm.place(no);
        asm.ret(9);
        let prog = asm.finish().unwrap();
        let call = |nr, arg0| {
            let mut args = [0; 6];
            args[0] = arg0;
            run(
                &prog,
                &SeccompData {
                    nr,
                    args,
                    ..Default::default()
                },
            )
        };
        assert_eq!(call(39, 0), Some(7));
        assert_eq!(call(1, 0x10), Some(7));
        assert_eq!(call(1, 0x1_0000_0001), Some(9));
    }

    #[test]
    fn refuses_what_the_kernel_refuses() {
        let unplaced = {
            let mut asm = Asm::default();
            let l = asm.label();
            asm.goto(l);
            asm.finish()
        };
        assert_eq!(unplaced, Err(AsmError::Unplaced));
        let mut asm = Asm::default();
        let far = asm.label();
        asm.load(NR);
        asm.jump(JEQ_K, 1, Some(far), None);
        for _ in 0..300 {
            asm.ret(0);
        }
        asm.place(far);
        asm.ret(1);
        assert_eq!(asm.finish(), Err(AsmError::TooFar(300)));
        // A load past seccomp_data and a program without a return.
        let bad = [libc::sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 64,
        }];
        assert_eq!(run(&bad, &SeccompData::default()), None);
        assert_eq!(run(&bad[..0], &SeccompData::default()), None);
    }

    #[test]
    fn reads_both_halves_of_an_argument() {
        let d = SeccompData {
            args: [0, 0x1122_3344_5566_7788, 0, 0, 0, 0],
            ..Default::default()
        };
        assert_eq!(d.word(ARGS + 8), Some(0x5566_7788));
        assert_eq!(d.word(ARGS + 12), Some(0x1122_3344));
        assert_eq!(d.word(3), None);
    }
}
