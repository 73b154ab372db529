//! The futures of queued requests, and the driver's end of them.
//!
//! A request is queued when its method returns, not when its future is
//! first polled, so requests go out in call order however their futures
//! are awaited; dropping a future does not cancel the request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::Error;
use crate::rest::Ack;

/// Resolves to the server's reply, or fails early with the error found
/// while queueing.
#[derive(Debug)]
enum Waiting<T> {
    Failed(Option<Error>),
    Reply(oneshot::Receiver<Result<T, Error>>),
}

impl<T> Waiting<T> {
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        match self {
            Waiting::Failed(err) => Poll::Ready(Err(err.take().unwrap_or(Error::Closed))),
            Waiting::Reply(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(Error::Closed))),
        }
    }
}

/// The acknowledgement of a queued publish, append, update or delete: the
/// operation is durable once it resolves `Ok`.
#[derive(Debug)]
#[must_use = "the operation is sent anyway; await this to learn whether it was applied"]
pub struct AckFuture(Waiting<Ack>);

impl AckFuture {
    pub(crate) fn waiting(rx: oneshot::Receiver<Result<Ack, Error>>) -> AckFuture {
        AckFuture(Waiting::Reply(rx))
    }

    pub(crate) fn failed(err: Error) -> AckFuture {
        AckFuture(Waiting::Failed(Some(err)))
    }
}

impl Future for AckFuture {
    type Output = Result<Ack, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll_reply(cx)
    }
}

/// The server's confirmation of a queued request that has nothing to
/// acknowledge but its success: presence enter/update/leave, an ephemeral
/// publish.
#[derive(Debug)]
#[must_use = "the request is sent anyway; await this to learn whether it was accepted"]
pub struct DoneFuture(Waiting<()>);

impl DoneFuture {
    pub(crate) fn waiting(rx: oneshot::Receiver<Result<(), Error>>) -> DoneFuture {
        DoneFuture(Waiting::Reply(rx))
    }

    pub(crate) fn failed(err: Error) -> DoneFuture {
        DoneFuture(Waiting::Failed(Some(err)))
    }
}

impl Future for DoneFuture {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll_reply(cx)
    }
}

/// Who waits for a request's reply.
#[derive(Debug)]
pub(crate) enum Replier {
    /// An [`AckFuture`].
    Ack(oneshot::Sender<Result<Ack, Error>>),
    /// A [`DoneFuture`].
    Done(oneshot::Sender<Result<(), Error>>),
    /// Nobody: a request the driver makes by itself (re-entering presence).
    Nobody,
}

impl Replier {
    /// Answers with an `ack` frame's content.
    pub(crate) fn ack(self, ack: Ack) {
        match self {
            Replier::Ack(tx) => {
                let _ = tx.send(Ok(ack));
            }
            Replier::Done(tx) => {
                let _ = tx.send(Ok(()));
            }
            Replier::Nobody => {}
        }
    }

    /// Answers with an `ok` frame.
    pub(crate) fn done(self) {
        match self {
            Replier::Done(tx) => {
                let _ = tx.send(Ok(()));
            }
            Replier::Ack(tx) => {
                let _ = tx.send(Err(Error::Protocol(
                    "an ok frame answered an operation waiting for its ack".into(),
                )));
            }
            Replier::Nobody => {}
        }
    }

    /// Answers with a failure; one nobody waits for is logged.
    pub(crate) fn fail(self, err: Error) {
        match self {
            Replier::Ack(tx) => {
                let _ = tx.send(Err(err));
            }
            Replier::Done(tx) => {
                let _ = tx.send(Err(err));
            }
            Replier::Nobody => tracing::warn!(%err, "a request the client made by itself failed"),
        }
    }
}

impl From<oneshot::Sender<Result<Ack, Error>>> for Replier {
    fn from(tx: oneshot::Sender<Result<Ack, Error>>) -> Replier {
        Replier::Ack(tx)
    }
}

impl From<oneshot::Sender<Result<(), Error>>> for Replier {
    fn from(tx: oneshot::Sender<Result<(), Error>>) -> Replier {
        Replier::Done(tx)
    }
}
