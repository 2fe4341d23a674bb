//! `--help` of every command, snapshot-tested (review changes with `cargo insta review`).

use crate::support::{stdout, talforge};

const COMMANDS: &[&[&str]] = &[
    &[],
    &["plan"],
    &["secrets"],
    &["secrets", "gen"],
    &["config"],
    &["config", "gen"],
    &["profile"],
    &["profile", "list"],
    &["profile", "show"],
    &["profile", "lint"],
    &["build"],
    &["verify"],
    &["qualify"],
    &["lab"],
    &["lab", "run"],
    &["lab", "up"],
    &["lab", "status"],
    &["lab", "console"],
    &["lab", "down"],
    &["lab", "exec"],
    &["lab", "shell"],
];

#[test]
fn help_of_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in COMMANDS {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push("--help");
        let out = talforge(tmp.path(), &args);
        assert!(out.status.success(), "{args:?}");
        let name = if cmd.is_empty() { "talforge".to_owned() } else { format!("talforge-{}", cmd.join("-")) };
        insta::assert_snapshot!(name, stdout(&out));
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = talforge(tmp.path(), &["plan", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::support::stderr(&out).contains("unexpected argument '--no-such-flag'"));
}
