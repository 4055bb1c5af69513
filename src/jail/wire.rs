//! The run's order to a jail made ahead (see [`super::pool`]): everything the child
//! needs, as flat bytes, since it was cloned before the run was planned and shares no
//! memory with the planner. The child decodes it once, then runs the same setup a
//! freshly cloned jail runs (see `child::Prepared`).
//!
//! The format is moat's own and lives only between two processes of one moat build: a
//! length-prefixed list of fields in a fixed order. A truncated or malformed order is
//! refused whole; nothing here trusts a length it has not checked against what is left.

use std::ffi::CString;

/// Appends fields.
#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.bytes.extend_from_slice(v);
    }
    pub fn cstr(&mut self, v: &CString) {
        self.bytes(v.as_bytes());
    }
    pub fn opt_cstr(&mut self, v: Option<&CString>) {
        self.bool(v.is_some());
        if let Some(s) = v {
            self.cstr(s);
        }
    }
    pub fn cstrs(&mut self, v: &[CString]) {
        self.u64(v.len() as u64);
        for s in v {
            self.cstr(s);
        }
    }
}

/// A malformed order: which field could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Reads fields back, in the order they were written.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        if n > self.rest.len() {
            return Err(Malformed(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        Ok(self.take(1, what)?[0])
    }
    pub fn bool(&mut self, what: &'static str) -> Result<bool, Malformed> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed(what)),
        }
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32, Malformed> {
        Ok(self.u32(what)? as i32)
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, Malformed> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A count of items that each take at least `min` bytes: never more than what is
    /// left could hold, so a forged count cannot make the reader allocate.
    pub fn count(&mut self, min: usize, what: &'static str) -> Result<usize, Malformed> {
        let n = self.u64(what)?;
        if n > (self.rest.len() / min.max(1)) as u64 {
            return Err(Malformed(what));
        }
        Ok(n as usize)
    }
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let n = self.count(1, what)?;
        self.take(n, what)
    }
    pub fn cstr(&mut self, what: &'static str) -> Result<CString, Malformed> {
        CString::new(self.bytes(what)?).map_err(|_| Malformed(what))
    }
    pub fn opt_cstr(&mut self, what: &'static str) -> Result<Option<CString>, Malformed> {
        Ok(if self.bool(what)? {
            Some(self.cstr(what)?)
        } else {
            None
        })
    }
    pub fn cstrs(&mut self, what: &'static str) -> Result<Vec<CString>, Malformed> {
        let n = self.count(8, what)?;
        (0..n).map(|_| self.cstr(what)).collect()
    }
    /// Whether every byte was read.
    pub fn finished(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_back_in_order_and_a_short_read_is_refused() {
        let mut w = Writer::default();
        w.u8(7);
        w.bool(true);
        w.u32(0xdead_beef);
        w.i32(-3);
        w.u64(u64::MAX);
        w.cstr(&CString::new("abc").unwrap());
        w.opt_cstr(None);
        w.cstrs(&[CString::new("x").unwrap(), CString::new("").unwrap()]);
        let mut r = Reader::new(&w.bytes);
        assert_eq!(r.u8("a"), Ok(7));
        assert_eq!(r.bool("b"), Ok(true));
        assert_eq!(r.u32("c"), Ok(0xdead_beef));
        assert_eq!(r.i32("d"), Ok(-3));
        assert_eq!(r.u64("e"), Ok(u64::MAX));
        assert_eq!(r.cstr("f").unwrap().as_bytes(), b"abc");
        assert_eq!(r.opt_cstr("g"), Ok(None));
        assert_eq!(r.cstrs("h").unwrap().len(), 2);
        assert!(r.finished());
        for cut in 0..w.bytes.len() {
            let mut r = Reader::new(&w.bytes[..cut]);
            let all = (|| -> Result<(), Malformed> {
                r.u8("a")?;
                r.bool("b")?;
                r.u32("c")?;
                r.i32("d")?;
                r.u64("e")?;
                r.cstr("f")?;
                r.opt_cstr("g")?;
                r.cstrs("h")?;
                Ok(())
            })();
            assert!(all.is_err(), "cut at {cut} read whole");
        }
    }

    #[test]
    fn a_forged_count_or_a_nul_is_refused() {
        let mut w = Writer::default();
        w.u64(1 << 40);
        assert!(Reader::new(&w.bytes).bytes("n").is_err());
        assert!(Reader::new(&w.bytes).cstrs("n").is_err());
        let mut w = Writer::default();
        w.bytes(b"a\0b");
        assert_eq!(Reader::new(&w.bytes).cstr("s"), Err(Malformed("s")));
        let mut w = Writer::default();
        w.u8(2);
        assert!(Reader::new(&w.bytes).bool("b").is_err());
    }
}
