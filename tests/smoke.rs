mod common;
use common::*;

#[test]
fn echo_runs_under_the_default_profile() {
    assert_run_as_callers(&["--", "/bin/echo", "hello"], "ok", 0, "hello\n");
}

#[test]
fn dynamic_c_fixture_runs() {
    let prog = fixture("hello");
    assert_run_as_callers(&["--", path_str(&prog)], "ok", 0, "hello from the jail\n");
}
