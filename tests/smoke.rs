mod common;
use common::*;

#[test]
fn echo_runs_under_the_default_profile() {
    for caller in callers() {
        let run = moat_run(caller, &["--", "/bin/echo", "hello"]);
        assert_run(&run, "ok", 0, "hello\n");
    }
}

#[test]
fn dynamic_c_fixture_runs() {
    let prog = fixture("hello");
    for caller in callers() {
        let run = moat_run(caller, &["--", prog.to_str().unwrap()]);
        assert_run(&run, "ok", 0, "hello from the jail\n");
    }
}
