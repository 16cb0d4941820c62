//! Process-wide metrics in the Prometheus/OpenMetrics text format (`GET /metrics` of
//! `closeout serve`). Counters and histograms are recorded where things happen (intake, the
//! executor); gauges that mirror stored state (queue depth, runs by status, open findings) are
//! set when scraped.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

/// Every metric Closeout exports.
pub struct Metrics {
    registry: Registry,
    /// Intake: events by type and outcome (accepted, duplicate, rejected reason).
    pub events: Family<Labels, Counter>,
    /// Events stored and not finished.
    pub queue_depth: Gauge,
    /// Events in the queue by status (pending, processing, waiting-approval, done, ...).
    pub queue_events: Family<Labels, Gauge>,
    /// Runs by status, from the journal.
    pub runs: Family<Labels, Gauge>,
    /// Action latency by provider and outcome.
    pub action_seconds: Family<Labels, Histogram>,
    /// Provider errors by provider and class (retryable, permanent, throttled).
    pub provider_errors: Family<Labels, Counter>,
    /// Throttling answers (429 and the like) by provider.
    pub throttles: Family<Labels, Counter>,
    /// Findings still open after the newest finished run of each identity.
    pub open_findings: Gauge,
    /// Drift items found by the last reconcile.
    pub drift: Gauge,
    /// Findings the rotation policy made due at the scheduler's last pass.
    pub rotations_due: Gauge,
    /// Times this process took or lost the schedulers' leader lease (PostgreSQL store).
    pub leader_changes: Counter,
    /// Events this process claimed from the queue.
    pub claims: Counter,
    /// Expired claims (of a replica that stopped renewing them) this process took over.
    pub claims_taken_over: Counter,
    /// Identity leases this process took from a holder that stopped renewing them.
    pub identity_leases_taken_over: Counter,
}

fn action_histogram() -> Histogram {
    // 10 ms .. ~160 s
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("closeout");
        let events = Family::<Labels, Counter>::default();
        registry.register(
            "events",
            "Lifecycle events received, by type and outcome",
            events.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Events stored and not yet finished",
            queue_depth.clone(),
        );
        let runs = Family::<Labels, Gauge>::default();
        registry.register("runs", "Runs in the journal, by status", runs.clone());
        let action_seconds =
            Family::<Labels, Histogram>::new_with_constructor(action_histogram as fn() -> _);
        registry.register(
            "action_duration_seconds",
            "Time to execute one action (all attempts), by provider and outcome",
            action_seconds.clone(),
        );
        let provider_errors = Family::<Labels, Counter>::default();
        registry.register(
            "provider_errors",
            "Provider call errors, by provider and class",
            provider_errors.clone(),
        );
        let throttles = Family::<Labels, Counter>::default();
        registry.register(
            "provider_throttles",
            "Throttling answers from providers, by provider",
            throttles.clone(),
        );
        let open_findings = Gauge::default();
        registry.register(
            "open_findings",
            "Findings still open after the newest finished run of each identity",
            open_findings.clone(),
        );
        let drift = Gauge::default();
        registry.register(
            "drift",
            "Drift items found by the last reconcile of closeout serve",
            drift.clone(),
        );
        let rotations_due = Gauge::default();
        registry.register(
            "rotations_due",
            "Findings the rotation policy made due at the last pass of the scheduler",
            rotations_due.clone(),
        );
        let queue_events = Family::<Labels, Gauge>::default();
        registry.register(
            "queue_events",
            "Events in the queue by status",
            queue_events.clone(),
        );
        let leader_changes = Counter::default();
        registry.register(
            "leader_changes",
            "Times this replica took or lost the schedulers' leader lease (PostgreSQL store)",
            leader_changes.clone(),
        );
        let claims = Counter::default();
        registry.register(
            "claims",
            "Events this replica claimed from the queue",
            claims.clone(),
        );
        let claims_taken_over = Counter::default();
        registry.register(
            "claims_taken_over",
            "Expired claims of a replica that stopped renewing them, taken over by this one",
            claims_taken_over.clone(),
        );
        let identity_leases_taken_over = Counter::default();
        registry.register(
            "identity_leases_taken_over",
            "Identity leases taken from a holder that stopped renewing them (expired, or a process \
             on this host that no longer exists)",
            identity_leases_taken_over.clone(),
        );
        Metrics {
            queue_events,
            leader_changes,
            claims,
            claims_taken_over,
            identity_leases_taken_over,
            drift,
            rotations_due,
            registry,
            events,
            queue_depth,
            runs,
            action_seconds,
            provider_errors,
            throttles,
            open_findings,
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Count one event of `kind` (its trigger, e.g. `leaver`) with an `outcome`: at intake
    /// `accepted` or `duplicate`, from the worker `done`, `failed`, `waiting-approval`, `skipped`
    /// or `deferred`.
    pub fn event(&self, kind: &str, outcome: &str) {
        self.events
            .get_or_create(&vec![
                ("type", kind.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// Record one executed action of `provider`: its `outcome` (`done`, `already-done`, `failed`,
    /// `finished-earlier`) and the time it took over all its attempts.
    pub fn action(&self, provider: &str, outcome: &str, took: Duration) {
        self.action_seconds
            .get_or_create(&vec![
                ("provider", provider.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .observe(took.as_secs_f64());
    }

    /// Count one provider call error of `class` (`retryable`, `permanent`, `throttled`); a
    /// `throttled` error also counts in the provider's throttle counter.
    pub fn provider_error(&self, provider: &str, class: &str) {
        self.provider_errors
            .get_or_create(&vec![
                ("provider", provider.to_string()),
                ("class", class.to_string()),
            ])
            .inc();
        if class == "throttled" {
            self.throttles
                .get_or_create(&vec![("provider", provider.to_string())])
                .inc();
        }
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_the_text_format() {
        let m = Metrics::new();
        m.event("leaver", "accepted");
        m.action("aws", "done", Duration::from_millis(40));
        m.provider_error("azure", "throttled");
        m.queue_depth.set(3);
        let text = m.render();
        assert!(
            text.contains(r#"closeout_events_total{type="leaver",outcome="accepted"} 1"#),
            "{text}"
        );
        assert!(text.contains("closeout_queue_depth 3"), "{text}");
        assert!(text.contains(r#"closeout_provider_throttles_total{provider="azure"} 1"#));
        assert!(text.contains("closeout_action_duration_seconds_bucket"));
        assert!(text.ends_with("# EOF\n"));
    }
}
