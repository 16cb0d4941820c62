//! Two processes never act for one identity at once (issue 14 item 3): while one `apply` runs
//! for a leaver, a second `apply` from another shell is refused with who holds the identity,
//! and every secret is rotated once, not once per process. Read back from moto and the store.

use crate::common;
use common::{APPLY_LEAVER as APPLY, LEAVER};

use closeout::store::journal::{ActionStatus, RunStatus};
use common::{account_snapshot, actions_at, describe, journal_runs, stderr, World};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Slow enough that the first `apply` is still running when the second starts.
const SLOW_AWS: &str = "requests_per_second = 4.0\nmax_in_flight = 1";

/// How many versions each secret has, from an account snapshot.
fn version_counts(snapshot: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    snapshot
        .iter()
        .filter(|(k, _)| k.starts_with("secret/") && k.ends_with("/versions"))
        .map(|(k, v)| (k.clone(), v.split(' ').filter(|s| !s.is_empty()).count()))
        .collect()
}

/// Actions the journal holds as done, over every run.
fn done_actions(world: &World) -> usize {
    // Not readable yet while the first apply creates the journal: nothing done.
    actions_at(&world.journal_path())
        .unwrap_or_default()
        .iter()
        .filter(|a| a.status == ActionStatus::Done)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apply_for_the_same_identity_is_refused_while_the_first_runs() {
    let world = World::with_aws_extra(SLOW_AWS);
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = version_counts(&account_snapshot(&sdk).await);

    let log = world.dir.path().join("first.stderr");
    let mut first = world
        .command(&APPLY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn the first apply");
    let deadline = Instant::now() + Duration::from_secs(180);
    while done_actions(&world) == 0 {
        if let Some(status) = first.try_wait().expect("wait") {
            panic!(
                "the first apply ended ({status}) before the second could start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the first apply did nothing in 180 s"
        );
        std::thread::sleep(Duration::from_millis(25));
    }

    let second = world.closeout(&APPLY);
    assert_eq!(second.status.code(), Some(1), "{}", describe(&second));
    assert!(
        stderr(&second).contains(&format!("another Closeout process is acting for {LEAVER}")),
        "{}",
        describe(&second)
    );
    assert!(
        first.try_wait().expect("wait").is_none(),
        "the first apply finished before the second was refused: the test proves nothing"
    );

    let status = first.wait().expect("the first apply");
    assert!(
        status.success(),
        "the first apply: {status}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let runs = journal_runs(&world);
    assert_eq!(runs.len(), 1, "one run, not one per process: {runs:?}");
    assert_eq!(runs[0].status, RunStatus::Closed);

    // Each rotated secret has exactly one new version.
    let after = version_counts(&account_snapshot(&sdk).await);
    let mut rotated = 0;
    for (secret, n) in &after {
        let was = before.get(secret).copied().unwrap_or(0);
        assert!(*n <= was + 1, "{secret}: {was} versions became {n}");
        rotated += usize::from(*n == was + 1);
    }
    assert!(
        rotated > 0,
        "the leaver rotated nothing: the test proves nothing"
    );

    // Once the first is done, the identity is free again: a re-run takes no action.
    let again = world.closeout(&APPLY);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
}
