//! The `tokenwatch` binary as an operator meets it: configuration errors at
//! start-up name the key, and `seal` produces handles the revoker can open.

use std::io::Write;
use std::process::{Command, Stdio};

fn tokenwatch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tokenwatch"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_BACKTRACE");
    c
}

#[test]
fn the_example_config_is_valid() {
    let out = tokenwatch()
        .args(["config", "check", "deploy/config/tokenwatch.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_errors_name_the_key_whether_from_file_or_environment() {
    let out = tokenwatch()
        .args(["config", "check", "deploy/config/tokenwatch.toml"])
        .env("TOKENWATCH_DETECT__MAX_TOKENS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("detect.max_tokens"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[kafka]\nbrokrs = \"x\"\n").unwrap();
    let out = tokenwatch()
        .args(["config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("brokrs") && err.contains("kafka"), "{err}");
}

#[test]
fn seal_produces_a_handle_bound_to_the_token_id() {
    let key = tokenwatch().args(["seal", "--new-key"]).output().unwrap();
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let mut child = tokenwatch()
        .args(["seal", "--token-id", "jti-42", "--key-id", "k1"])
        .env("TOKENWATCH_SEAL_KEY", &key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"raw-opaque-token\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let handle = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(handle.starts_with("tw1.k1.") && !handle.contains("raw-opaque"));
    let sealer = tokenwatch::respond::Sealer::new([("k1", key.as_str())]).unwrap();
    assert_eq!(sealer.open("jti-42", &handle).unwrap(), "raw-opaque-token");
}
