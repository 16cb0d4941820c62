//! The provider contract suite: the checks every provider must pass against its real server,
//! written once for every [`Provider`].
//!
//! A provider's tests seed their emulator, build the provider and call [`run_suite`] with the
//! identity and the findings to act on. For each [`Case`], in order:
//!
//! 1. `resolve` finds the seeded finding, the verb is one the provider lists for its kind, and
//!    the finding is not already in the state the action will leave it in;
//! 2. `execute` changes something (`already_done` false) and reports the expected state, and
//!    records at least one answered provider call (`closeout_contract::receipt`);
//! 3. `live_state`, read from the server, is that state;
//! 4. executing the same request again is the idempotent success: `already_done` (or
//!    [`ProviderError::AlreadyDone`]) in the same state;
//! 5. `probe` answers (a probe, or `None` where the kind has none);
//! 6. resolving again, the finding is gone or in the expected state.
//!
//! Then `health` answers with a principal, and no text the provider returned (outcome details,
//! errors, probes, findings, the receipts of `execute`) contains any of the seeded secret values given as `secrets`.
//!
//! The suite panics with the case and what the provider answered on the first violation. It
//! returns what it saw so the provider's own test can read the server back for the
//! provider-specific effects (which policy was written, which version is current).
//!
//! ```no_run
//! # async fn demo<P: closeout_contract::Provider>(provider: P, ctx: closeout_contract::ResolveContext) {
//! use closeout_contract::State;
//! use closeout_testkit::contract::{run_suite, Case};
//! let report = run_suite(
//!     &provider,
//!     &ctx,
//!     &[Case::new("aws:login-profile:alice", "remove", State::Deleted)],
//!     &["canary-value"],
//! )
//! .await;
//! assert_eq!(report.cases.len(), 1);
//! # }
//! ```

use closeout_contract::receipt;
use closeout_contract::{
    ActionOutcome, ActionParams, ActionRequest, Finding, Health, ProbeOutcome, Provider,
    ProviderError, Resolution, ResolveContext, State,
};

/// One action the suite takes on a seeded finding.
#[derive(Debug, Clone)]
pub struct Case {
    /// The id `resolve` gives the seeded finding (`aws:access-key:AKIA...`).
    pub finding_id: String,
    /// The verb to execute on it; must be listed for the finding's kind in the provider's
    /// capabilities.
    pub verb: String,
    /// The state the action leaves the finding in, as the outcome and `live_state` report it.
    pub leaves: State,
    /// What the verb needs beyond the finding (`sessions_issued_before`, `new_owner`). An empty
    /// `run_id` is filled with `contract-suite`.
    pub params: ActionParams,
}

impl Case {
    /// `verb` on the finding `finding_id`, leaving it in `leaves`, with no parameters.
    pub fn new(finding_id: impl Into<String>, verb: impl Into<String>, leaves: State) -> Case {
        Case {
            finding_id: finding_id.into(),
            verb: verb.into(),
            leaves,
            params: ActionParams::default(),
        }
    }

    /// The same case with these parameters.
    pub fn with_params(self, params: ActionParams) -> Case {
        Case { params, ..self }
    }
}

/// What the suite saw for one [`Case`].
#[derive(Debug, Clone)]
pub struct Checked {
    /// The finding as resolved before the action.
    pub finding: Finding,
    /// The verb executed.
    pub verb: String,
    /// The first execution's outcome (the one that changed something).
    pub outcome: ActionOutcome,
    /// What `probe` answered after the action.
    pub probe: Option<ProbeOutcome>,
}

/// What the suite saw: the health check and each case, in the order given.
#[derive(Debug, Clone)]
pub struct Report {
    /// `health(&[])` after every case.
    pub health: Health,
    /// One entry per [`Case`].
    pub cases: Vec<Checked>,
}

impl Report {
    /// What the suite saw for `verb` on the finding `finding_id` (the first such case).
    ///
    /// # Panics
    /// When no such case ran.
    pub fn case(&self, finding_id: &str, verb: &str) -> &Checked {
        self.cases
            .iter()
            .find(|c| c.finding.id == finding_id && c.verb == verb)
            .unwrap_or_else(|| panic!("no case {verb} on {finding_id} ran"))
    }
}

/// Run the contract suite on `provider` for the identity in `ctx` (see the module docs).
///
/// Cases run one after the other, each on a fresh resolution, so a later case may act on a
/// finding an earlier one changed (deactivate, then delete the same key).
///
/// # Panics
/// On the first contract violation, naming the case and what the provider answered; when a
/// provider call fails; when any returned text contains one of `secrets`.
pub async fn run_suite<P: Provider>(
    provider: &P,
    ctx: &ResolveContext,
    cases: &[Case],
    secrets: &[&str],
) -> Report {
    let provider_name = provider.capabilities().provider;
    // Every text the provider returned, searched for the seeded secret values at the end.
    let mut texts: Vec<String> = Vec::new();
    let mut checked = Vec::with_capacity(cases.len());
    for case in cases {
        let what = format!("{provider_name}: {} on {}", case.verb, case.finding_id);
        let before = resolve(provider, ctx, &what, &mut texts).await;
        let finding = before
            .findings
            .iter()
            .find(|f| f.id == case.finding_id)
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "{what}: resolve does not find the seeded finding; it found {:?}",
                    ids(&before)
                )
            });
        assert!(
            provider
                .capabilities()
                .verb(&finding.kind, &case.verb)
                .is_some(),
            "{what}: the provider does not list {} for kind {}",
            case.verb,
            finding.kind
        );
        let live_before = live_state(provider, &finding, ctx, &what).await;
        assert_ne!(
            live_before, case.leaves,
            "{what}: the finding is already {} before the action: the case proves nothing",
            case.leaves
        );

        let mut params = case.params.clone();
        if params.run_id.is_empty() {
            params.run_id = "contract-suite".into();
        }
        let request = ActionRequest {
            idempotency_key: format!("contract-suite/{}/{}", case.verb, case.finding_id),
            verb: case.verb.clone(),
            finding: finding.clone(),
            params,
        };
        let (outcome, calls) = receipt::collect(provider.execute(&request)).await;
        let outcome = outcome.unwrap_or_else(|e| panic!("{what}: execute failed: {e}"));
        texts.push(outcome.detail.clone());
        assert!(
            calls.iter().any(|c| c.status.is_some()),
            "{what}: execute recorded no answered provider call (receipts): {calls:?}"
        );
        texts.extend(calls.iter().map(|c| format!("{c:?}")));
        assert!(
            !outcome.already_done,
            "{what}: the first execution changed nothing: {outcome:?}"
        );
        assert_eq!(
            outcome.state, case.leaves,
            "{what}: the outcome reports another state: {outcome:?}"
        );

        let live_after = live_state(provider, &finding, ctx, &what).await;
        assert_eq!(
            live_after, case.leaves,
            "{what}: the live state did not change to {} (was {live_before})",
            case.leaves
        );

        let (again, calls) = receipt::collect(provider.execute(&request)).await;
        texts.extend(calls.iter().map(|c| format!("{c:?}")));
        match again {
            Ok(again) => {
                texts.push(again.detail.clone());
                assert!(
                    again.already_done,
                    "{what}: executing again is not already-done: {again:?}"
                );
                assert_eq!(
                    again.state, case.leaves,
                    "{what}: executing again reports another state: {again:?}"
                );
            }
            Err(e @ ProviderError::AlreadyDone { .. }) => texts.push(e.to_string()),
            Err(e) => panic!("{what}: executing again failed: {e}"),
        }

        let probe = provider
            .probe(&finding)
            .await
            .unwrap_or_else(|e| panic!("{what}: probe failed: {e}"));
        if let Some(p) = &probe {
            texts.push(format!("{} {}", p.probe, p.detail));
        }

        let after = resolve(provider, ctx, &what, &mut texts).await;
        if let Some(again) = after.findings.iter().find(|f| f.id == case.finding_id) {
            assert_eq!(
                again.state, case.leaves,
                "{what}: resolving again shows the finding in another state: {again:?}"
            );
        }

        checked.push(Checked {
            finding,
            verb: case.verb.clone(),
            outcome,
            probe,
        });
    }

    let health = provider
        .health(&[])
        .await
        .unwrap_or_else(|e| panic!("{provider_name}: health failed: {e}"));
    assert!(
        !health.principal.is_empty(),
        "{provider_name}: health names no principal: {health:?}"
    );
    texts.push(format!("{health:?}"));

    let all = texts.join("\n");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !all.contains(secret),
            "{provider_name}: a seeded secret value appears in what the provider returned"
        );
    }
    Report {
        health,
        cases: checked,
    }
}

async fn resolve<P: Provider>(
    provider: &P,
    ctx: &ResolveContext,
    what: &str,
    texts: &mut Vec<String>,
) -> Resolution {
    let resolution = provider
        .resolve(ctx)
        .await
        .unwrap_or_else(|e| panic!("{what}: resolve failed: {e}"));
    // A resolution is plain data; failing to serialize it is a bug in its types.
    texts.push(serde_json::to_string(&resolution).expect("a resolution serializes"));
    resolution
}

async fn live_state<P: Provider>(
    provider: &P,
    finding: &Finding,
    ctx: &ResolveContext,
    what: &str,
) -> State {
    provider
        .live_state(finding, ctx)
        .await
        .unwrap_or_else(|e| panic!("{what}: live_state failed: {e}"))
}

fn ids(resolution: &Resolution) -> Vec<&str> {
    resolution.findings.iter().map(|f| f.id.as_str()).collect()
}
