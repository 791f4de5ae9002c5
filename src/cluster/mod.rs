//! Cluster I/O.

pub mod config_map;
