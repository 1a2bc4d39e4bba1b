//! The events the hub delivers: five typed agent events, and custom events.
//!
//! An agent backend reports a run to its user with five events, each a Rust
//! type with a fixed JSON shape:
//!
//! | Name              | Type              | What a chat UI does with it                  |
//! |-------------------|-------------------|----------------------------------------------|
//! | `agent_started`   | [`AgentStarted`]  | opens the run, shows a spinner               |
//! | `agent_thinking`  | [`AgentThinking`] | shows the reasoning, whole or as it streams  |
//! | `tool_executing`  | [`ToolExecuting`] | shows the tool being called, with its input  |
//! | `tool_completed`  | [`ToolCompleted`] | attaches the result to that call             |
//! | `agent_completed` | [`AgentCompleted`]| closes the run: the response, or why it failed |
//!
//! Any other name is a [`CustomEvent`]: a name the application chooses and any
//! JSON data. [`Event`] is one of the six.
//!
//! ## The data on the wire
//!
//! An event travels as a name and a data object; the hub's envelope around
//! them (stream, offset, priority, timestamp) is not part of this module.
//! Field names are snake_case, and optional fields are left out when they are
//! absent (a `null` is read as absent too). [`Event::parse`] reads exactly
//! what [`Event::write_data`] writes:
//!
//! ```
//! use serde_json::json;
//! use sockeye_core::hub::event::Event;
//!
//! let examples = [
//!     ("agent_started", json!({ "run_id": "run_42", "thread_id": "thread_7" })),
//!     ("agent_thinking", json!({
//!         "run_id": "run_42",
//!         "thread_id": "thread_7",
//!         "message_id": "reasoning_1",
//!         "delta": "The user wants the weather in Oslo, so ",
//!     })),
//!     ("tool_executing", json!({
//!         "run_id": "run_42",
//!         "thread_id": "thread_7",
//!         "tool_call_id": "call_1",
//!         "tool_name": "get_weather",
//!         "input": { "city": "Oslo" },
//!     })),
//!     ("tool_completed", json!({
//!         "run_id": "run_42",
//!         "thread_id": "thread_7",
//!         "tool_call_id": "call_1",
//!         "tool_name": "get_weather",
//!         "result": { "celsius": 4, "sky": "overcast" },
//!     })),
//!     ("agent_completed", json!({
//!         "run_id": "run_42",
//!         "thread_id": "thread_7",
//!         "status": "ok",
//!         "response": "It is 4 °C and overcast in Oslo.",
//!     })),
//!     ("agent_completed", json!({
//!         "run_id": "run_43",
//!         "status": "error",
//!         "error": { "message": "the model provider timed out", "code": "timeout" },
//!     })),
//!     ("agent_completed", json!({ "run_id": "run_44", "status": "cancelled" })),
//!     ("invoice.paid", json!({ "invoice": "INV-7", "amount_cents": 1250 })),
//! ];
//! for (name, data) in examples {
//!     let event = Event::parse(name, data.clone())?;
//!     assert_eq!(event.name(), name);
//!     let mut wire = Vec::new();
//!     event.write_data(&mut wire);
//!     assert_eq!(serde_json::from_slice::<serde_json::Value>(&wire)?, data);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Checks
//!
//! [`Event::parse`] is the door for events from outside (a publish API, a
//! client); it reads the typed events and then runs [`Event::validate`].
//! Every failure is an [`Error`] naming the event and the field:
//!
//! * a typed event's data must be a JSON object ([`Error::NotAnObject`]); a
//!   custom event's may be any JSON value;
//! * a required field that is absent is [`Error::MissingField`], and a field
//!   of the wrong type [`Error::InvalidField`];
//! * a field the schema does not define is [`Error::UnknownField`]. Unknown
//!   fields are refused rather than ignored because the hub re-serializes the
//!   typed value, so an ignored field would vanish on the way to the user.
//!   The likeliest one is a camelCase name copied from AG-UI (`threadId`),
//!   which would otherwise drop the thread without a word. Data the schema
//!   has no place for belongs in a custom event;
//! * identifiers (`run_id`, `thread_id`, `message_id`, `tool_call_id`,
//!   `tool_name`, ...) must not be empty, where present;
//! * the rules of [`AgentThinking`] and [`AgentCompleted`] about which fields
//!   go together;
//! * a custom event's name follows the rule of [`CustomEvent`] and is not one
//!   of the five typed names.
//!
//! ## Priorities
//!
//! Each event has a [`Priority`], which decides what a slow connection's
//! queue drops first. [`Event::default_priority`] is
//! [`Critical`](Priority::Critical) for the five agent events, because a chat
//! UI cannot recover from a lost step of a run without reloading, and
//! [`Normal`](Priority::Normal) for custom events. A publisher may choose
//! another one per publish.
//!
//! ## Mapping onto AG-UI
//!
//! Our events map onto [AG-UI]'s field by field, so an AG-UI output format
//! is a function of each event alone, keeping no state between them:
//!
//! | Our event           | AG-UI events                                                         |
//! |---------------------|----------------------------------------------------------------------|
//! | `agent_started`     | `RUN_STARTED`                                                        |
//! | `agent_thinking`    | with `delta`: `REASONING_MESSAGE_CHUNK`; with `text`: `REASONING_MESSAGE_START`, `REASONING_MESSAGE_CONTENT`, `REASONING_MESSAGE_END` |
//! | `tool_executing`    | `TOOL_CALL_START`, `TOOL_CALL_ARGS`, `TOOL_CALL_END`                 |
//! | `tool_completed`    | `TOOL_CALL_RESULT`                                                   |
//! | `agent_completed`   | `ok`: `RUN_FINISHED`; `error` and `cancelled`: `RUN_ERROR`           |
//! | custom              | `CUSTOM`                                                             |
//!
//! | Our field                          | AG-UI field                                        |
//! |------------------------------------|----------------------------------------------------|
//! | `agent_started.run_id`             | `RUN_STARTED.runId`                                |
//! | `agent_started.thread_id`          | `RUN_STARTED.threadId` ¹                           |
//! | `agent_started.parent_run_id`      | `RUN_STARTED.parentRunId`                          |
//! | `agent_thinking.message_id`        | `messageId` of each `REASONING_MESSAGE_*`          |
//! | `agent_thinking.delta`             | `REASONING_MESSAGE_CHUNK.delta`                    |
//! | `agent_thinking.text`              | `REASONING_MESSAGE_CONTENT.delta`                  |
//! | `tool_executing.tool_call_id`      | `toolCallId` of each `TOOL_CALL_*`                 |
//! | `tool_executing.tool_name`         | `TOOL_CALL_START.toolCallName`                     |
//! | `tool_executing.parent_message_id` | `TOOL_CALL_START.parentMessageId`                  |
//! | `tool_executing.input`             | `TOOL_CALL_ARGS.delta`, as JSON text               |
//! | `tool_completed.tool_call_id`      | `TOOL_CALL_RESULT.toolCallId`                      |
//! | `tool_completed.message_id`        | `TOOL_CALL_RESULT.messageId` ²                     |
//! | `tool_completed.result`            | `TOOL_CALL_RESULT.content` ³                       |
//! | `agent_completed.run_id`           | `RUN_FINISHED.runId`                               |
//! | `agent_completed.thread_id`        | `RUN_FINISHED.threadId` ¹                          |
//! | `agent_completed.response`         | `RUN_FINISHED.result`                              |
//! | `agent_completed.error.message`    | `RUN_ERROR.message`                                |
//! | `agent_completed.error.code`       | `RUN_ERROR.code`                                   |
//! | `agent_completed.status`           | which event; `cancelled` is `RUN_ERROR` with `code` `"cancelled"` and `message` `"run cancelled"` ⁴ |
//! | custom event name                  | `CUSTOM.name`                                      |
//! | custom event data                  | `CUSTOM.value`                                     |
//!
//! 1. AG-UI requires `threadId`; when we have none, the formatter uses the
//!    `run_id`, so that a thread of one run stands for a run without one.
//!    Both events of a run do the same, so they agree.
//! 2. AG-UI requires `messageId` on a tool result; when we have none, the
//!    formatter uses the `tool_call_id`, which is already unique per result.
//! 3. `content` is a string in AG-UI: a string `result` goes as it is, any
//!    other JSON as its text.
//! 4. AG-UI has no cancelled outcome, and a run must end with `RUN_FINISHED`
//!    or `RUN_ERROR`; a stopped run did not finish.
//!
//! Some of our fields have no AG-UI field, because AG-UI says them once per
//! run or per call and we say them on every event: `run_id` and `thread_id`
//! on the thinking and tool events and on a failed or cancelled
//! `agent_completed` (AG-UI events belong to the run its `RUN_STARTED`
//! opened), and `tool_name` on `tool_completed` (AG-UI names the tool on
//! `TOOL_CALL_START`). We repeat them because our clients may subscribe or
//! resume mid-run and read the stream one event at a time; the formatter
//! leaves them out. AG-UI has no sequence numbers or resume either: the
//! hub's envelope adds them.
//!
//! [AG-UI]: https://docs.ag-ui.com/concepts/events

use std::fmt;
use std::str::FromStr;

use serde::de::value::{SeqDeserializer, StrDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Unexpected};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Error;
use super::error::list;

/// How much an event matters when a slow connection's queue must drop some.
///
/// Ordered from `Low` to `Critical`; the queue drops the lowest first. The
/// JSON form is the lowercase name.
///
/// ```
/// use sockeye_core::hub::event::Priority;
///
/// assert!(Priority::Low < Priority::Normal && Priority::High < Priority::Critical);
/// assert_eq!("high".parse::<Priority>()?, Priority::High);
/// assert_eq!(Priority::Critical.as_str(), "critical");
/// assert_eq!(serde_json::to_string(&Priority::Normal)?, r#""normal""#);
/// assert!("urgent".parse::<Priority>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Dropped first: things a client can do without, like progress ticks.
    Low,
    /// The default for custom events.
    Normal,
    /// Kept over `Normal` and `Low`.
    High,
    /// Never dropped silently: a connection that cannot queue one is closed
    /// as a slow consumer instead. The default for the five agent events.
    Critical,
}

impl Priority {
    /// The name on the wire: `low`, `normal`, `high` or `critical`.
    ///
    /// ```
    /// use sockeye_core::hub::event::Priority;
    ///
    /// assert_eq!(Priority::Low.as_str(), "low");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

impl FromStr for Priority {
    type Err = Error;

    /// Reads the wire name, which is lowercase only, like the JSON form.
    ///
    /// ```
    /// use sockeye_core::hub::{Error, event::Priority};
    ///
    /// assert_eq!("low".parse::<Priority>(), Ok(Priority::Low));
    /// assert_eq!(
    ///     "Low".parse::<Priority>(),
    ///     Err(Error::InvalidPriority { value: "Low".into() })
    /// );
    /// ```
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            "critical" => Ok(Priority::Critical),
            _ => Err(Error::InvalidPriority {
                value: s.to_owned(),
            }),
        }
    }
}

/// `agent_started`: a run began.
///
/// ```
/// use serde_json::json;
/// use sockeye_core::hub::event::AgentStarted;
///
/// let started = AgentStarted {
///     run_id: "run_42".into(),
///     thread_id: Some("thread_7".into()),
///     parent_run_id: None,
/// };
/// assert_eq!(
///     serde_json::to_value(&started)?,
///     json!({ "run_id": "run_42", "thread_id": "thread_7" })
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentStarted {
    /// The run, named by the agent backend. Required, not empty.
    pub run_id: String,
    /// The conversation the run belongs to, if the backend has threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The run that started this one, for sub-agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
}

impl AgentStarted {
    /// The event's name on the wire.
    ///
    /// ```
    /// assert_eq!(sockeye_core::hub::event::AgentStarted::NAME, "agent_started");
    /// ```
    pub const NAME: &'static str = "agent_started";

    fn validate(&self) -> Result<(), Error> {
        let event = Self::NAME;
        non_empty(event, "run_id", &self.run_id)?;
        optional_non_empty(event, "thread_id", &self.thread_id)?;
        optional_non_empty(event, "parent_run_id", &self.parent_run_id)
    }
}

/// `agent_thinking`: the agent's reasoning, whole or a piece at a time.
///
/// Exactly one of `text` and `delta` is present. `text` is the whole of the
/// reasoning block `message_id`, in one event; `delta` is the next piece of
/// it, to append to the pieces before. A block is sent one way or the
/// other, not both. Two fields rather than one with a flag, so that a client
/// sees which it got from the keys alone, and so that the Rust type and the
/// JSON have the same shape.
///
/// ```
/// use serde_json::json;
/// use sockeye_core::hub::event::{AgentThinking, Event};
///
/// let piece = AgentThinking {
///     run_id: "run_42".into(),
///     thread_id: None,
///     message_id: "reasoning_1".into(),
///     text: None,
///     delta: Some("so I will call get_weather.".into()),
/// };
/// assert_eq!(
///     serde_json::to_value(&piece)?,
///     json!({
///         "run_id": "run_42",
///         "message_id": "reasoning_1",
///         "delta": "so I will call get_weather.",
///     })
/// );
///
/// // Both, or neither, is refused.
/// let both = json!({ "run_id": "run_42", "message_id": "m", "text": "a", "delta": "b" });
/// assert!(Event::parse("agent_thinking", both).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentThinking {
    /// The run. Required, not empty.
    pub run_id: String,
    /// The conversation, if the backend has threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Which block of reasoning this is. Required, not empty: a run can
    /// reason more than once, and a delta is meaningless without knowing
    /// which block it extends.
    pub message_id: String,
    /// The whole text of the block. May be empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The next piece of reasoning text. Not empty, because an empty piece
    /// changes nothing and would still cost a queue slot at every recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<String>,
}

impl AgentThinking {
    /// The event's name on the wire.
    ///
    /// ```
    /// assert_eq!(sockeye_core::hub::event::AgentThinking::NAME, "agent_thinking");
    /// ```
    pub const NAME: &'static str = "agent_thinking";

    fn validate(&self) -> Result<(), Error> {
        let event = Self::NAME;
        non_empty(event, "run_id", &self.run_id)?;
        optional_non_empty(event, "thread_id", &self.thread_id)?;
        non_empty(event, "message_id", &self.message_id)?;
        match (&self.text, &self.delta) {
            (Some(_), None) => Ok(()),
            (None, Some(delta)) => non_empty(event, "delta", delta),
            _ => Err(Error::ExactlyOneOf {
                event,
                fields: &["text", "delta"],
            }),
        }
    }
}

/// `tool_executing`: the agent called a tool.
///
/// ```
/// use serde_json::json;
/// use sockeye_core::hub::event::ToolExecuting;
///
/// let call = ToolExecuting {
///     run_id: "run_42".into(),
///     thread_id: None,
///     tool_call_id: "call_1".into(),
///     tool_name: "get_weather".into(),
///     input: json!({ "city": "Oslo" }),
///     parent_message_id: None,
/// };
/// assert_eq!(
///     serde_json::to_value(&call)?,
///     json!({
///         "run_id": "run_42",
///         "tool_call_id": "call_1",
///         "tool_name": "get_weather",
///         "input": { "city": "Oslo" },
///     })
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolExecuting {
    /// The run. Required, not empty.
    pub run_id: String,
    /// The conversation, if the backend has threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The call, which [`ToolCompleted`] names again. Required, not empty.
    pub tool_call_id: String,
    /// The tool. Required, not empty.
    pub tool_name: String,
    /// The arguments, as JSON. Required: a tool without arguments gets `{}`
    /// (or `null`), so that a missing key is always a mistake.
    pub input: Value,
    /// The assistant message the call belongs to, if the backend has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_message_id: Option<String>,
}

impl ToolExecuting {
    /// The event's name on the wire.
    ///
    /// ```
    /// assert_eq!(sockeye_core::hub::event::ToolExecuting::NAME, "tool_executing");
    /// ```
    pub const NAME: &'static str = "tool_executing";

    fn validate(&self) -> Result<(), Error> {
        let event = Self::NAME;
        non_empty(event, "run_id", &self.run_id)?;
        optional_non_empty(event, "thread_id", &self.thread_id)?;
        non_empty(event, "tool_call_id", &self.tool_call_id)?;
        non_empty(event, "tool_name", &self.tool_name)?;
        optional_non_empty(event, "parent_message_id", &self.parent_message_id)
    }
}

/// `tool_completed`: a tool call returned.
///
/// ```
/// use serde_json::json;
/// use sockeye_core::hub::event::ToolCompleted;
///
/// let done = ToolCompleted {
///     run_id: "run_42".into(),
///     thread_id: None,
///     tool_call_id: "call_1".into(),
///     tool_name: "get_weather".into(),
///     result: json!({ "celsius": 4 }),
///     message_id: Some("tool_msg_1".into()),
/// };
/// assert_eq!(
///     serde_json::to_value(&done)?,
///     json!({
///         "run_id": "run_42",
///         "tool_call_id": "call_1",
///         "tool_name": "get_weather",
///         "result": { "celsius": 4 },
///         "message_id": "tool_msg_1",
///     })
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCompleted {
    /// The run. Required, not empty.
    pub run_id: String,
    /// The conversation, if the backend has threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The call, as [`ToolExecuting`] named it. Required, not empty.
    pub tool_call_id: String,
    /// The tool, so that a client that missed the call can still label the
    /// result. Required, not empty.
    pub tool_name: String,
    /// What the tool returned, as JSON; a failed tool's error goes here too.
    /// Required.
    pub result: Value,
    /// The tool message that holds the result in the conversation, if the
    /// backend keeps one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

impl ToolCompleted {
    /// The event's name on the wire.
    ///
    /// ```
    /// assert_eq!(sockeye_core::hub::event::ToolCompleted::NAME, "tool_completed");
    /// ```
    pub const NAME: &'static str = "tool_completed";

    fn validate(&self) -> Result<(), Error> {
        let event = Self::NAME;
        non_empty(event, "run_id", &self.run_id)?;
        optional_non_empty(event, "thread_id", &self.thread_id)?;
        non_empty(event, "tool_call_id", &self.tool_call_id)?;
        non_empty(event, "tool_name", &self.tool_name)?;
        optional_non_empty(event, "message_id", &self.message_id)
    }
}

/// How a run ended, in [`AgentCompleted`]. JSON: `"ok"`, `"error"`,
/// `"cancelled"`.
///
/// ```
/// use sockeye_core::hub::event::RunStatus;
///
/// assert_eq!(serde_json::to_string(&RunStatus::Cancelled)?, r#""cancelled""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The run finished and produced its response.
    Ok,
    /// The run failed.
    Error,
    /// The run was stopped before it finished, by the user or the backend.
    Cancelled,
}

/// Why a run failed, in [`AgentCompleted::error`].
///
/// ```
/// use serde_json::json;
/// use sockeye_core::hub::event::RunError;
///
/// let error = RunError { message: "quota exceeded".into(), code: None };
/// assert_eq!(serde_json::to_value(&error)?, json!({ "message": "quota exceeded" }));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunError {
    /// What went wrong, for people. Required, not empty.
    pub message: String,
    /// What went wrong, for programs (`timeout`, `rate_limited`, ...). Not
    /// empty if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// `agent_completed`: a run ended.
///
/// `status` decides the other fields, so that each status maps onto one
/// AG-UI event with nothing left over:
///
/// | `status`    | `response` | `error`  |
/// |-------------|------------|----------|
/// | `ok`        | required   | absent   |
/// | `error`     | absent     | required |
/// | `cancelled` | absent     | absent   |
///
/// A run that answers nothing still sends a `response` (`""`, say), so that
/// a forgotten one is caught.
///
/// ```
/// use serde_json::json;
/// use sockeye_core::hub::Error;
/// use sockeye_core::hub::event::{AgentCompleted, Event, RunError, RunStatus};
///
/// let failed = AgentCompleted {
///     run_id: "run_43".into(),
///     thread_id: None,
///     status: RunStatus::Error,
///     response: None,
///     error: Some(RunError { message: "timed out".into(), code: Some("timeout".into()) }),
/// };
/// assert_eq!(
///     serde_json::to_value(&failed)?,
///     json!({
///         "run_id": "run_43",
///         "status": "error",
///         "error": { "message": "timed out", "code": "timeout" },
///     })
/// );
///
/// let no_error = json!({ "run_id": "run_43", "status": "error" });
/// assert_eq!(
///     Event::parse("agent_completed", no_error),
///     Err(Error::MissingField { event: "agent_completed", field: "error".into() })
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentCompleted {
    /// The run. Required, not empty.
    pub run_id: String,
    /// The conversation, if the backend has threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// How the run ended. Required.
    pub status: RunStatus,
    /// The run's answer, as JSON (usually a string). With `ok` only, and
    /// required there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// Why the run failed. With `error` only, and required there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

impl AgentCompleted {
    /// The event's name on the wire.
    ///
    /// ```
    /// assert_eq!(sockeye_core::hub::event::AgentCompleted::NAME, "agent_completed");
    /// ```
    pub const NAME: &'static str = "agent_completed";

    fn validate(&self) -> Result<(), Error> {
        let event = Self::NAME;
        non_empty(event, "run_id", &self.run_id)?;
        optional_non_empty(event, "thread_id", &self.thread_id)?;
        let (wants_response, wants_error) = match self.status {
            RunStatus::Ok => (true, false),
            RunStatus::Error => (false, true),
            RunStatus::Cancelled => (false, false),
        };
        match (&self.response, wants_response) {
            (None, true) => return Err(missing(event, "response")),
            (Some(_), false) => return Err(only_with(event, "response", "ok")),
            _ => {}
        }
        match (&self.error, wants_error) {
            (None, true) => Err(missing(event, "error")),
            (Some(_), false) => Err(only_with(event, "error", "error")),
            (Some(error), true) => {
                non_empty(event, "error.message", &error.message)?;
                optional_non_empty(event, "error.code", &error.code)
            }
            (None, false) => Ok(()),
        }
    }
}

/// An event the application defines: a name and any JSON data.
///
/// The name is 1 to 64 bytes of ASCII letters, digits, `_`, `.`, `:` and
/// `-`, so that it can go into logs, metrics labels and URLs unescaped, and
/// it is none of the five typed names. The data is any JSON value, not only
/// an object, because AG-UI's `CUSTOM` event allows any value too.
///
/// ```
/// use serde_json::json;
/// use sockeye_core::hub::Error;
/// use sockeye_core::hub::event::{CustomEvent, Event};
///
/// let paid = Event::from(CustomEvent { name: "invoice.paid".into(), data: json!(1250) });
/// assert_eq!(paid.validate(), Ok(()));
///
/// let disguised = Event::Custom(CustomEvent { name: "agent_started".into(), data: json!({}) });
/// assert_eq!(
///     disguised.validate(),
///     Err(Error::ReservedEventName { name: "agent_started".into() })
/// );
/// assert!(Event::parse("invoice paid", json!({})).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomEvent {
    /// The event's name.
    pub name: String,
    /// The event's data.
    pub data: Value,
}

impl CustomEvent {
    /// The longest name allowed, in bytes.
    ///
    /// ```
    /// use serde_json::json;
    /// use sockeye_core::hub::event::{CustomEvent, Event};
    ///
    /// let name = "n".repeat(CustomEvent::MAX_NAME_LEN + 1);
    /// assert!(Event::parse(&name, json!(null)).is_err());
    /// ```
    pub const MAX_NAME_LEN: usize = 64;

    fn validate(&self) -> Result<(), Error> {
        let name = &self.name;
        let invalid = |reason: String| Error::InvalidEventName {
            name: name.clone(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("it is empty".to_owned()));
        }
        if name.len() > Self::MAX_NAME_LEN {
            return Err(invalid(format!(
                "it is {} bytes long, the limit is {}",
                name.len(),
                Self::MAX_NAME_LEN
            )));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
        {
            return Err(invalid(format!(
                "it contains {c:?}; allowed are ASCII letters, digits, '_', '.', ':' and '-'"
            )));
        }
        if TYPED_NAMES.contains(&name.as_str()) {
            return Err(Error::ReservedEventName { name: name.clone() });
        }
        Ok(())
    }
}

/// The names that [`Event::parse`] reads as typed events, and that a custom
/// event therefore cannot have.
const TYPED_NAMES: [&str; 5] = [
    AgentStarted::NAME,
    AgentThinking::NAME,
    ToolExecuting::NAME,
    ToolCompleted::NAME,
    AgentCompleted::NAME,
];

/// One event the hub can deliver.
///
/// Build one from a typed value (`Event::from(started)`), or read one from
/// a name and JSON data with [`parse`](Self::parse), which also checks it.
/// An `Event` built in Rust is checked with [`validate`](Self::validate).
///
/// ```
/// use serde_json::json;
/// use sockeye_core::hub::event::{AgentStarted, Event, Priority};
///
/// let event = Event::from(AgentStarted {
///     run_id: "run_42".into(),
///     thread_id: None,
///     parent_run_id: None,
/// });
/// event.validate()?;
/// assert_eq!(event.name(), "agent_started");
/// assert_eq!(event.default_priority(), Priority::Critical);
///
/// let mut data = Vec::new();
/// event.write_data(&mut data);
/// assert_eq!(data, br#"{"run_id":"run_42"}"#);
/// assert_eq!(Event::parse("agent_started", json!({ "run_id": "run_42" }))?, event);
/// # Ok::<(), sockeye_core::hub::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `agent_started`.
    AgentStarted(AgentStarted),
    /// `agent_thinking`.
    AgentThinking(AgentThinking),
    /// `tool_executing`.
    ToolExecuting(ToolExecuting),
    /// `tool_completed`.
    ToolCompleted(ToolCompleted),
    /// `agent_completed`.
    AgentCompleted(AgentCompleted),
    /// Any other name.
    Custom(CustomEvent),
}

impl Event {
    /// Reads an event from its name and data, and checks it.
    ///
    /// The five typed names are read as their types, and their data must be
    /// a JSON object of that type's fields. Any other name is a
    /// [`CustomEvent`] with the data as it is. Then [`validate`](Self::validate)
    /// runs. The error names the event and the field at fault.
    ///
    /// ```
    /// use serde_json::json;
    /// use sockeye_core::hub::Error;
    /// use sockeye_core::hub::event::{AgentThinking, Event};
    ///
    /// let event = Event::parse(
    ///     "agent_thinking",
    ///     json!({ "run_id": "run_42", "message_id": "m1", "text": "Looking it up." }),
    /// )?;
    /// assert!(matches!(event, Event::AgentThinking(AgentThinking { text: Some(_), .. })));
    ///
    /// assert_eq!(
    ///     Event::parse("agent_started", json!({ "run_id": 42 })),
    ///     Err(Error::InvalidField {
    ///         event: "agent_started",
    ///         field: "run_id".into(),
    ///         reason: "expected a string, found a number".into(),
    ///     })
    /// );
    /// assert_eq!(
    ///     Event::parse("agent_started", json!({ "runId": "run_42" })),
    ///     Err(Error::UnknownField { event: "agent_started", field: "runId".into() })
    /// );
    /// # Ok::<(), Error>(())
    /// ```
    pub fn parse(name: &str, data: Value) -> Result<Event, Error> {
        let event = match name {
            AgentStarted::NAME => Event::AgentStarted(typed(AgentStarted::NAME, data)?),
            AgentThinking::NAME => Event::AgentThinking(typed(AgentThinking::NAME, data)?),
            ToolExecuting::NAME => Event::ToolExecuting(typed(ToolExecuting::NAME, data)?),
            ToolCompleted::NAME => Event::ToolCompleted(typed(ToolCompleted::NAME, data)?),
            AgentCompleted::NAME => Event::AgentCompleted(typed(AgentCompleted::NAME, data)?),
            _ => Event::Custom(CustomEvent {
                name: name.to_owned(),
                data,
            }),
        };
        event.validate()?;
        Ok(event)
    }

    /// Checks the rules that the types alone cannot express: identifiers
    /// that are not empty, fields that go together, and a custom event's
    /// name. [`parse`](Self::parse) runs this already; call it for events
    /// built in Rust before publishing them.
    ///
    /// ```
    /// use sockeye_core::hub::Error;
    /// use sockeye_core::hub::event::{AgentStarted, Event};
    ///
    /// let event = Event::from(AgentStarted {
    ///     run_id: String::new(),
    ///     thread_id: None,
    ///     parent_run_id: None,
    /// });
    /// assert_eq!(
    ///     event.validate(),
    ///     Err(Error::InvalidField {
    ///         event: "agent_started",
    ///         field: "run_id".into(),
    ///         reason: "must not be empty".into(),
    ///     })
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Event::AgentStarted(e) => e.validate(),
            Event::AgentThinking(e) => e.validate(),
            Event::ToolExecuting(e) => e.validate(),
            Event::ToolCompleted(e) => e.validate(),
            Event::AgentCompleted(e) => e.validate(),
            Event::Custom(e) => e.validate(),
        }
    }

    /// The event's name on the wire.
    ///
    /// ```
    /// use serde_json::json;
    /// use sockeye_core::hub::event::Event;
    ///
    /// assert_eq!(Event::parse("bill.updated", json!({}))?.name(), "bill.updated");
    /// # Ok::<(), sockeye_core::hub::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        match self {
            Event::AgentStarted(_) => AgentStarted::NAME,
            Event::AgentThinking(_) => AgentThinking::NAME,
            Event::ToolExecuting(_) => ToolExecuting::NAME,
            Event::ToolCompleted(_) => ToolCompleted::NAME,
            Event::AgentCompleted(_) => AgentCompleted::NAME,
            Event::Custom(e) => &e.name,
        }
    }

    /// The priority the event gets unless the publisher chooses one:
    /// [`Critical`](Priority::Critical) for the five agent events,
    /// [`Normal`](Priority::Normal) for custom events.
    ///
    /// ```
    /// use serde_json::json;
    /// use sockeye_core::hub::event::{Event, Priority};
    ///
    /// let custom = Event::parse("typing", json!({ "user": "ada" }))?;
    /// assert_eq!(custom.default_priority(), Priority::Normal);
    /// # Ok::<(), sockeye_core::hub::Error>(())
    /// ```
    pub fn default_priority(&self) -> Priority {
        match self {
            Event::Custom(_) => Priority::Normal,
            _ => Priority::Critical,
        }
    }

    /// Appends the event's data, as compact JSON, to `out`.
    ///
    /// This is the one serialization of a publish: the hub writes the data
    /// once into its envelope and shares the bytes among all recipients.
    /// It writes what the event holds, checked or not.
    ///
    /// ```
    /// use serde_json::json;
    /// use sockeye_core::hub::event::Event;
    ///
    /// let event = Event::parse("progress", json!([1, 2, 3]))?;
    /// let mut out = b"data=".to_vec();
    /// event.write_data(&mut out);
    /// assert_eq!(out, b"data=[1,2,3]");
    /// # Ok::<(), sockeye_core::hub::Error>(())
    /// ```
    pub fn write_data(&self, out: &mut Vec<u8>) {
        let written = match self {
            Event::AgentStarted(e) => serde_json::to_writer(&mut *out, e),
            Event::AgentThinking(e) => serde_json::to_writer(&mut *out, e),
            Event::ToolExecuting(e) => serde_json::to_writer(&mut *out, e),
            Event::ToolCompleted(e) => serde_json::to_writer(&mut *out, e),
            Event::AgentCompleted(e) => serde_json::to_writer(&mut *out, e),
            Event::Custom(e) => serde_json::to_writer(&mut *out, &e.data),
        };
        // Serializing fails only on a failed write or a map key that is not
        // a string. A `Vec` write cannot fail, and these types hold only
        // strings, unit enums and JSON values, whose keys are strings.
        written.expect("event data always serializes into a Vec");
    }
}

/// Each event type wraps into [`Event`]:
///
/// ```
/// use sockeye_core::hub::event::{AgentStarted, CustomEvent, Event};
///
/// let started = AgentStarted { run_id: "r".into(), thread_id: None, parent_run_id: None };
/// assert!(matches!(Event::from(started), Event::AgentStarted(_)));
/// let custom = CustomEvent { name: "ping".into(), data: serde_json::Value::Null };
/// assert_eq!(Event::from(custom).name(), "ping");
/// ```
macro_rules! into_event {
    ($($type:ident => $variant:ident),*) => {$(
        impl From<$type> for Event {
            fn from(event: $type) -> Self {
                Event::$variant(event)
            }
        }
    )*};
}

into_event!(
    AgentStarted => AgentStarted,
    AgentThinking => AgentThinking,
    ToolExecuting => ToolExecuting,
    ToolCompleted => ToolCompleted,
    AgentCompleted => AgentCompleted,
    CustomEvent => Custom
);

fn non_empty(event: &'static str, field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidField {
            event,
            field: field.to_owned(),
            reason: "must not be empty".to_owned(),
        });
    }
    Ok(())
}

fn optional_non_empty(
    event: &'static str,
    field: &str,
    value: &Option<String>,
) -> Result<(), Error> {
    value
        .as_deref()
        .map_or(Ok(()), |v| non_empty(event, field, v))
}

fn missing(event: &'static str, field: &str) -> Error {
    Error::MissingField {
        event,
        field: field.to_owned(),
    }
}

fn only_with(event: &'static str, field: &str, status: &str) -> Error {
    Error::InvalidField {
        event,
        field: field.to_owned(),
        reason: format!("only allowed when `status` is \"{status}\""),
    }
}

/// Reads a typed event's data through [`ValueDeserializer`], so that serde's
/// failures arrive as typed values ([`DeError`]) and not as the message
/// strings of `serde_json::Error`, and turns them into the hub's [`Error`].
fn typed<T: DeserializeOwned>(event: &'static str, data: Value) -> Result<T, Error> {
    if !data.is_object() {
        return Err(Error::NotAnObject {
            event,
            found: describe(&data),
        });
    }
    T::deserialize(ValueDeserializer(data)).map_err(|e| e.into_error(event))
}

/// "a string", "an object", ...: what a value is, for messages. Messages
/// quote field and event names but never values: a value can be large, and
/// it is the user's data, which has no business in a log line.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// [`describe`] for what serde's visitors report.
fn describe_unexpected(unexpected: &Unexpected<'_>) -> String {
    match unexpected {
        Unexpected::Bool(_) => "a boolean".to_owned(),
        Unexpected::Unsigned(_) | Unexpected::Signed(_) | Unexpected::Float(_) => {
            "a number".to_owned()
        }
        Unexpected::Char(_) | Unexpected::Str(_) => "a string".to_owned(),
        Unexpected::Unit => "null".to_owned(),
        Unexpected::Seq => "an array".to_owned(),
        Unexpected::Map => "an object".to_owned(),
        // The rest are Rust shapes that JSON values never produce; serde's
        // own wording for them is generic and names no data.
        other => other.to_string(),
    }
}

/// A deserialization failure with its field path, as a value.
#[derive(Debug)]
struct DeError {
    /// Where in the event's data, as a dotted path (empty for the data
    /// object itself): for `Missing` and `Unknown` the object that lacks or
    /// has the field, for `Invalid` the value at fault.
    path: String,
    kind: DeErrorKind,
}

#[derive(Debug)]
enum DeErrorKind {
    /// This field, inside `path`, is absent.
    Missing(&'static str),
    /// This key, inside `path`, is not a field.
    Unknown(String),
    /// The value at `path` is wrong, for this reason.
    Invalid(String),
}

impl DeError {
    fn invalid(reason: String) -> Self {
        DeError {
            path: String::new(),
            kind: DeErrorKind::Invalid(reason),
        }
    }

    /// The same failure, seen from the object that holds `key`.
    fn within(mut self, key: &str) -> Self {
        self.path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{key}.{}", self.path)
        };
        self
    }

    fn into_error(self, event: &'static str) -> Error {
        let join = |leaf: &str| {
            if self.path.is_empty() {
                leaf.to_owned()
            } else {
                format!("{}.{leaf}", self.path)
            }
        };
        match &self.kind {
            DeErrorKind::Missing(field) => Error::MissingField {
                event,
                field: join(field),
            },
            DeErrorKind::Unknown(field) => Error::UnknownField {
                event,
                field: join(field),
            },
            DeErrorKind::Invalid(reason) => Error::InvalidField {
                event,
                field: self.path.clone(),
                reason: reason.clone(),
            },
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DeErrorKind::Missing(field) => write!(f, "{}: missing field {field}", self.path),
            DeErrorKind::Unknown(field) => write!(f, "{}: unknown field {field}", self.path),
            DeErrorKind::Invalid(reason) => write!(f, "{}: {reason}", self.path),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::invalid(msg.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        DeError::invalid(format!(
            "expected {expected}, found {}",
            describe_unexpected(&unexpected)
        ))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::invalid_type(unexpected, expected)
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::invalid(format!(
            "expected {}, found another string",
            list(expected, '"', " or ")
        ))
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        DeError {
            path: String::new(),
            kind: DeErrorKind::Unknown(field.to_owned()),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            path: String::new(),
            kind: DeErrorKind::Missing(field),
        }
    }
}

/// A [`serde::Deserializer`] over an owned JSON value that fails with
/// [`DeError`]. serde_json's own one fails with `serde_json::Error`, whose
/// only account of a missing or unknown field is a message string.
struct ValueDeserializer(Value);

impl<'de> IntoDeserializer<'de, DeError> for ValueDeserializer {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for ValueDeserializer {
    type Error = DeError;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else if let Some(f) = n.as_f64() {
                    visitor.visit_f64(f)
                } else {
                    // Only serde_json's `arbitrary_precision` makes numbers
                    // that fit none of the three.
                    Err(DeError::invalid(format!("number {n} is out of range")))
                }
            }
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(ValueDeserializer));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(map) => visitor.visit_map(MapAccess {
                entries: map.into_iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// Unit variants come as strings; anything else is refused with the
    /// variants listed, where serde's default message would name the Rust
    /// enum.
    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => Err(DeError::invalid(format!(
                "expected {}, found {}",
                list(variants, '"', " or "),
                describe(&other)
            ))),
        }
    }

    /// Nested structs must be objects; refused here, because serde's default
    /// message would name the Rust struct.
    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(DeError::invalid(format!(
                "expected an object, found {}",
                describe(&other)
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple tuple_struct
        map identifier ignored_any
    }
}

/// The entries of a JSON object, with each value's failure put under its
/// key's path.
struct MapAccess {
    entries: serde_json::map::IntoIter,
    /// The entry whose key was just read: its key, for the path, and its
    /// value, to read next.
    value: Option<(String, Value)>,
}

impl<'de> de::MapAccess<'de> for MapAccess {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key_deserializer: StrDeserializer<'_, DeError> = key.as_str().into_deserializer();
        let key_value = seed.deserialize(key_deserializer)?;
        self.value = Some((key, value));
        Ok(Some(key_value))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.value.take() else {
            return Err(DeError::invalid(
                "a value was read before its key".to_owned(),
            ));
        };
        seed.deserialize(ValueDeserializer(value))
            .map_err(|e| e.within(&key))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One valid example of each event, with every optional field set.
    fn full_examples() -> Vec<(&'static str, Value)> {
        vec![
            (
                "agent_started",
                json!({ "run_id": "r1", "thread_id": "t1", "parent_run_id": "r0" }),
            ),
            (
                "agent_thinking",
                json!({ "run_id": "r1", "thread_id": "t1", "message_id": "m1", "text": "" }),
            ),
            (
                "agent_thinking",
                json!({ "run_id": "r1", "thread_id": "t1", "message_id": "m1", "delta": "so" }),
            ),
            (
                "tool_executing",
                json!({
                    "run_id": "r1", "thread_id": "t1", "tool_call_id": "c1",
                    "tool_name": "search", "input": { "q": ["a", 1, 2.5, -3, true, null] },
                    "parent_message_id": "m0",
                }),
            ),
            (
                "tool_completed",
                json!({
                    "run_id": "r1", "thread_id": "t1", "tool_call_id": "c1",
                    "tool_name": "search", "result": "no hits", "message_id": "m2",
                }),
            ),
            (
                "agent_completed",
                json!({ "run_id": "r1", "thread_id": "t1", "status": "ok", "response": { "text": "hi" } }),
            ),
            (
                "agent_completed",
                json!({
                    "run_id": "r1", "thread_id": "t1", "status": "error",
                    "error": { "message": "boom", "code": "internal" },
                }),
            ),
            (
                "agent_completed",
                json!({ "run_id": "r1", "thread_id": "t1", "status": "cancelled" }),
            ),
            ("x", json!(null)),
            ("billing:invoice.paid-v2", json!([1, "two", { "three": 3 }])),
        ]
    }

    fn wire(event: &Event) -> Value {
        let mut out = Vec::new();
        event.write_data(&mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn every_event_round_trips() {
        for (name, data) in full_examples() {
            let event = Event::parse(name, data.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(event.name(), name);
            assert_eq!(wire(&event), data, "{name}");
            assert_eq!(Event::parse(name, wire(&event)).unwrap(), event, "{name}");
        }
    }

    #[test]
    fn absent_and_null_optional_fields_are_left_out() {
        let cases = [
            ("agent_started", json!({ "run_id": "r1" })),
            (
                "agent_started",
                json!({ "run_id": "r1", "thread_id": null }),
            ),
            (
                "agent_thinking",
                json!({ "run_id": "r1", "message_id": "m", "text": "a", "delta": null }),
            ),
            (
                "tool_completed",
                json!({ "run_id": "r1", "tool_call_id": "c", "tool_name": "t", "result": 1, "message_id": null }),
            ),
            (
                "agent_completed",
                json!({ "run_id": "r1", "status": "cancelled", "error": null, "response": null }),
            ),
        ];
        for (name, data) in cases {
            let event = Event::parse(name, data.clone()).unwrap();
            let written = wire(&event);
            let expected: serde_json::Map<String, Value> = data
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(written, Value::Object(expected), "{name}");
        }
    }

    #[test]
    fn every_required_field_missing_is_named() {
        let cases: [(&str, Value, &str); 15] = [
            ("agent_started", json!({}), "run_id"),
            ("agent_started", json!({ "thread_id": "t" }), "run_id"),
            (
                "agent_thinking",
                json!({ "message_id": "m", "text": "a" }),
                "run_id",
            ),
            (
                "agent_thinking",
                json!({ "run_id": "r", "text": "a" }),
                "message_id",
            ),
            (
                "tool_executing",
                json!({ "tool_call_id": "c", "tool_name": "t", "input": {} }),
                "run_id",
            ),
            (
                "tool_executing",
                json!({ "run_id": "r", "tool_name": "t", "input": {} }),
                "tool_call_id",
            ),
            (
                "tool_executing",
                json!({ "run_id": "r", "tool_call_id": "c", "input": {} }),
                "tool_name",
            ),
            (
                "tool_executing",
                json!({ "run_id": "r", "tool_call_id": "c", "tool_name": "t" }),
                "input",
            ),
            (
                "tool_completed",
                json!({ "tool_call_id": "c", "tool_name": "t", "result": 1 }),
                "run_id",
            ),
            (
                "tool_completed",
                json!({ "run_id": "r", "tool_name": "t", "result": 1 }),
                "tool_call_id",
            ),
            (
                "tool_completed",
                json!({ "run_id": "r", "tool_call_id": "c", "result": 1 }),
                "tool_name",
            ),
            (
                "tool_completed",
                json!({ "run_id": "r", "tool_call_id": "c", "tool_name": "t" }),
                "result",
            ),
            (
                "agent_completed",
                json!({ "status": "cancelled" }),
                "run_id",
            ),
            ("agent_completed", json!({ "run_id": "r" }), "status"),
            (
                "agent_completed",
                json!({ "run_id": "r", "status": "error", "error": { "code": "x" } }),
                "error.message",
            ),
        ];
        for (name, data, field) in cases {
            assert_eq!(
                Event::parse(name, data),
                Err(Error::MissingField {
                    event: typed_name(name),
                    field: field.into()
                }),
                "{name} without {field}"
            );
        }
    }

    #[test]
    fn status_decides_response_and_error() {
        let cases = [
            (
                json!({ "run_id": "r", "status": "ok" }),
                missing("agent_completed", "response"),
            ),
            (
                json!({ "run_id": "r", "status": "error" }),
                missing("agent_completed", "error"),
            ),
            (
                json!({ "run_id": "r", "status": "ok", "response": "", "error": { "message": "m" } }),
                only_with("agent_completed", "error", "error"),
            ),
            (
                json!({ "run_id": "r", "status": "error", "response": "", "error": { "message": "m" } }),
                only_with("agent_completed", "response", "ok"),
            ),
            (
                json!({ "run_id": "r", "status": "cancelled", "response": "partial" }),
                only_with("agent_completed", "response", "ok"),
            ),
            (
                json!({ "run_id": "r", "status": "cancelled", "error": { "message": "m" } }),
                only_with("agent_completed", "error", "error"),
            ),
        ];
        for (data, expected) in cases {
            assert_eq!(
                Event::parse("agent_completed", data.clone()),
                Err(expected),
                "{data}"
            );
        }
    }

    #[test]
    fn wrong_types_are_invalid_fields() {
        let cases: [(&str, Value, &str, &str); 10] = [
            (
                "agent_started",
                json!({ "run_id": 1 }),
                "run_id",
                "expected a string, found a number",
            ),
            (
                "agent_started",
                json!({ "run_id": "r", "thread_id": [] }),
                "thread_id",
                "expected a string, found an array",
            ),
            (
                "agent_thinking",
                json!({ "run_id": "r", "message_id": true, "text": "a" }),
                "message_id",
                "expected a string, found a boolean",
            ),
            (
                "agent_thinking",
                json!({ "run_id": "r", "message_id": "m", "delta": {} }),
                "delta",
                "expected a string, found an object",
            ),
            (
                "tool_executing",
                json!({ "run_id": null, "tool_call_id": "c", "tool_name": "t", "input": {} }),
                "run_id",
                "expected a string, found null",
            ),
            (
                "tool_completed",
                json!({ "run_id": "r", "tool_call_id": "c", "tool_name": 2.5, "result": 1 }),
                "tool_name",
                "expected a string, found a number",
            ),
            (
                "agent_completed",
                json!({ "run_id": "r", "status": "done" }),
                "status",
                r#"expected "ok", "error" or "cancelled", found another string"#,
            ),
            (
                "agent_completed",
                json!({ "run_id": "r", "status": 0 }),
                "status",
                r#"expected "ok", "error" or "cancelled", found a number"#,
            ),
            (
                "agent_completed",
                json!({ "run_id": "r", "status": "error", "error": "boom" }),
                "error",
                "expected an object, found a string",
            ),
            (
                "agent_completed",
                json!({ "run_id": "r", "status": "error", "error": { "message": "m", "code": 7 } }),
                "error.code",
                "expected a string, found a number",
            ),
        ];
        for (name, data, field, reason) in cases {
            assert_eq!(
                Event::parse(name, data),
                Err(Error::InvalidField {
                    event: typed_name(name),
                    field: field.into(),
                    reason: reason.into()
                }),
                "{name}.{field}"
            );
        }
    }

    #[test]
    fn empty_identifiers_are_invalid_fields() {
        let cases: [(&str, Value, &str); 10] = [
            ("agent_started", json!({ "run_id": "" }), "run_id"),
            (
                "agent_started",
                json!({ "run_id": "r", "thread_id": "" }),
                "thread_id",
            ),
            (
                "agent_started",
                json!({ "run_id": "r", "parent_run_id": "" }),
                "parent_run_id",
            ),
            (
                "agent_thinking",
                json!({ "run_id": "r", "message_id": "", "text": "a" }),
                "message_id",
            ),
            (
                "agent_thinking",
                json!({ "run_id": "r", "message_id": "m", "delta": "" }),
                "delta",
            ),
            (
                "tool_executing",
                json!({ "run_id": "r", "tool_call_id": "", "tool_name": "t", "input": {} }),
                "tool_call_id",
            ),
            (
                "tool_executing",
                json!({ "run_id": "r", "tool_call_id": "c", "tool_name": "t", "input": {}, "parent_message_id": "" }),
                "parent_message_id",
            ),
            (
                "tool_completed",
                json!({ "run_id": "r", "tool_call_id": "c", "tool_name": "", "result": 1 }),
                "tool_name",
            ),
            (
                "tool_completed",
                json!({ "run_id": "r", "tool_call_id": "c", "tool_name": "t", "result": 1, "message_id": "" }),
                "message_id",
            ),
            (
                "agent_completed",
                json!({ "run_id": "r", "status": "error", "error": { "message": "" } }),
                "error.message",
            ),
        ];
        for (name, data, field) in cases {
            assert_eq!(
                Event::parse(name, data),
                Err(Error::InvalidField {
                    event: typed_name(name),
                    field: field.into(),
                    reason: "must not be empty".into()
                }),
                "{name}.{field}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let cases: [(&str, Value, &str); 4] = [
            (
                "agent_started",
                json!({ "run_id": "r", "threadId": "t" }),
                "threadId",
            ),
            (
                "tool_executing",
                json!({ "run_id": "r", "tool_call_id": "c", "tool_name": "t", "input": {}, "args": {} }),
                "args",
            ),
            (
                "agent_completed",
                json!({ "run_id": "r", "status": "error", "error": { "message": "m", "stack": "" } }),
                "error.stack",
            ),
            (
                "agent_thinking",
                json!({ "run_id": "r", "message_id": "m", "text": "a", "": 1 }),
                "",
            ),
        ];
        for (name, data, field) in cases {
            assert_eq!(
                Event::parse(name, data),
                Err(Error::UnknownField {
                    event: typed_name(name),
                    field: field.into()
                }),
                "{name}.{field}"
            );
        }
    }

    #[test]
    fn tool_payloads_take_any_json() {
        for payload in [
            json!(null),
            json!(0),
            json!("s"),
            json!([]),
            json!({ "a": { "b": [1.5] } }),
        ] {
            let data =
                json!({ "run_id": "r", "tool_call_id": "c", "tool_name": "t", "input": payload });
            let Event::ToolExecuting(call) = Event::parse("tool_executing", data).unwrap() else {
                panic!("not a tool_executing");
            };
            assert_eq!(call.input, payload);
        }
    }

    #[test]
    fn thinking_is_whole_or_a_delta() {
        let not_one = Error::ExactlyOneOf {
            event: "agent_thinking",
            fields: &["text", "delta"],
        };
        let cases = [
            (
                json!({ "text": "the whole" }),
                Ok((Some("the whole"), None)),
            ),
            (json!({ "text": "" }), Ok((Some(""), None))),
            (json!({ "delta": " piece" }), Ok((None, Some(" piece")))),
            (json!({}), Err(not_one.clone())),
            (json!({ "text": "a", "delta": "b" }), Err(not_one.clone())),
            (json!({ "text": null, "delta": null }), Err(not_one.clone())),
        ];
        for (extra, expected) in cases {
            let mut data = json!({ "run_id": "r", "message_id": "m" });
            let object = data.as_object_mut().unwrap();
            object.extend(extra.as_object().unwrap().clone());
            let got = Event::parse("agent_thinking", data).map(|event| match event {
                Event::AgentThinking(thinking) => (thinking.text, thinking.delta),
                other => panic!("read as {other:?}"),
            });
            let expected =
                expected.map(|(text, delta)| (text.map(String::from), delta.map(String::from)));
            assert_eq!(got, expected, "{extra}");
        }
        assert_eq!(
            not_one.to_string(),
            "`agent_thinking` must have exactly one of the fields `text` and `delta`"
        );
    }

    #[test]
    fn typed_data_must_be_an_object() {
        let cases: [(Value, &str); 5] = [
            (json!(null), "null"),
            (json!(true), "a boolean"),
            (json!(1), "a number"),
            (json!("run"), "a string"),
            (json!([{ "run_id": "r" }]), "an array"),
        ];
        for name in TYPED_NAMES {
            for (data, found) in cases.clone() {
                assert_eq!(
                    Event::parse(name, data.clone()),
                    Err(Error::NotAnObject {
                        event: typed_name(name),
                        found
                    }),
                    "{name} {data}"
                );
            }
        }
    }

    #[test]
    fn custom_names() {
        let long = "a".repeat(CustomEvent::MAX_NAME_LEN);
        for name in [
            "a",
            "Z9",
            "bill:42",
            "invoice.paid",
            "a_b-c.d:e",
            long.as_str(),
            "Agent_Started",
        ] {
            let event = Event::parse(name, json!({ "any": "thing" })).unwrap();
            assert_eq!(event.name(), name);
            assert_eq!(event.default_priority(), Priority::Normal);
        }
        let too_long = "a".repeat(CustomEvent::MAX_NAME_LEN + 1);
        let cases: [(&str, &str); 6] = [
            ("", "it is empty"),
            (&too_long, "it is 65 bytes long, the limit is 64"),
            (
                "bill 42",
                "it contains ' '; allowed are ASCII letters, digits, '_', '.', ':' and '-'",
            ),
            (
                "bill/42",
                "it contains '/'; allowed are ASCII letters, digits, '_', '.', ':' and '-'",
            ),
            (
                "café",
                "it contains 'é'; allowed are ASCII letters, digits, '_', '.', ':' and '-'",
            ),
            (
                "a\nb",
                "it contains '\\n'; allowed are ASCII letters, digits, '_', '.', ':' and '-'",
            ),
        ];
        for (name, reason) in cases {
            assert_eq!(
                Event::parse(name, json!({})),
                Err(Error::InvalidEventName {
                    name: name.into(),
                    reason: reason.into()
                }),
                "{name:?}"
            );
        }
    }

    #[test]
    fn reserved_names_are_refused_for_custom_events() {
        for name in TYPED_NAMES {
            let event = Event::Custom(CustomEvent {
                name: name.into(),
                data: json!({}),
            });
            assert_eq!(
                event.validate(),
                Err(Error::ReservedEventName { name: name.into() })
            );
            // Through `parse`, the name means the typed event instead.
            assert!(!matches!(
                Event::parse(name, json!({})),
                Ok(Event::Custom(_))
            ));
        }
    }

    #[test]
    fn names_and_priorities() {
        let cases: [(Event, &str, Priority); 6] = [
            (started().into(), "agent_started", Priority::Critical),
            (
                AgentThinking {
                    run_id: "r".into(),
                    thread_id: None,
                    message_id: "m".into(),
                    text: None,
                    delta: Some("d".into()),
                }
                .into(),
                "agent_thinking",
                Priority::Critical,
            ),
            (
                ToolExecuting {
                    run_id: "r".into(),
                    thread_id: None,
                    tool_call_id: "c".into(),
                    tool_name: "t".into(),
                    input: json!({}),
                    parent_message_id: None,
                }
                .into(),
                "tool_executing",
                Priority::Critical,
            ),
            (
                ToolCompleted {
                    run_id: "r".into(),
                    thread_id: None,
                    tool_call_id: "c".into(),
                    tool_name: "t".into(),
                    result: json!(null),
                    message_id: None,
                }
                .into(),
                "tool_completed",
                Priority::Critical,
            ),
            (
                AgentCompleted {
                    run_id: "r".into(),
                    thread_id: None,
                    status: RunStatus::Ok,
                    response: Some(json!("done")),
                    error: None,
                }
                .into(),
                "agent_completed",
                Priority::Critical,
            ),
            (
                CustomEvent {
                    name: "c".into(),
                    data: json!(1),
                }
                .into(),
                "c",
                Priority::Normal,
            ),
        ];
        for (event, name, priority) in cases {
            assert_eq!(event.validate(), Ok(()), "{name}");
            assert_eq!((event.name(), event.default_priority()), (name, priority));
            assert_eq!(Event::parse(name, wire(&event)), Ok(event));
        }
    }

    #[test]
    fn priorities() {
        let all = [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Critical,
        ];
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        for (priority, name) in all.into_iter().zip(["low", "normal", "high", "critical"]) {
            assert_eq!(priority.as_str(), name);
            assert_eq!(name.parse(), Ok(priority));
            assert_eq!(serde_json::to_value(priority).unwrap(), json!(name));
            assert_eq!(
                serde_json::from_value::<Priority>(json!(name)).unwrap(),
                priority
            );
        }
        for bad in ["", "LOW", "Normal", "urgent", " high"] {
            assert_eq!(
                bad.parse::<Priority>(),
                Err(Error::InvalidPriority { value: bad.into() })
            );
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let parse = |name: &str, data: Value| Event::parse(name, data).unwrap_err();
        let cases = [
            (
                parse("agent_started", json!({})),
                "`agent_started` is missing the required field `run_id`",
            ),
            (
                parse("agent_started", json!({ "run_id": 1 })),
                "`agent_started` field `run_id` is invalid: expected a string, found a number",
            ),
            (
                parse("agent_started", json!({ "run_id": "r", "runId": "r" })),
                "`agent_started` has no field `runId`",
            ),
            (
                parse("tool_completed", json!([])),
                "`tool_completed` data must be a JSON object, found an array",
            ),
            (
                parse("a b", json!({})),
                "invalid event name \"a b\": it contains ' '; allowed are ASCII letters, digits, '_', '.', ':' and '-'",
            ),
            (
                Event::Custom(CustomEvent {
                    name: "tool_completed".into(),
                    data: json!({}),
                })
                .validate()
                .unwrap_err(),
                "event name \"tool_completed\" belongs to a typed event and cannot name a custom event",
            ),
            (
                "Low".parse::<Priority>().unwrap_err(),
                "unknown priority \"Low\", expected one of \"low\", \"normal\", \"high\", \"critical\"",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }

    fn started() -> AgentStarted {
        AgentStarted {
            run_id: "r".into(),
            thread_id: None,
            parent_run_id: None,
        }
    }

    /// The `&'static str` of a typed event's name, for building expected
    /// errors from table rows.
    fn typed_name(name: &str) -> &'static str {
        TYPED_NAMES
            .into_iter()
            .find(|n| *n == name)
            .expect("a typed name")
    }
}
