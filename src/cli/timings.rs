//! `--timings`: where a command's time went, per phase and per provider — calls made, the time
//! during which at least one call was in flight, the calls' summed time, the time calls waited
//! at the provider's own gate (its in-flight and rate limits), and answers that throttled —
//! printed on stderr when the command ends.
//!
//! It is a `tracing` layer over the spans the run opens (`pipeline::spans`) and the providers'
//! call spans and throttle events (`closeout_contract::telemetry`), so it counts what the
//! providers report and needs nothing from them beyond that convention. A call made outside any
//! phase (a command that resolves without a run, a health check) is counted under `-`.

use crate::pipeline::spans::{ACTION_SPAN, PHASE_SPAN};
use closeout_contract::telemetry::{PROVIDER_CALL_SPAN, THROTTLED_FIELD};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
// tokio's clock: the same as std's outside tests, and paused with the runtime in them.
use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, FilterFn};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// What is counted under a call made outside any phase.
const NO_PHASE: &str = "-";

/// Collects timings; clones share them. Install [`Timings::layer`] and print
/// [`Timings::render`] at the end.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    tally: Arc<Mutex<Tally>>,
}

#[derive(Debug, Default)]
struct Tally {
    /// Phases in the order they started, each with its summed wall time.
    phases: Vec<(String, Duration)>,
    /// Per (phase, provider).
    rows: BTreeMap<(String, String), Row>,
}

#[derive(Debug, Default)]
struct Row {
    calls: u64,
    summed: Duration,
    gate_wait: Duration,
    throttled: u64,
    /// Each call's (start, end), merged into the in-flight time when rendered.
    intervals: Vec<(Instant, Instant)>,
}

impl Row {
    /// The time during which at least one call was in flight (the union of the intervals).
    fn in_flight(&self) -> Duration {
        let mut spans = self.intervals.clone();
        spans.sort();
        let mut total = Duration::ZERO;
        let mut current: Option<(Instant, Instant)> = None;
        for (start, end) in spans {
            current = match current {
                Some((s, e)) if start <= e => Some((s, e.max(end))),
                Some((s, e)) => {
                    total += e - s;
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some((s, e)) = current {
            total += e - s;
        }
        total
    }
}

/// What the layer keeps on each span it counts.
struct Started {
    at: Instant,
    /// `phase` of a phase, `provider` of a call or action.
    label: Option<String>,
    /// A call's wait at its provider's gate.
    gate_wait: Duration,
}

/// The fields the layer reads from spans and events.
#[derive(Default)]
struct Fields {
    phase: Option<String>,
    provider: Option<String>,
    gate_wait_ms: u64,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "phase" => self.phase = Some(value.to_string()),
            "provider" => self.provider = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "gate_wait_ms" {
            self.gate_wait_ms = value;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = || format!("{value:?}").trim_matches('"').to_string();
        match field.name() {
            "phase" => self.phase = Some(text()),
            "provider" => self.provider = Some(text()),
            _ => {}
        }
    }
}

/// The spans and events the layer looks at: nothing else reaches it.
fn counted(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        matches!(meta.name(), PHASE_SPAN | ACTION_SPAN | PROVIDER_CALL_SPAN)
    } else {
        meta.fields().field(THROTTLED_FIELD).is_some()
    }
}

impl Timings {
    /// The layer that collects into these timings, filtered to the spans and events it counts
    /// (so it enables the providers' `DEBUG` call spans for itself, not for the log).
    pub fn layer<S>(&self) -> tracing_subscriber::filter::Filtered<TimingsLayer, FilterFn, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        TimingsLayer {
            tally: self.tally.clone(),
        }
        .with_filter(filter_fn(counted))
    }

    /// The summary table.
    pub fn render(&self) -> String {
        let tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::from("timings\n");
        let _ = writeln!(
            out,
            "{:<18} {:>9}  {:<10} {:>7} {:>10} {:>10} {:>10} {:>9}",
            "phase", "wall", "provider", "calls", "in flight", "summed", "gate wait", "throttled"
        );
        let mut phases: Vec<(String, Option<Duration>)> = tally
            .phases
            .iter()
            .map(|(name, wall)| (name.clone(), Some(*wall)))
            .collect();
        for (phase, _) in tally.rows.keys() {
            if !phases.iter().any(|(name, _)| name == phase) {
                phases.push((phase.clone(), None));
            }
        }
        let (mut calls, mut throttled) = (0, 0);
        for (phase, wall) in &phases {
            let wall = wall.map_or_else(|| "-".to_string(), seconds);
            let rows: Vec<_> = tally.rows.iter().filter(|((p, _), _)| p == phase).collect();
            if rows.is_empty() {
                let _ = writeln!(out, "{phase:<18} {wall:>9}  {:<10}", "-");
            }
            for (i, ((_, provider), row)) in rows.into_iter().enumerate() {
                let (name, wall) = if i == 0 {
                    (phase.as_str(), wall.as_str())
                } else {
                    ("", "")
                };
                let _ = writeln!(
                    out,
                    "{name:<18} {wall:>9}  {provider:<10} {:>7} {:>10} {:>10} {:>10} {:>9}",
                    row.calls,
                    seconds(row.in_flight()),
                    seconds(row.summed),
                    seconds(row.gate_wait),
                    row.throttled
                );
                calls += row.calls;
                throttled += row.throttled;
            }
        }
        let _ = writeln!(
            out,
            "{:<18} {:>9}  {:<10} {calls:>7} {:>10} {:>10} {:>10} {throttled:>9}",
            "total", "", "", "", "", ""
        );
        out
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The `tracing` layer behind [`Timings`].
#[derive(Debug)]
pub struct TimingsLayer {
    tally: Arc<Mutex<Tally>>,
}

impl TimingsLayer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Each span's name and label, leaf first.
fn labelled<'a, S>(
    scope: impl Iterator<Item = tracing_subscriber::registry::SpanRef<'a, S>>,
) -> Vec<(&'static str, Option<String>)>
where
    S: for<'l> LookupSpan<'l> + 'a,
{
    scope
        .map(|span| {
            let label = span
                .extensions()
                .get::<Started>()
                .and_then(|s| s.label.clone());
            (span.name(), label)
        })
        .collect()
}

/// The label of the nearest span named `name` (leaf first).
fn nearest(labels: &[(&'static str, Option<String>)], name: &str) -> Option<String> {
    labels
        .iter()
        .filter(|(n, _)| *n == name)
        .find_map(|(_, label)| label.clone())
}

impl<S> Layer<S> for TimingsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let label = if span.name() == PHASE_SPAN {
            let name = fields.phase.unwrap_or_else(|| NO_PHASE.into());
            let mut tally = self.lock();
            if !tally.phases.iter().any(|(n, _)| *n == name) {
                tally.phases.push((name.clone(), Duration::ZERO));
            }
            Some(name)
        } else {
            fields.provider
        };
        span.extensions_mut().insert(Started {
            at: Instant::now(),
            label,
            gate_wait: Duration::from_millis(fields.gate_wait_ms),
        });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // An event outside every span (a throttled health check) still counts, under `-`.
        let scope = ctx.event_scope(event).into_iter().flatten();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = labelled(scope);
        let provider = fields
            .provider
            .or_else(|| nearest(&spans, ACTION_SPAN))
            .unwrap_or_else(|| "-".into());
        let phase = nearest(&spans, PHASE_SPAN).unwrap_or_else(|| NO_PHASE.into());
        self.lock()
            .rows
            .entry((phase, provider))
            .or_default()
            .throttled += 1;
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let (at, label, gate_wait) = match span.extensions().get::<Started>() {
            Some(started) => (started.at, started.label.clone(), started.gate_wait),
            None => return,
        };
        let end = Instant::now();
        match span.name() {
            PHASE_SPAN => {
                let name = label.unwrap_or_else(|| NO_PHASE.into());
                let mut tally = self.lock();
                if let Some((_, wall)) = tally.phases.iter_mut().find(|(n, _)| *n == name) {
                    *wall += end - at;
                }
            }
            PROVIDER_CALL_SPAN => {
                let phase = nearest(&labelled(span.scope().skip(1)), PHASE_SPAN)
                    .unwrap_or_else(|| NO_PHASE.into());
                let provider = label.unwrap_or_else(|| "-".into());
                let mut tally = self.lock();
                let row = tally.rows.entry((phase, provider)).or_default();
                row.calls += 1;
                row.summed += end - at;
                row.gate_wait += gate_wait;
                row.intervals.push((at, end));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::spans;
    use closeout_contract::{telemetry, CallGate, Limits};
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    /// Two phases; in the first, two overlapping AWS calls (one answer throttled, one call
    /// waiting at the gate for a slot) and a Vault call; in the second, a throttled Azure answer
    /// inside an action; one AWS call outside every phase.
    #[tokio::test(start_paused = true)]
    async fn calls_time_and_throttles_are_counted_per_phase_and_provider() {
        let timings = Timings::default();
        let subscriber = tracing_subscriber::registry().with(timings.layer());
        let _guard = tracing::subscriber::set_default(subscriber);
        let limits = |max_in_flight| Limits {
            max_in_flight,
            requests_per_second: 1000.0,
            burst: 1000,
        };
        let aws = CallGate::named("aws", limits(1));
        let vault = CallGate::named("vault", limits(4));
        let sleep = |ms| tokio::time::sleep(Duration::from_millis(ms));
        let call = |gate: &CallGate, ms: u64| {
            let gate = gate.clone();
            async move {
                let _pass = gate.enter().await;
                sleep(ms).await;
            }
        };
        async {
            let throttled = async {
                let _pass = aws.enter().await;
                sleep(100).await;
                telemetry::throttled("aws", Some(Duration::from_secs(1)));
                sleep(100).await;
            };
            // One slot: the second AWS call waits 200 ms at the gate, then takes 300 ms.
            tokio::join!(throttled, call(&aws, 300));
            call(&vault, 50).await;
        }
        .instrument(spans::phase("resolve"))
        .await;
        // A span's parent is the span current when it is created, not when it is entered.
        async {
            async { telemetry::throttled("azure", None) }
                .instrument(spans::action("k1", "rotate", "azure"))
                .await;
        }
        .instrument(spans::phase("rotate"))
        .await;
        call(&aws, 10).await;

        let tally = timings.tally.lock().unwrap();
        let names: Vec<_> = tally.phases.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["resolve", "rotate"]);
        assert_eq!(tally.phases[0].1, Duration::from_millis(550));
        let aws_row = &tally.rows[&("resolve".into(), "aws".into())];
        assert_eq!((aws_row.calls, aws_row.throttled), (2, 1));
        assert_eq!(aws_row.summed, Duration::from_millis(500));
        assert_eq!(aws_row.in_flight(), Duration::from_millis(500));
        assert_eq!(aws_row.gate_wait, Duration::from_millis(200));
        let vault_row = &tally.rows[&("resolve".into(), "vault".into())];
        assert_eq!(
            (vault_row.calls, vault_row.summed),
            (1, Duration::from_millis(50))
        );
        let azure = &tally.rows[&("rotate".into(), "azure".into())];
        assert_eq!((azure.calls, azure.throttled), (0, 1));
        let outside = &tally.rows[&(NO_PHASE.into(), "aws".into())];
        assert_eq!(outside.calls, 1);
        drop(tally);

        let table = timings.render();
        assert!(table.contains("resolve"), "{table}");
        let total = table.lines().last().unwrap_or_default();
        assert!(
            total.starts_with("total") && total.split_whitespace().nth(1) == Some("4"),
            "{table}"
        );
    }

    #[test]
    fn in_flight_time_is_the_union_of_the_calls() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let row = Row {
            intervals: vec![(at(0), at(10)), (at(5), at(20)), (at(30), at(40))],
            ..Row::default()
        };
        assert_eq!(row.in_flight(), Duration::from_millis(30));
    }
}
