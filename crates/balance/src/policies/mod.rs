//! The placement policies other than least-connections.
