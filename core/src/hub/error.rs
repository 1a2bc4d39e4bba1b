//! The hub's one error type.

/// Every failure the hub reports, as a value.
///
/// So far these are the checks an event fails when it is parsed or published
/// (see [`Event::parse`](super::event::Event::parse) and
/// [`Event::validate`](super::event::Event::validate)). Each message says
/// which event and which field is wrong, so it can go back to the publisher
/// as it is.
///
/// Field paths are dotted for nested objects (`error.message`), which is why
/// `field` is a `String` and not a `&'static str`.
///
/// ```
/// use serde_json::json;
/// use sockeye_core::hub::Error;
/// use sockeye_core::hub::event::Event;
///
/// let err = Event::parse("tool_executing", json!({ "run_id": "run_42" })).unwrap_err();
/// assert_eq!(
///     err,
///     Error::MissingField { event: "tool_executing", field: "tool_call_id".into() }
/// );
/// assert_eq!(err.to_string(), "`tool_executing` is missing the required field `tool_call_id`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A typed event's data was not a JSON object.
    #[error("`{event}` data must be a JSON object, found {found}")]
    NotAnObject {
        /// The event's name.
        event: &'static str,
        /// What the data was instead: `an array`, `a string`, `null`, ...
        found: &'static str,
    },
    /// A typed event lacks a field it requires. Some fields are required only
    /// with a given `status` of
    /// [`AgentCompleted`](super::event::AgentCompleted).
    #[error("`{event}` is missing the required field `{field}`")]
    MissingField {
        /// The event's name.
        event: &'static str,
        /// The field's path in the data.
        field: String,
    },
    /// A typed event has a field its schema does not define.
    #[error("`{event}` has no field `{field}`")]
    UnknownField {
        /// The event's name.
        event: &'static str,
        /// The field's path in the data.
        field: String,
    },
    /// A typed event's field has the wrong type or a value that is not
    /// allowed.
    #[error("`{event}` field `{field}` is invalid: {reason}")]
    InvalidField {
        /// The event's name.
        event: &'static str,
        /// The field's path in the data.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A typed event must carry exactly one of these fields, and it carried
    /// none or several.
    #[error(
        "`{event}` must have exactly one of the fields {}",
        list(fields, '`', " and ")
    )]
    ExactlyOneOf {
        /// The event's name.
        event: &'static str,
        /// The fields of which one, and only one, must be present.
        fields: &'static [&'static str],
    },
    /// A custom event's name breaks the naming rule (see
    /// [`CustomEvent`](super::event::CustomEvent)).
    #[error("invalid event name {name:?}: {reason}")]
    InvalidEventName {
        /// The name as given.
        name: String,
        /// Which part of the rule it breaks.
        reason: String,
    },
    /// A custom event used the name of one of the typed events.
    #[error("event name {name:?} belongs to a typed event and cannot name a custom event")]
    ReservedEventName {
        /// The name as given.
        name: String,
    },
    /// A string is not one of the four priorities.
    #[error(
        "unknown priority {value:?}, expected one of \"low\", \"normal\", \"high\", \"critical\""
    )]
    InvalidPriority {
        /// The string as given.
        value: String,
    },
}

/// `items` for a message: each between `quote`s, separated by commas, and
/// the last two by `last` (` and `, ` or `).
pub(super) fn list(items: &[&str], quote: char, last: &str) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == items.len() { last } else { ", " });
        }
        out.push(quote);
        out.push_str(item);
        out.push(quote);
    }
    out
}
