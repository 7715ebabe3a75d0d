//! Every tool's `--help`, and each subcommand's, prints its usage and exits 0; a usage
//! error exits 2 and says what is wrong.

use std::process::Command;

fn run(binary: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary)
        .args(args)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .expect("run the tool");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_help_works() {
    let admin = env!("CARGO_BIN_EXE_twenty-admin");
    let replay = env!("CARGO_BIN_EXE_twenty-replay");
    let reconcile = env!("CARGO_BIN_EXE_twenty-reconcile");
    let cases: &[(&str, &[&str], &str)] = &[
        (admin, &["--help"], "rotate-secret"),
        (admin, &["connect", "--help"], "--new-secret"),
        (admin, &["rotate-secret", "--help"], "--finish"),
        (admin, &["send-test", "--help"], "--webhook-url"),
        (admin, &["status", "--help"], "--count-dead-letters"),
        (replay, &["--help"], "redrive"),
        (replay, &["redrive", "--help"], "--destination"),
        (reconcile, &["--help"], "--scheduled"),
    ];
    for (binary, args, names) in cases {
        let (code, stdout, stderr) = run(binary, args);
        assert_eq!(code, Some(0), "{binary} {args:?}: {stderr}");
        assert!(
            stdout.contains("Usage:") && stdout.contains(names),
            "{binary} {args:?}: {stdout}"
        );
    }
}

#[test]
fn usage_errors_exit_2_and_say_why() {
    let admin = env!("CARGO_BIN_EXE_twenty-admin");
    let reconcile = env!("CARGO_BIN_EXE_twenty-reconcile");
    for (binary, args) in [
        (admin, &[][..]),
        (admin, &["frobnicate"][..]),
        (admin, &["connect", "--stack", "p", "--json"][..]),
        (reconcile, &["--since", "yesterday"][..]),
        (reconcile, &["--frobnicate"][..]),
    ] {
        let (code, _, stderr) = run(binary, args);
        assert_eq!(code, Some(2), "{binary} {args:?}: {stderr}");
        // A missing subcommand prints the whole help; anything else says what is wrong.
        assert!(
            stderr.contains("error:") || stderr.contains("Usage:"),
            "{binary} {args:?}: {stderr}"
        );
    }
}
