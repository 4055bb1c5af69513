//! What this CPU supports, as ld.so decides it: the `glibc-hwcaps/x86-64-vN` level,
//! the legacy hwcaps subdirectories and `$PLATFORM`.

use std::path::PathBuf;
use std::sync::OnceLock;

/// `$PLATFORM` as glibc computes it: the kernel's AT_PLATFORM, replaced on Intel
/// CPUs by "haswell" or "xeon_phi" (sysdeps/x86/cpu-features.c).
pub(super) fn platform() -> Option<&'static [u8]> {
    static PLATFORM: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    PLATFORM
        .get_or_init(|| {
            if let Some(p) = cpu::intel_platform() {
                return Some(p.as_bytes().to_vec());
            }
            // SAFETY: getauxval has no preconditions; AT_PLATFORM, when present,
            // points to a NUL-terminated string the kernel placed on our stack,
            // valid for the life of the process.
            let ptr = unsafe { libc::getauxval(libc::AT_PLATFORM) } as *const libc::c_char;
            if ptr.is_null() {
                return None;
            }
            // SAFETY: see above.
            let s = unsafe { std::ffi::CStr::from_ptr(ptr) };
            Some(s.to_bytes().to_vec())
        })
        .as_deref()
}

/// The subdirectories ld.so tries inside each search directory, best first:
/// `glibc-hwcaps/x86-64-v4..v2` the CPU supports, then the legacy hwcaps
/// combinations of "tls", the platform and the hwcap names ("x86_64", "avx512_1").
pub(super) fn hwcaps_subdirs() -> &'static [PathBuf] {
    static SUBDIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    SUBDIRS.get_or_init(|| {
        let mut out: Vec<PathBuf> = Vec::new();
        for level in (2..=4).rev() {
            if cpu::isa_level() >= level {
                out.push(PathBuf::from(format!("glibc-hwcaps/x86-64-v{level}")));
            }
        }
        // glibc builds every subset of these, in this order, counting down from
        // "all of them" with the first component as the most significant bit.
        let mut parts: Vec<String> = vec!["tls".into()];
        if let Some(p) = platform() {
            parts.push(String::from_utf8_lossy(p).into_owned());
        }
        if cpu::has_avx512_1() {
            parts.push("avx512_1".into());
        }
        if cfg!(target_arch = "x86_64") {
            parts.push("x86_64".into());
        }
        let n = parts.len();
        for mask in (1u32..(1 << n)).rev() {
            let mut sub = PathBuf::new();
            for (bit, part) in parts.iter().enumerate() {
                if mask & (1 << (n - 1 - bit)) != 0 {
                    sub.push(part);
                }
            }
            if !out.contains(&sub) {
                out.push(sub);
            }
        }
        out
    })
}

#[cfg(target_arch = "x86_64")]
pub(super) mod cpu {
    use std::arch::x86_64::{__cpuid_count, CpuidResult};

    // Newer compilers consider __cpuid_count safe, older ones (rust-version) not.
    #[allow(unused_unsafe)]
    pub(super) fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
        // SAFETY: CPUID exists on every x86-64 CPU and only reads CPU state.
        unsafe { __cpuid_count(leaf, sub) }
    }

    pub(super) fn max_leaf() -> u32 {
        cpuid(0, 0).eax
    }

    pub(super) fn is_intel() -> bool {
        let r = cpuid(0, 0);
        r.ebx.to_le_bytes() == *b"Genu"
            && r.edx.to_le_bytes() == *b"ineI"
            && r.ecx.to_le_bytes() == *b"ntel"
    }

    pub(super) fn leaf7_ebx() -> u32 {
        if max_leaf() >= 7 {
            cpuid(7, 0).ebx
        } else {
            0
        }
    }

    /// glibc's `get_isa_level` (sysdeps/x86/get-isa-level.h): 1 = baseline.
    pub fn isa_level() -> u32 {
        let osxsave = cpuid(1, 0).ecx & (1 << 27) != 0;
        let lahf = cpuid(0x8000_0000, 0).eax >= 0x8000_0001 && cpuid(0x8000_0001, 0).ecx & 1 != 0;
        let v2 = lahf
            && is_x86_feature_detected!("cmpxchg16b")
            && is_x86_feature_detected!("popcnt")
            && is_x86_feature_detected!("sse3")
            && is_x86_feature_detected!("sse4.1")
            && is_x86_feature_detected!("sse4.2")
            && is_x86_feature_detected!("ssse3");
        let v3 = v2
            && osxsave
            && is_x86_feature_detected!("avx")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("lzcnt")
            && is_x86_feature_detected!("movbe");
        let v4 = v3
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512cd")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl");
        1 + u32::from(v2) + u32::from(v3) + u32::from(v4)
    }

    /// AVX512ER and AVX512PF (Xeon Phi only) are not known to std's detection;
    /// when AVX512CD is usable the OS has enabled the AVX-512 state they need.
    pub(super) fn xeon_phi() -> bool {
        let ebx = leaf7_ebx();
        is_x86_feature_detected!("avx512cd") && ebx & (1 << 27) != 0 && ebx & (1 << 26) != 0
    }

    pub(super) fn avx512er() -> bool {
        is_x86_feature_detected!("avx512cd") && leaf7_ebx() & (1 << 27) != 0
    }

    pub fn intel_platform() -> Option<&'static str> {
        if !is_intel() {
            return None;
        }
        if xeon_phi() {
            return Some("xeon_phi");
        }
        let haswell = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("lzcnt")
            && is_x86_feature_detected!("movbe")
            && is_x86_feature_detected!("popcnt");
        haswell.then_some("haswell")
    }

    /// HWCAP_X86_AVX512_1: Intel, AVX-512 CD/BW/DQ/VL, and not a Xeon Phi.
    pub fn has_avx512_1() -> bool {
        is_intel()
            && is_x86_feature_detected!("avx512cd")
            && !avx512er()
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) mod cpu {
    pub fn isa_level() -> u32 {
        1
    }
    pub fn intel_platform() -> Option<&'static str> {
        None
    }
    pub fn has_avx512_1() -> bool {
        false
    }
}
