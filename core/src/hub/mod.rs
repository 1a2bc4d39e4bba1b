//! The hub: per-user delivery of typed events over WebSocket connections,
//! with topics, presence, priorities, history and resume. Sans-IO, like the
//! rest of the core, behind the `hub` feature.
//!
//! Two state machines, with a seam between them that the caller carries
//! values across:
//!
//! - [`Streams`], the one owner of every stream's epoch, offsets, history
//!   and presence. A publish goes here; so do resumes. It answers with
//!   [`Reply`]s: deliveries and answers.
//! - [`Hub`], the delivery side: connections (each of one authenticated
//!   user for its whole life), their subscriptions, and their outbound
//!   queues with a byte budget and a drop policy by [`Priority`]. It asks
//!   the streams' owner with [`Request`]s.
//!
//! ```text
//!  publish ──► Streams ──Reply::Deliver(entry)──► Hub ──poll_message──► Connection::send
//!                ▲   └──────answers──────────────► │      (only while not backpressured)
//!                └────────────Request──────────────┘
//! ```
//!
//! Every item of a stream — an event, or a `join` or `leave` in a topic
//! that tracks presence — gets the stream's next offset and is written
//! once, as the JSON text every recipient gets; queues share its bytes.
//! Local publishes, replays from history and (later) publishes from other
//! nodes reach connections by the one path, [`Hub::handle_reply`].
//!
//! The guarantees, which `core/tests/hub_model.rs` checks over random
//! interleavings:
//!
//! - an item reaches only connections of the stream's user, of every
//!   user for `$all`, or subscribed to the topic;
//! - each connection gets a stream's items in offset order, each at most
//!   once; every one it does not get live is named in a `gap`, or it was
//!   closed as a slow consumer and the items are in history for its resume;
//! - a resume replays exactly the missed items, or says `recovered: false`
//!   and replays nothing;
//! - CRITICAL events are never dropped: a connection that cannot take one
//!   is closed with [`close_codes::SLOW_CONSUMER`];
//! - every queue and history stays within its configured budget.
//!
//! The wire protocol is in `core/PROTOCOL.md`.

mod config;
mod error;
pub mod event;
#[allow(clippy::module_inception)] // the module's main type
mod hub;
mod protocol;
mod queue;
mod streams;
mod topic;

pub use config::{HubConfig, Namespace};
pub use error::Error;
pub use event::{
    AgentCompleted, AgentStarted, AgentThinking, CustomEvent, Event, Priority, RunError, RunStatus,
    ToolCompleted, ToolExecuting,
};
pub use hub::{ConnectionId, Hub, Identity, MAX_SHARDS, Output, Resume};
pub use protocol::{ClientMessage, ErrorCode, Refusal, RequestId};
pub use streams::{
    Entry, Epoch, MAX_RECIPIENTS, Position, Publication, Recovery, Reply, Request, Streams, Target,
};
pub use topic::{MAX_TOPIC_LEN, Stream, Topic, TopicPattern, UserId};

/// The close codes the hub closes connections with (RFC 6455 leaves
/// 4000–4999 to applications).
pub mod close_codes {
    use crate::CloseCode;

    /// A CRITICAL event (or an answer) did not fit the connection's queue:
    /// the client reads too slowly. Reconnect and resume; the events are in
    /// history.
    pub const SLOW_CONSUMER: CloseCode = CloseCode::new(4001);
    /// The client sent more invalid messages than
    /// [`HubConfig::max_errors`](super::HubConfig::max_errors).
    pub const TOO_MANY_ERRORS: CloseCode = CloseCode::new(4002);
}

/// Carries the seam between one hub and its streams' owner in one process:
/// every request to `streams`, every reply back, in order, until nothing
/// moves. The hub's other outputs ([`Output::Ready`], [`Output::Close`])
/// go to `other`, with the hub, so a close can
/// [`disconnect`](Hub::disconnect) at once. `timestamp_ms` is the wall
/// clock now, for clients' publishes. Returns to how many connections the
/// deliveries it carried were queued: after a
/// [`Streams::publish`], the publish's count.
///
/// ```
/// use std::time::Instant;
/// use sockeye_core::hub::{Error, Hub, HubConfig, Identity, Output, Resume, Streams, carry};
///
/// let mut streams = Streams::new(HubConfig::default(), 42)?;
/// let mut hub = Hub::new(HubConfig::default())?;
/// let alice = hub.connect(Identity::new("alice")?, Resume::default())?;
/// let mut ready = Vec::new();
/// carry(&mut hub, &mut streams, Instant::now(), 0, |_, output| {
///     if let Output::Ready(id) = output {
///         ready.push(id);
///     }
/// });
/// assert_eq!(ready, [alice]);
/// # Ok::<(), Error>(())
/// ```
pub fn carry(
    hub: &mut Hub,
    streams: &mut Streams,
    now: std::time::Instant,
    timestamp_ms: u64,
    mut other: impl FnMut(&mut Hub, Output),
) -> usize {
    let mut queued = 0;
    loop {
        let mut moved = false;
        while let Some(output) = hub.poll_output() {
            moved = true;
            match output {
                Output::Request(request) => streams.handle(now, timestamp_ms, request),
                output => other(hub, output),
            }
        }
        while let Some(reply) = streams.poll_reply() {
            moved = true;
            queued += hub.handle_reply(reply);
        }
        if !moved {
            return queued;
        }
    }
}
