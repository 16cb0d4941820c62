//! The listener: accepts connections up to `max_connections`, serves each with hyper's HTTP/1
//! on a task of its own, and closes connections that hold a slot without using it.
//!
//! - **Connection limit**: a slot is taken before `accept`, so beyond the limit new connections
//!   wait in the kernel's listen backlog (and are refused by the kernel once that is full)
//!   until a served connection closes.
//! - **Header-read timeout**: a request's headers must be complete within
//!   `header_read_timeout_secs` of its first byte (of the connection's opening, for its first
//!   request); a client that trickles or stops half-way is disconnected.
//! - **Idle timeout**: a kept-alive connection waiting for its next request is closed after
//!   `idle_timeout_secs`.
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive connection waits for its next
//! request, so it cannot give the two limits separately; both are kept here instead, in
//! [`Guarded`], which sees the connection's bytes and, through [`Phase`], whether a request is
//! being handled (no deadline then: a handler may take as long as its work does).
//!
//! Shutdown: the accept loop stops at once; each connection finishes the request it is
//! serving and closes (hyper's graceful shutdown), and [`serve`] returns when all have.

use axum::Router;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The listener's limits (from `[serve]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// From a request's first byte until its headers are complete.
    pub header_read: Duration,
    /// Between requests on a kept-alive connection.
    pub idle: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serve `router` on `listener` until `shutdown` completes, then let the connections finish
/// their requests and return.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first: beyond the limit, connections wait in the backlog, not in memory here.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // The semaphore is never closed; stop serving rather than spin if it were.
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Per-connection errors (reset before accept) and resource exhaustion
                    // (EMFILE): log, pause briefly so a persistent error does not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            stream,
            router.clone(),
            limits,
            closing.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// Serve one connection; its slot is given back when this returns.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let phase = Arc::new(Phase::default());
    let io = hyper_util::rt::TokioIo::new(Guarded::new(stream, phase.clone(), limits));
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let busy = Busy::begin(&phase);
        let mut router = router.clone();
        async move {
            let _busy = busy;
            tower_service::Service::call(&mut router, req).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The timeouts are Guarded's (see the module documentation); hyper has no timer, so its
    // own header-read timeout stays off.
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        _ = closing.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// Whether a connection's requests are being handled, shared by its service and its I/O.
#[derive(Debug, Default)]
struct Phase {
    /// Requests being handled now.
    in_flight: AtomicUsize,
    /// Requests handled so far (a change means a response was just produced).
    finished: AtomicU64,
    /// The connection's task, parked on a read while a request was handled: woken when the
    /// request ends, so the idle deadline starts (hyper does not read again by itself until
    /// the client sends something).
    parked: std::sync::Mutex<Option<std::task::Waker>>,
}

impl Phase {
    fn park(&self, waker: &std::task::Waker) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        *parked = Some(waker.clone());
    }

    fn unpark(&self) {
        let parked = self.parked.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(waker) = parked {
            waker.wake();
        }
    }
}

/// A request being handled; dropped when its response is produced or the connection drops it.
struct Busy(Arc<Phase>);

impl Busy {
    fn begin(phase: &Arc<Phase>) -> Busy {
        phase.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(phase.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.unpark();
    }
}

/// What the connection waits for, and so which deadline applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// The rest of a request's headers (or a new connection's first request).
    Head,
    /// The first byte of the next request on a kept-alive connection.
    Idle,
}

/// A TCP stream that fails its reads once the connection has waited too long for headers or
/// for a next request.
struct Guarded {
    stream: TcpStream,
    phase: Arc<Phase>,
    limits: Limits,
    waiting: Waiting,
    deadline: Pin<Box<Sleep>>,
    seen_finished: u64,
}

impl Guarded {
    fn new(stream: TcpStream, phase: Arc<Phase>, limits: Limits) -> Guarded {
        Guarded {
            stream,
            phase,
            limits,
            waiting: Waiting::Head,
            deadline: Box::pin(tokio::time::sleep(limits.header_read)),
            seen_finished: 0,
        }
    }

    fn wait_for(&mut self, waiting: Waiting) {
        self.waiting = waiting;
        let after = match waiting {
            Waiting::Head => self.limits.header_read,
            Waiting::Idle => self.limits.idle,
        };
        self.deadline.as_mut().reset(Instant::now() + after);
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let busy = this.phase.in_flight.load(Ordering::SeqCst) > 0;
        let finished = this.phase.finished.load(Ordering::SeqCst);
        if finished != this.seen_finished {
            // A response was produced since the last read: the next request starts idle.
            this.seen_finished = finished;
            if !busy {
                this.wait_for(Waiting::Idle);
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(())) => {
                if !busy && this.waiting == Waiting::Idle && buf.filled().len() > before {
                    // The next request's first byte: its headers are now on the clock.
                    this.wait_for(Waiting::Head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // A handler is at work (or reading its body): no deadline until it ends.
            Poll::Pending if busy => {
                this.phase.park(cx.waker());
                Poll::Pending
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    match this.waiting {
                        Waiting::Head => "request headers not received in time",
                        Waiting::Idle => "kept-alive connection idle too long",
                    },
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
