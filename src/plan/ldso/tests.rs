//! The dependency resolver against ldd and real programs built for the test, and
//! against hostile files.

use super::elf::*;
use super::error::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use goblin::elf::header::{
    EI_CLASS, EI_DATA, EI_VERSION, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFMAG, ET_DYN, EV_CURRENT,
};

use super::hwcaps::*;
use super::search::*;
use super::*;
use std::collections::BTreeSet;
use std::process::Command;

/// A scratch directory under the system temp dir, unique per test and process,
/// removed on drop. Canonical, so that `$ORIGIN` (a real path) and the paths we
/// build agree.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("moat-elf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Fixture {
            dir: std::fs::canonicalize(&dir).unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn write(&self, rel: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// Runs a compiler in the fixture directory; the tests need a toolchain and
    /// say so plainly when there is none.
    fn cc(&self, compiler: &str, args: &[&str]) {
        let out = Command::new(compiler)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {compiler} (install gcc/g++): {e}"));
        assert!(
            out.status.success(),
            "{compiler} {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn gcc(&self, args: &[&str]) {
        self.cc("gcc", args);
    }

    /// libfoo.so (foo() returns 0) in `rel_dir`, and main.c calling it.
    fn foo_sources(&self) {
        self.write("foo.c", b"int foo(void) { return 0; }\n", 0o644);
        self.write(
            "main.c",
            b"int foo(void);\nint main(void) { return foo(); }\n",
            0o644,
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cache() -> LdCache {
    LdCache::load().expect("/etc/ld.so.cache")
}

/// The files the real loader maps, from `ldd` (which is ld.so in trace mode).
fn ldd(program: &Path, library_path: Option<&str>) -> BTreeSet<PathBuf> {
    let mut cmd = Command::new("ldd");
    cmd.arg(program);
    match library_path {
        Some(p) => cmd.env("LD_LIBRARY_PATH", p),
        None => cmd.env_remove("LD_LIBRARY_PATH"),
    };
    let out = cmd.output().expect("run ldd");
    assert!(out.status.success(), "ldd {}: {:?}", program.display(), out);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut files = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        assert!(!line.contains("not found"), "ldd: {line}");
        let path = match line.split_once(" => ") {
            Some((_, rest)) => rest.split(" (").next().unwrap(),
            None => line.split(" (").next().unwrap(),
        };
        if path.starts_with('/') {
            files.insert(PathBuf::from(path));
        }
    }
    files
}

/// Our answer minus the program (and script interpreters): what ldd lists.
fn loaded(deps: &Dependencies, skip: usize) -> BTreeSet<PathBuf> {
    deps.files[skip..].iter().cloned().collect()
}

fn file_names(deps: &Dependencies) -> Vec<String> {
    deps.files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn runs(program: &Path, library_path: Option<&str>) -> bool {
    let mut cmd = Command::new(program);
    if let Some(p) = library_path {
        cmd.env("LD_LIBRARY_PATH", p);
    } else {
        cmd.env_remove("LD_LIBRARY_PATH");
    }
    cmd.output().unwrap().status.success()
}

#[test]
fn c_program_matches_ldd() {
    let fx = Fixture::new("c");
    fx.write(
        "hello.c",
        b"#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n",
        0o644,
    );
    fx.gcc(&["-o", "hello", "hello.c"]);
    let prog = fx.path("hello");
    let deps = resolve(&prog, &[], &cache()).unwrap();
    assert_eq!(deps.files[0], prog);
    let interp = deps.interpreter.clone().expect("PT_INTERP");
    assert_eq!(interp, Path::new("/lib64/ld-linux-x86-64.so.2"));
    assert_eq!(deps.files[1], interp);
    let names = file_names(&deps);
    assert!(names.contains(&"libc.so.6".to_string()), "{names:?}");
    // libc's own DT_NEEDED on ld-linux-x86-64.so.2 is the interpreter, by
    // soname; it must not be found a second time under another path.
    assert_eq!(
        names
            .iter()
            .filter(|n| *n == "ld-linux-x86-64.so.2")
            .count(),
        1,
        "{:?}",
        deps.files
    );
    assert_eq!(loaded(&deps, 1), ldd(&prog, None));
}

#[test]
fn cxx_program_matches_ldd() {
    let fx = Fixture::new("cxx");
    fx.write(
        "hello.cc",
        b"#include <iostream>\n#include <cmath>\nint main(int c, char **) { std::cout << std::sqrt(double(c)) << std::endl; }\n",
        0o644,
    );
    fx.cc("g++", &["-o", "hello", "hello.cc"]);
    let prog = fx.path("hello");
    let deps = resolve(&prog, &[], &cache()).unwrap();
    let names = file_names(&deps);
    for lib in ["libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", "libc.so.6"] {
        assert!(
            names.iter().any(|n| n == lib),
            "{lib} missing from {names:?}"
        );
    }
    assert_eq!(loaded(&deps, 1), ldd(&prog, None));
    let unique: BTreeSet<_> = deps.files.iter().collect();
    assert_eq!(
        unique.len(),
        deps.files.len(),
        "duplicates in {:?}",
        deps.files
    );
}

/// prog -> lib/libfoo.so -> lib2/libbar.so, with the executable's search path
/// "$ORIGIN/lib:$ORIGIN/lib2" stored as DT_RUNPATH or DT_RPATH.
fn chain_fixture(tag: &str, rpath: bool) -> (Fixture, PathBuf) {
    let fx = Fixture::new(tag);
    fx.write("bar.c", b"int bar(void) { return 0; }\n", 0o644);
    fx.write(
        "foo.c",
        b"int bar(void);\nint foo(void) { return bar(); }\n",
        0o644,
    );
    fx.write(
        "main.c",
        b"int foo(void);\nint main(void) { return foo(); }\n",
        0o644,
    );
    std::fs::create_dir_all(fx.path("lib")).unwrap();
    std::fs::create_dir_all(fx.path("lib2")).unwrap();
    fx.gcc(&["-shared", "-fPIC", "-o", "lib2/libbar.so", "bar.c"]);
    fx.gcc(&[
        "-shared",
        "-fPIC",
        "-o",
        "lib/libfoo.so",
        "foo.c",
        "-Llib2",
        "-lbar",
    ]);
    let mut args = vec![
        "-o",
        "prog",
        "main.c",
        "-Llib",
        "-lfoo",
        "-Wl,-rpath-link,lib2",
    ];
    if rpath {
        args.push("-Wl,--disable-new-dtags");
    } else {
        args.push("-Wl,--enable-new-dtags");
    }
    args.push("-Wl,-rpath,$ORIGIN/lib:$ORIGIN/lib2");
    fx.gcc(&args);
    let prog = fx.path("prog");
    (fx, prog)
}

#[test]
fn origin_rpath_is_inherited_by_dependencies() {
    let (fx, prog) = chain_fixture("rpath", true);
    let deps = resolve(&prog, &[], &cache()).unwrap();
    assert!(
        deps.files.contains(&fx.path("lib/libfoo.so")),
        "{:?}",
        deps.files
    );
    // libfoo has no search path of its own: DT_RPATH of the executable, which
    // loaded it, applies to its dependencies too.
    assert!(
        deps.files.contains(&fx.path("lib2/libbar.so")),
        "{:?}",
        deps.files
    );
    assert!(runs(&prog, None));
    assert_eq!(loaded(&deps, 1), ldd(&prog, None));
}

#[test]
fn origin_runpath_applies_to_the_object_only() {
    let (fx, prog) = chain_fixture("runpath", false);
    // The real loader fails here, and so must we: DT_RUNPATH is not inherited.
    assert!(!runs(&prog, None));
    match resolve(&prog, &[], &cache()) {
        Err(ElfError::MissingLibrary {
            library,
            needed_by,
            searched,
            ..
        }) => {
            assert_eq!(library, "libbar.so");
            assert_eq!(needed_by, fx.path("lib/libfoo.so"));
            assert!(!searched.contains(&fx.path("lib2")), "{searched:?}");
            assert!(searched.contains(&PathBuf::from("/usr/lib/x86_64-linux-gnu")));
        }
        other => panic!("expected MissingLibrary, got {other:?}"),
    }
    // The profile's library path is searched for every object.
    let deps = resolve(&prog, &[fx.path("lib2")], &cache()).unwrap();
    assert!(deps.files.contains(&fx.path("lib/libfoo.so")));
    assert!(deps.files.contains(&fx.path("lib2/libbar.so")));
    let llp = fx.path("lib2");
    assert!(runs(&prog, llp.to_str()));
    assert_eq!(loaded(&deps, 1), ldd(&prog, llp.to_str()));
}

#[test]
fn simple_origin_runpath() {
    let fx = Fixture::new("origin");
    fx.foo_sources();
    std::fs::create_dir_all(fx.path("lib")).unwrap();
    fx.gcc(&["-shared", "-fPIC", "-o", "lib/libfoo.so", "foo.c"]);
    fx.gcc(&[
        "-o",
        "prog",
        "main.c",
        "-Llib",
        "-lfoo",
        "-Wl,-rpath,$ORIGIN/lib",
    ]);
    let prog = fx.path("prog");
    let deps = resolve(&prog, &[], &cache()).unwrap();
    assert!(
        deps.files.contains(&fx.path("lib/libfoo.so")),
        "{:?}",
        deps.files
    );
    assert_eq!(loaded(&deps, 1), ldd(&prog, None));

    // Through a symlink, $ORIGIN is still the real directory (/proc/self/exe).
    let elsewhere = Fixture::new("origin-link");
    let link = elsewhere.path("prog-link");
    std::os::unix::fs::symlink(&prog, &link).unwrap();
    let via_link = resolve(&link, &[], &cache()).unwrap();
    assert_eq!(via_link.files[0], link);
    assert!(via_link.files.contains(&fx.path("lib/libfoo.so")));
    assert!(runs(&link, None));
}

#[test]
fn lib_token_in_runpath() {
    let fx = Fixture::new("libtoken");
    fx.foo_sources();
    std::fs::create_dir_all(fx.path("lib/x86_64-linux-gnu")).unwrap();
    fx.gcc(&[
        "-shared",
        "-fPIC",
        "-o",
        "lib/x86_64-linux-gnu/libfoo.so",
        "foo.c",
    ]);
    fx.gcc(&[
        "-o",
        "prog",
        "main.c",
        "-Llib/x86_64-linux-gnu",
        "-lfoo",
        "-Wl,-rpath,${ORIGIN}/$LIB",
    ]);
    let prog = fx.path("prog");
    let deps = resolve(&prog, &[], &cache()).unwrap();
    assert!(deps
        .files
        .contains(&fx.path("lib/x86_64-linux-gnu/libfoo.so")));
    assert!(runs(&prog, None));
}

#[test]
fn missing_library_is_named() {
    let fx = Fixture::new("missing");
    fx.foo_sources();
    fx.gcc(&["-shared", "-fPIC", "-o", "libfoo.so", "foo.c"]);
    fx.gcc(&["-o", "prog", "main.c", "-L.", "-lfoo"]);
    std::fs::remove_file(fx.path("libfoo.so")).unwrap();
    let prog = fx.path("prog");
    let err = resolve(&prog, &[fx.path("nowhere")], &cache()).unwrap_err();
    let msg = err.to_string();
    match &err {
        ElfError::MissingLibrary {
            library,
            needed_by,
            searched,
            wrong_class,
        } => {
            assert_eq!(library, "libfoo.so");
            assert_eq!(needed_by, &prog);
            assert_eq!(searched[0], fx.path("nowhere"));
            assert!(searched.contains(&PathBuf::from(CACHE_PATH)));
            assert!(searched.ends_with(&SYSTEM_DIRS.map(PathBuf::from)));
            assert!(wrong_class.is_empty());
        }
        other => panic!("expected MissingLibrary, got {other:?}"),
    }
    assert!(msg.contains("libfoo.so"), "{msg}");
    assert!(msg.contains(&*prog.to_string_lossy()), "{msg}");
    assert!(msg.contains("library_path"), "{msg}");
}

#[test]
fn static_program_needs_only_itself() {
    let fx = Fixture::new("static");
    fx.write("s.c", b"int main(void) { return 0; }\n", 0o644);
    fx.gcc(&["-static", "-o", "s", "s.c"]);
    let prog = fx.path("s");
    let deps = resolve(&prog, &[], &cache()).unwrap();
    assert_eq!(
        deps,
        Dependencies {
            files: vec![prog.clone()],
            interpreter: None,
            main_origin: None,
            searched: Vec::new(),
        }
    );
    fx.gcc(&["-static-pie", "-o", "sp", "s.c"]);
    let deps = resolve(&fx.path("sp"), &[], &cache()).unwrap();
    assert_eq!(deps.files, vec![fx.path("sp")]);
    assert_eq!(deps.interpreter, None);
}

#[test]
fn shell_script_includes_its_interpreter() {
    let fx = Fixture::new("script");
    let script = fx.write("run.sh", b"#!/bin/sh -e\necho hi\n", 0o755);
    let deps = resolve(&script, &[], &cache()).unwrap();
    assert_eq!(deps.files[0], script);
    assert_eq!(deps.files[1], Path::new("/bin/sh"));
    assert_eq!(
        deps.interpreter.as_deref(),
        Some(Path::new("/lib64/ld-linux-x86-64.so.2"))
    );
    assert!(file_names(&deps).contains(&"libc.so.6".to_string()));
    assert_eq!(loaded(&deps, 2), ldd(Path::new("/bin/sh"), None));

    // A script whose interpreter is another script.
    let outer = fx.write(
        "outer",
        format!("#!{}\n", script.display()).as_bytes(),
        0o755,
    );
    let deps2 = resolve(&outer, &[], &cache()).unwrap();
    assert_eq!(deps2.files[0], outer);
    assert_eq!(deps2.files[1..], deps.files[..]);
}

#[test]
fn script_errors() {
    let fx = Fixture::new("script-err");
    let missing = fx.write("missing", b"#!/nonexistent/interp\n", 0o755);
    match resolve(&missing, &[], &cache()) {
        Err(ElfError::MissingInterpreter {
            interpreter,
            needed_by,
        }) => {
            assert_eq!(interpreter, Path::new("/nonexistent/interp"));
            assert_eq!(needed_by, missing);
        }
        other => panic!("{other:?}"),
    }
    let noexec = fx.write("noexec", b"#!/bin/sh\n", 0o644);
    assert!(matches!(
        resolve(&noexec, &[], &cache()),
        Err(ElfError::NotExecutable { .. })
    ));
    // A loop of scripts stops at the depth limit instead of recursing forever.
    let a = fx.path("a");
    let b = fx.path("b");
    fx.write("a", format!("#!{}\n", b.display()).as_bytes(), 0o755);
    fx.write("b", format!("#!{}\n", a.display()).as_bytes(), 0o755);
    assert!(matches!(
        resolve(&a, &[], &cache()),
        Err(ElfError::TooDeep { .. })
    ));
    assert!(matches!(
        resolve(&fx.path("absent"), &[], &cache()),
        Err(ElfError::NotFound { .. })
    ));
    assert!(matches!(
        resolve(&fx.dir, &[], &cache()),
        Err(ElfError::NotExecutable { .. })
    ));
}

#[test]
fn shebang_parsing_follows_the_kernel() {
    let ok = |s: &[u8]| parse_shebang(s).map(|v| String::from_utf8(v).unwrap());
    assert_eq!(ok(b"#!/bin/sh\n").unwrap(), "/bin/sh");
    assert_eq!(ok(b"#!/bin/sh").unwrap(), "/bin/sh");
    assert_eq!(
        ok(b"#! \t/usr/bin/env python3 -u\n").unwrap(),
        "/usr/bin/env"
    );
    assert_eq!(ok(b"#!/bin/bash   \nrest").unwrap(), "/bin/bash");
    assert_eq!(ok(b"#!/bin/sh\0junk\n").unwrap(), "/bin/sh");
    assert!(ok(b"#!\n").is_err());
    assert!(ok(b"#!    \n").is_err());
    assert!(ok(b"#!").is_err());
    // An interpreter name that may have been cut at 256 bytes is refused...
    let mut long = b"#!/".to_vec();
    long.extend([b'x'; 300]);
    assert!(ok(&long).is_err());
    // ...but a long argument after a complete name is fine.
    let mut long_arg = b"#!/bin/sh ".to_vec();
    long_arg.extend([b'x'; 300]);
    assert_eq!(ok(&long_arg).unwrap(), "/bin/sh");
}

#[test]
fn not_elf_and_wrong_class() {
    let fx = Fixture::new("notelf");
    let garbage = fx.write("garbage", b"this is not a program\n", 0o755);
    let err = resolve(&garbage, &[], &cache()).unwrap_err();
    assert!(matches!(err, ElfError::NotElf { .. }), "{err:?}");
    assert!(err
        .to_string()
        .contains("neither an ELF program nor a #! script"));
    let empty = fx.write("empty", b"", 0o755);
    assert!(matches!(
        resolve(&empty, &[], &cache()),
        Err(ElfError::NotElf { .. })
    ));
    let mut elf32 = elf_header(ELFCLASS32, goblin::elf::header::EM_386);
    elf32.resize(4096, 0);
    let p32 = fx.write("prog32", &elf32, 0o755);
    let err = resolve(&p32, &[], &cache()).unwrap_err();
    assert!(matches!(err, ElfError::WrongClass { .. }), "{err:?}");
    assert!(err.to_string().contains("only x86-64"), "{err}");
    let mut arm = elf_header(ELFCLASS64, goblin::elf::header::EM_AARCH64);
    arm.resize(4096, 0);
    let parm = fx.write("progarm", &arm, 0o755);
    assert!(matches!(
        resolve(&parm, &[], &cache()),
        Err(ElfError::WrongClass { .. })
    ));
}

/// The first bytes of an ELF header: enough for class and machine checks, padded
/// with zeros (a header ld.so would then skip or reject).
fn elf_header(class: u8, machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(ELFMAG);
    h[EI_CLASS] = class;
    h[EI_DATA] = ELFDATA2LSB;
    h[EI_VERSION] = EV_CURRENT;
    h[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h
}

#[test]
fn other_architectures_are_skipped_broken_files_are_fatal() {
    let fx = Fixture::new("arch");
    fx.foo_sources();
    std::fs::create_dir_all(fx.path("good")).unwrap();
    fx.gcc(&["-shared", "-fPIC", "-o", "good/libfoo.so", "foo.c"]);
    fx.gcc(&["-o", "prog", "main.c", "-Lgood", "-lfoo"]);
    let prog = fx.path("prog");
    let mut elf32 = elf_header(ELFCLASS32, goblin::elf::header::EM_386);
    elf32.resize(128, 0);
    fx.write("i386/libfoo.so", &elf32, 0o644);
    let mut arm = elf_header(ELFCLASS64, goblin::elf::header::EM_AARCH64);
    arm.resize(128, 0);
    fx.write("arm/libfoo.so", &arm, 0o644);
    let dirs = [fx.path("i386"), fx.path("arm"), fx.path("good")];
    let deps = resolve(&prog, &dirs, &cache()).unwrap();
    assert!(deps.files.contains(&fx.path("good/libfoo.so")));
    assert!(!deps.files.contains(&fx.path("i386/libfoo.so")));
    let llp = format!(
        "{}:{}:{}",
        dirs[0].display(),
        dirs[1].display(),
        dirs[2].display()
    );
    assert!(runs(&prog, Some(&llp)));
    assert_eq!(loaded(&deps, 1), ldd(&prog, Some(&llp)));

    // Only wrong-architecture copies: reported as such.
    match resolve(&prog, &dirs[..2], &cache()) {
        Err(ElfError::MissingLibrary { wrong_class, .. }) => assert_eq!(
            wrong_class,
            vec![fx.path("i386/libfoo.so"), fx.path("arm/libfoo.so")]
        ),
        other => panic!("{other:?}"),
    }

    // A non-ELF file under the name stops ld.so ("file too short"), even though
    // a good copy comes later; we must not pretend otherwise.
    fx.write("junk/libfoo.so", b"garbage\n", 0o644);
    let junk = [fx.path("junk"), fx.path("good")];
    assert!(!runs(
        &prog,
        Some(&format!("{}:{}", junk[0].display(), junk[1].display()))
    ));
    match resolve(&prog, &junk, &cache()) {
        Err(ElfError::Malformed { path, .. }) => {
            assert_eq!(path, fx.path("junk/libfoo.so"))
        }
        other => panic!("{other:?}"),
    }
    std::fs::create_dir_all(fx.path("dir/libfoo.so")).unwrap();
    assert!(matches!(
        resolve(&prog, &[fx.path("dir"), fx.path("good")], &cache()),
        Err(ElfError::Malformed { .. })
    ));
}

#[test]
fn needed_with_a_slash_is_a_path() {
    let fx = Fixture::new("slash");
    fx.foo_sources();
    // Without -soname the linker records the path it was given as DT_NEEDED.
    fx.gcc(&["-shared", "-fPIC", "-o", "libfoo.so", "foo.c"]);
    let lib = fx.path("libfoo.so");
    fx.gcc(&["-o", "prog", "main.c", lib.to_str().unwrap()]);
    let prog = fx.path("prog");
    let deps = resolve(&prog, &[], &cache()).unwrap();
    assert!(deps.files.contains(&lib), "{:?}", deps.files);
    assert_eq!(loaded(&deps, 1), ldd(&prog, None));
    std::fs::remove_file(&lib).unwrap();
    match resolve(&prog, &[], &cache()) {
        Err(ElfError::MissingLibrary { searched, .. }) => assert_eq!(searched, vec![lib]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dependency_cycles_terminate() {
    let fx = Fixture::new("cycle");
    fx.write("a.c", b"int b(void);\nint a(void) { return 0; }\n", 0o644);
    fx.write("b.c", b"int a(void);\nint b(void) { return a(); }\n", 0o644);
    fx.write(
        "main.c",
        b"int b(void);\nint main(void) { return b(); }\n",
        0o644,
    );
    fx.gcc(&["-shared", "-fPIC", "-o", "liba.so", "a.c"]);
    fx.gcc(&["-shared", "-fPIC", "-o", "libb.so", "b.c", "-L.", "-la"]);
    fx.gcc(&["-shared", "-fPIC", "-o", "liba.so", "a.c", "-L.", "-lb"]);
    fx.gcc(&[
        "-o",
        "prog",
        "main.c",
        "-L.",
        "-lb",
        "-Wl,--disable-new-dtags,-rpath,$ORIGIN",
    ]);
    let prog = fx.path("prog");
    // DT_RPATH: inherited by libb, which needs liba from the same directory.
    let deps = resolve(&prog, &[], &cache()).unwrap();
    assert!(runs(&prog, None));
    assert!(deps.files.contains(&fx.path("liba.so")));
    assert!(deps.files.contains(&fx.path("libb.so")));
    assert_eq!(loaded(&deps, 1), ldd(&prog, None));
}

#[test]
fn truncated_and_mutated_files_are_errors_not_panics() {
    let fx = Fixture::new("fuzz");
    fx.foo_sources();
    std::fs::create_dir_all(fx.path("lib")).unwrap();
    fx.gcc(&["-shared", "-fPIC", "-o", "lib/libfoo.so", "foo.c"]);
    fx.gcc(&[
        "-o",
        "prog",
        "main.c",
        "-Llib",
        "-lfoo",
        "-Wl,-rpath,$ORIGIN/lib",
    ]);
    let prog_bytes = std::fs::read(fx.path("prog")).unwrap();
    let lib_bytes = std::fs::read(fx.path("lib/libfoo.so")).unwrap();
    let cache = cache();
    let target = fx.path("victim");
    let lengths = (0..1024).chain((1024..prog_bytes.len()).step_by(37));
    for len in lengths {
        fx.write("victim", &prog_bytes[..len], 0o755);
        let result = resolve(&target, &[fx.path("lib")], &cache);
        if len < 64 {
            assert!(result.is_err(), "len {len}");
        }
    }
    // Random byte corruption of the program and of the library it loads.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300 {
        let (victim, original, rel) = if round % 2 == 0 {
            (&target, &prog_bytes, "victim")
        } else {
            (&fx.path("lib/libfoo.so"), &lib_bytes, "lib/libfoo.so")
        };
        let mut bytes = original.clone();
        for _ in 0..1 + next() % 8 {
            // Headers and the dynamic section live in the first pages.
            let at = (next() as usize) % bytes.len().min(16384);
            bytes[at] = next() as u8;
        }
        fx.write(rel, &bytes, 0o755);
        if round % 2 == 1 {
            fx.write("victim", &prog_bytes, 0o755);
        }
        let _ = resolve(victim, &[], &cache);
        let _ = resolve(&target, &[], &cache);
    }
}

#[test]
fn dst_expansion() {
    let origin = Path::new("/opt/app/bin");
    let x = |s: &str| {
        expand_dst(s.as_bytes(), origin, Some(b"x86_64")).map(|v| String::from_utf8(v).unwrap())
    };
    assert_eq!(x("$ORIGIN/../lib").unwrap(), "/opt/app/bin/../lib");
    assert_eq!(x("${ORIGIN}/lib").unwrap(), "/opt/app/bin/lib");
    assert_eq!(x("/x/${ORIGIN}z").unwrap(), "/x//opt/app/binz");
    assert_eq!(x("/usr/$LIB").unwrap(), "/usr/lib/x86_64-linux-gnu");
    assert_eq!(x("/p/$PLATFORM/${PLATFORM}").unwrap(), "/p/x86_64/x86_64");
    // Not tokens: identifier continues, unknown names, unclosed braces.
    assert_eq!(x("$ORIGINAL/x").unwrap(), "$ORIGINAL/x");
    assert_eq!(x("$FOO/$").unwrap(), "$FOO/$");
    assert_eq!(x("${ORIGIN/x").unwrap(), "${ORIGIN/x");
    assert_eq!(x("$LIBS").unwrap(), "$LIBS");
    assert_eq!(expand_dst(b"/a/$PLATFORM", origin, None), None);
    assert_eq!(
        expand_dst(b"/a/$PLATFORMS", origin, None),
        Some(b"/a/$PLATFORMS".to_vec())
    );
}

/// Our hwcaps subdirectory list against the one this host's ld.so prints with
/// LD_DEBUG=libs for a library it cannot find.
#[test]
fn hwcaps_subdirs_match_the_real_loader() {
    let fx = Fixture::new("hwcaps");
    fx.foo_sources();
    fx.gcc(&["-shared", "-fPIC", "-o", "libfoo.so", "foo.c"]);
    fx.gcc(&["-o", "prog", "main.c", "-L.", "-lfoo"]);
    std::fs::remove_file(fx.path("libfoo.so")).unwrap();
    let out = Command::new(fx.path("prog"))
        .env("LD_DEBUG", "libs")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("search path=") && l.contains("(system search path)"))
        .unwrap_or_else(|| panic!("no system search path in:\n{log}"));
    let list = line.split("search path=").nth(1).unwrap();
    let list = list.split_whitespace().next().unwrap();
    let base = format!("{}/", SYSTEM_DIRS[0]);
    let mut theirs: Vec<PathBuf> = Vec::new();
    let mut dirs_seen: Vec<&str> = Vec::new();
    for entry in list.split(':') {
        let dir = SYSTEM_DIRS
            .iter()
            .find(|d| entry == **d || entry.starts_with(&format!("{d}/")))
            .unwrap_or_else(|| panic!("unexpected entry {entry}"));
        if !dirs_seen.contains(dir) {
            dirs_seen.push(dir);
        }
        let sub = if entry == SYSTEM_DIRS[0] {
            PathBuf::new()
        } else if let Some(rest) = entry.strip_prefix(&base) {
            PathBuf::from(rest)
        } else {
            continue;
        };
        if !theirs.contains(&sub) {
            theirs.push(sub);
        }
    }
    let mut ours = hwcaps_subdirs().to_vec();
    ours.push(PathBuf::new());
    assert_eq!(ours, theirs);
    assert_eq!(dirs_seen, SYSTEM_DIRS.to_vec());
}

/// Every ELF program in /usr/bin and /usr/sbin against `ldd`. Slow, hence
/// ignored; run with `cargo test --lib -- --ignored elf::`.
#[test]
#[ignore]
fn system_programs_match_ldd() {
    let cache = cache();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for dir in ["/usr/bin", "/usr/sbin"] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let Ok(head) = std::fs::read(&path).map(|b| b[..b.len().min(4)].to_vec()) else {
                continue;
            };
            if head != ELFMAG {
                continue;
            }
            let out = Command::new("ldd")
                .arg(&path)
                .env_remove("LD_LIBRARY_PATH")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let ours = resolve(&path, &[], &cache);
            if !out.status.success() || text.contains("statically linked") {
                match ours {
                    Ok(d) if d.interpreter.is_none() => {}
                    other => mismatches.push(format!("{}: static? {other:?}", path.display())),
                }
                continue;
            }
            checked += 1;
            let real = std::fs::canonicalize(&path).unwrap();
            match ours {
                // ldd takes $ORIGIN from the path it is given, a real exec from
                // the resolved one; give ldd the resolved one.
                Ok(deps) if loaded(&deps, 1) == ldd(&real, None) => {}
                other => mismatches.push(format!("{}: {other:?}", path.display())),
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{checked} checked:\n{}",
        mismatches.join("\n")
    );
    eprintln!("{checked} dynamic programs match ldd");
    assert!(checked > 10);
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn boundary() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(u64::MAX),
            Just(u32::MAX as u64),
            Just(i64::MAX as u64),
            Just(0x40),
            Just(0x1000),
            any::<u64>(),
        ]
    }

    /// Overwrites `width` bytes at `at` (little-endian) with `value`.
    fn poke(bytes: &mut [u8], at: usize, width: usize, value: u64) {
        let at = at.min(bytes.len().saturating_sub(width));
        for (i, b) in value.to_le_bytes().iter().take(width).enumerate() {
            if let Some(slot) = bytes.get_mut(at + i) {
                *slot = *b;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The fields ld.so and the kernel read (ELF and program headers, the dynamic
        /// array and its strings, all in the first pages) set to hostile values: the
        /// resolver answers, never panics, never allocates without bound.
        #[test]
        fn hostile_elf_fields_are_errors_not_panics(
            pokes in prop::collection::vec((0usize..8192, prop::sample::select(vec![1usize, 2, 4, 8]), boundary()), 1..6),
        ) {
            let original = std::fs::read("/bin/true").unwrap();
            let mut bytes = original.clone();
            for (at, width, value) in pokes {
                poke(&mut bytes, at, width, value);
            }
            let dir = tempfile::tempdir().unwrap();
            let victim = dir.path().join("victim");
            std::fs::write(&victim, &bytes).unwrap();
            std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
            let _ = resolve(&victim, &[], &cache());
        }

        #[test]
        fn a_hostile_loader_cache_is_an_error_not_a_panic(
            pokes in prop::collection::vec((0usize..4096, prop::sample::select(vec![1usize, 4, 8]), boundary()), 1..6),
            cut in 0usize..4096,
        ) {
            let original = std::fs::read("/etc/ld.so.cache").unwrap_or_default();
            let mut bytes = original.clone();
            for (at, width, value) in pokes {
                poke(&mut bytes, at, width, value);
            }
            let _ = LdCache::parse(&bytes);
            let _ = LdCache::parse(&bytes[..cut.min(bytes.len())]);
        }
    }
}
