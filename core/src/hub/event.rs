//! STUB, replaced by the typed events (branch hub-events) at merge.

use serde::{Deserialize, Serialize};

use super::Error;

/// How much an event matters when a connection's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Dropped first.
    Low,
    /// The default of custom events.
    Normal,
    /// Dropped after normal.
    High,
    /// Never dropped.
    Critical,
}

impl Priority {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// A custom event.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomEvent {
    /// The name.
    pub name: String,
    /// The data.
    pub data: serde_json::Value,
}

/// An event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Custom.
    Custom(CustomEvent),
}

impl Event {
    /// The wire name.
    pub fn name(&self) -> &str {
        match self {
            Self::Custom(c) => &c.name,
        }
    }
    /// The default priority.
    pub fn default_priority(&self) -> Priority {
        Priority::Normal
    }
    /// Parses.
    pub fn parse(name: &str, data: serde_json::Value) -> Result<Self, Error> {
        if name.is_empty() {
            return Err(Error::InvalidEventName {
                name: name.into(),
                reason: "empty",
            });
        }
        Ok(Self::Custom(CustomEvent {
            name: name.into(),
            data,
        }))
    }
    /// Validates.
    pub fn validate(&self) -> Result<(), Error> {
        Ok(())
    }
    /// Writes the data.
    pub fn write_data(&self, out: &mut Vec<u8>) {
        match self {
            Self::Custom(c) => serde_json::to_writer(out, &c.data).expect("a Value serializes"),
        }
    }
}
