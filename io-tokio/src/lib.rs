//! The tokio driver for [`sockeye_core`]. The driver itself arrives with issue 4; this crate reserves its place in the workspace.
