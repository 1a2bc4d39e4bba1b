//! The mio driver for [`sockeye_core`]. The driver itself arrives with issue 5; this crate reserves its place in the workspace.
