//! The testkit starts a real moto server that the AWS SDK can talk to, and fails loudly otherwise.

use closeout_testkit::{aws_sdk_config, MotoServer};

#[tokio::test]
async fn moto_serves_iam_to_the_sdk() {
    let moto = MotoServer::start();
    assert!(moto.endpoint().ends_with(&format!(":{}", moto.port())));
    let iam = aws_sdk_iam::Client::new(&aws_sdk_config(&moto.endpoint()).await);

    iam.create_user()
        .user_name("testkit-user")
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateUser: {e:?}\n{}", moto.output_tail()));
    let users = iam.list_users().send().await.expect("ListUsers");
    let names: Vec<&str> = users.users().iter().map(|u| u.user_name()).collect();
    assert_eq!(names, ["testkit-user"]);
}

#[tokio::test]
async fn each_server_is_its_own_account_and_dies_with_its_handle() {
    let first = MotoServer::start();
    let second = MotoServer::start();
    assert_ne!(first.port(), second.port());

    let iam = aws_sdk_iam::Client::new(&aws_sdk_config(&first.endpoint()).await);
    iam.create_user()
        .user_name("only-in-first")
        .send()
        .await
        .expect("CreateUser");
    let other = aws_sdk_iam::Client::new(&aws_sdk_config(&second.endpoint()).await);
    assert!(other
        .list_users()
        .send()
        .await
        .expect("ListUsers")
        .users()
        .is_empty());

    let port = first.port();
    drop(first);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "moto still listens on {port} after drop"
    );
}

#[tokio::test]
async fn env_options_reach_the_server() {
    // With INITIAL_NO_AUTH_ACTION_COUNT=0 moto authenticates every call: the static
    // testing/testing key does not exist in the account, so the call is refused.
    let moto = MotoServer::builder()
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        .start();
    let iam = aws_sdk_iam::Client::new(&aws_sdk_config(&moto.endpoint()).await);
    let err = iam
        .list_users()
        .send()
        .await
        .expect_err("moto should enforce authentication");
    let text = format!("{err:?}");
    assert!(
        text.contains("InvalidClientTokenId"),
        "unexpected error: {text}"
    );
}

#[test]
#[should_panic(expected = "run scripts/setup.sh")]
fn a_missing_venv_fails_the_test_with_instructions() {
    MotoServer::builder()
        .venv("/nonexistent/closeout-venv")
        .start();
}

#[test]
fn free_ports_are_distinct() {
    let ports: std::collections::HashSet<u16> =
        (0..20).map(|_| closeout_testkit::free_port()).collect();
    assert_eq!(ports.len(), 20);
}

/// A fake virtualenv whose `bin/moto_server` is the given shell script.
fn fake_venv(name: &str, script: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("closeout-testkit-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("bin")).expect("create fake venv");
    let binary = dir.join("bin/moto_server");
    std::fs::write(&binary, format!("#!/bin/sh\n{script}\n")).expect("write fake moto_server");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn a_server_that_dies_fails_the_test_with_its_output() {
    let venv = fake_venv(
        "dies",
        "echo 'ImportError: no module named moto' >&2; exit 1",
    );
    let result = std::panic::catch_unwind(|| MotoServer::builder().venv(&venv).start());
    let _ = std::fs::remove_dir_all(&venv);
    let message = panic_message(result.expect_err("start should panic"));
    assert!(message.contains("exited during start-up"), "{message}");
    assert!(
        message.contains("ImportError: no module named moto"),
        "{message}"
    );
}

#[test]
fn a_server_that_never_answers_fails_the_test_with_its_output() {
    let venv = fake_venv("silent", "echo 'still importing' >&2; exec sleep 60");
    let result = std::panic::catch_unwind(|| {
        MotoServer::builder()
            .venv(&venv)
            .timeout(std::time::Duration::from_secs(2))
            .start()
    });
    let _ = std::fs::remove_dir_all(&venv);
    let message = panic_message(result.expect_err("start should panic"));
    assert!(message.contains("did not answer"), "{message}");
    assert!(message.contains("still importing"), "{message}");
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
