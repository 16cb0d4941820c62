//! Group commit of webhook intake: concurrent submitters share one transaction and one fsync.
//!
//! Every accepted event must be on disk before its `202` ("durable before acknowledged"). With
//! one transaction per event, intake is bounded by the disk's fsyncs per second, and concurrent
//! requests queue on the connection's lock anyway. Here a single task takes the events waiting
//! at that moment (up to [`MAX_BATCH`]), stores them with [`EventQueue::submit_batch`] (one commit),
//! and only then answers each submitter: the promise holds for every event, and the fsync is
//! paid once per batch. Under no load a batch is one event and nothing waits for company.
//!
//! Invariant: no submitter is answered before the commit holding its event returned.

use super::queue::{EventQueue, QueueError, Submitted};
use crate::event::LifecycleEvent;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

/// Most events in one transaction (bounds how long the first of them waits for the commit).
pub const MAX_BATCH: usize = 256;

/// One submitter's event and where its answer goes.
struct Pending {
    event: LifecycleEvent,
    received_at: DateTime<Utc>,
    answer: oneshot::Sender<Result<Submitted, QueueError>>,
}

/// A handle to the group-commit task; cheap to clone. The task ends when every handle is dropped.
#[derive(Clone)]
pub struct GroupCommit {
    sender: mpsc::UnboundedSender<Pending>,
}

impl GroupCommit {
    /// Start the task that commits `queue`'s submissions in groups. Needs a tokio runtime.
    pub fn start(queue: EventQueue) -> GroupCommit {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(queue, receiver));
        GroupCommit { sender }
    }

    /// Store `event` durably (or report the stored event it duplicates); returns after the
    /// commit that holds it.
    pub async fn submit(
        &self,
        event: LifecycleEvent,
        received_at: DateTime<Utc>,
    ) -> Result<Submitted, QueueError> {
        let (answer, answered) = oneshot::channel();
        self.sender
            .send(Pending {
                event,
                received_at,
                answer,
            })
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// The group-commit task is gone (the runtime is shutting down), so the event was not stored.
fn stopped() -> QueueError {
    QueueError::Interrupted(super::blocking::Interrupted)
}

/// Take what is waiting, commit it as one batch off the runtime, answer each; repeat. While a
/// batch commits, the next one gathers in the channel.
async fn commit_loop(queue: EventQueue, mut receiver: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let taken = std::mem::take(&mut batch);
        let (events, answers): (Vec<_>, Vec<_>) = taken
            .into_iter()
            .map(|p| ((p.event, p.received_at), p.answer))
            .unzip();
        let size = events.len();
        let stored = queue.call(move |q| q.submit_batch(&events)).await;
        match stored {
            Ok(results) => {
                for (answer, result) in answers.into_iter().zip(results) {
                    // A submitter that went away (its client disconnected) needs no answer:
                    // its event is stored all the same, and a retry is a duplicate.
                    let _ = answer.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = size, "cannot store a batch of events");
                let message = e.to_string();
                for answer in answers {
                    let _ = answer.send(Err(QueueError::BatchFailed {
                        events: size,
                        message: message.clone(),
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventSource;
    use crate::trigger::Trigger;

    fn leaver(id: &str) -> LifecycleEvent {
        LifecycleEvent {
            source: EventSource::Webhook,
            external_id: id.into(),
            kind: Trigger::Leaver,
            identity: format!("person-{id}"),
            attributes: Default::default(),
            effective_at: Utc::now(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submitters_are_each_answered_after_their_event_is_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("queue.db");
        let queue = EventQueue::open(&path).expect("open");
        let commit = GroupCommit::start(queue);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let commit = commit.clone();
            // Every tenth event repeats an earlier id: a duplicate, stored once.
            let id = if i % 10 == 9 { i - 1 } else { i };
            tasks.spawn(async move { commit.submit(leaver(&format!("e{id}")), Utc::now()).await });
        }
        let mut new = 0;
        let mut duplicates = 0;
        while let Some(answer) = tasks.join_next().await {
            match answer.expect("joined").expect("stored") {
                Submitted::New { .. } => new += 1,
                Submitted::Duplicate { .. } => duplicates += 1,
            }
        }
        assert_eq!((new, duplicates), (180, 20));
        // Read back through a connection of its own: every answered event is on the file.
        let reopened = EventQueue::open(&path).expect("reopen");
        assert_eq!(reopened.depth().expect("depth"), 180);
    }
}
