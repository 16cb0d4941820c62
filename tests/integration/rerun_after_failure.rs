//! A leaver run that failed part-way is followed by another run. The leaver playbook removes the
//! person's access (`revoke`) before it rotates what she could read (`rotate`), so when the
//! rotations fail, a fresh resolution no longer finds those secrets through her — yet the values
//! she could copy are unchanged. The next `apply leaver` resumes the failed run; a run of another
//! trigger (`apply incident`) plans anew, and used to say closed with two secrets she could read
//! unrotated: planning now carries what an unclosed previous run left undone or open. Read back
//! from moto: every secret the first run failed to rotate has a new current version after the
//! second run, which closes.

use crate::common;
use common::APPLY_LEAVER as APPLY;

use closeout_testkit::proxy::{Fault, FaultProxy, Rule, When};
use common::{account_snapshot, describe, secret_version, World};

/// The secrets of the demo organisation the leaver's close-out rotates.
const ROTATED: [&str; 4] = [
    "alice/personal-notes",
    "eng/ci-token",
    "prod/payments/db",
    "team/analytics-key",
];

/// The next `apply` of the same trigger resumes the failed run (same idempotency keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_a_failed_run_left_undone_is_done_by_the_next_run() {
    rotations_left_undone_are_done_by(&APPLY).await;
}

/// Another trigger's run (an incident declared after the leaver's run failed) plans anew; its
/// resolution no longer finds the secrets through the person, and must still rotate the ones
/// the failed run left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_a_failed_leaver_left_undone_is_done_by_a_later_incident_run() {
    rotations_left_undone_are_done_by(&[
        "apply",
        "incident",
        "--identity",
        "E1001",
        "--yes",
        "--format",
        "json",
    ])
    .await;
}

async fn rotations_left_undone_are_done_by(next: &[&str]) {
    let world = World::new();
    let proxy = FaultProxy::start(&world.moto.endpoint()).await;
    let config = std::fs::read_to_string(world.config_path()).unwrap();
    std::fs::write(
        world.config_path(),
        config.replace(&world.moto.endpoint(), &proxy.endpoint()),
    )
    .unwrap();
    world.seed_demo();
    // The AWS provider compares a secret's change time with a run's cutoff in whole seconds
    // (moto and IAM truncate some times), so a secret seeded in the cutoff's own second reads as
    // rotated after it: start the first run in a later second, as any real leaver's would be.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;
    // Every new secret value is refused (a permanent 400): the rotate stage fails after the
    // person's access was removed.
    proxy.set_rules(vec![
        Rule::new(When::Always, Fault::Status { status: 400 }).on("PutSecretValue")
    ]);
    let first = world.command(&APPLY).output().expect("run closeout apply");
    assert_ne!(
        first.status.code(),
        Some(0),
        "the first run cannot close: {}",
        describe(&first)
    );
    let mid = account_snapshot(&sdk).await;
    let unrotated: Vec<&str> = ROTATED
        .into_iter()
        .filter(|s| {
            secret_version(&mid, s, "AWSCURRENT") == secret_version(&before, s, "AWSCURRENT")
        })
        .collect();
    assert!(
        !unrotated.is_empty(),
        "the fault rotated nothing away: the test would prove nothing"
    );

    proxy.set_rules(Vec::new());
    let second = world.command(next).output().expect("run closeout apply");
    let after = account_snapshot(&sdk).await;
    let still: Vec<&&str> = unrotated
        .iter()
        .filter(|s| {
            secret_version(&after, s, "AWSCURRENT") == secret_version(&before, s, "AWSCURRENT")
        })
        .collect();
    assert!(
        still.is_empty(),
        "the next run left {still:?} unrotated (exit {:?}): {}",
        second.status.code(),
        describe(&second)
    );
    assert_eq!(
        second.status.code(),
        Some(0),
        "the next run closes: {}",
        describe(&second)
    );
}
