//! The scim2-tester conformance suite (tests/scim/conformance.py) against the SCIM router
//! served in-process, on the SQLite and on the PostgreSQL store. Fails, never skips, when the
//! venv or the package is missing.

use crate::common::scim as harness;
use crate::common::{venv, REPO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_reports_no_error() {
    conformance(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_scim2_tester_reports_no_error() {
    conformance(true).await;
}

async fn conformance(postgres: bool) {
    let python = venv().join("bin/python");
    assert!(
        python.exists(),
        "{} not found: run scripts/setup.sh to create the venv with scim2-tester",
        python.display()
    );
    let probe = std::process::Command::new(&python)
        .args(["-c", "import scim2_tester, scim2_client.engines.httpx2"])
        .output()
        .expect("run the venv's python");
    assert!(
        probe.status.success(),
        "scim2-tester is not installed in {}: run scripts/setup.sh ({})",
        venv().display(),
        String::from_utf8_lossy(&probe.stderr)
    );

    let server = harness::Server::start_on(postgres).await;
    let out = tokio::process::Command::new(&python)
        .arg(format!("{REPO}/tests/scim/conformance.py"))
        .arg(&server.base)
        .arg(harness::TOKEN)
        .output()
        .await
        .expect("run tests/scim/conformance.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the conformance suite reported errors (exit {:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SUCCESS"), "no check ran:\n{stdout}");
}
