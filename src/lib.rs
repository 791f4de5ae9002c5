//! nsguard: stops namespace deletions that would hang in `Terminating`.
//!
//! The pipeline, one way: [`cluster`] (every API call) -> [`facts`] (plain data) -> [`checks`]
//! (pure functions, one registry) -> [`engine`] (facts + configuration -> [`checks::report`]) -> [`output`]
//! (the decision by mode and overrides, tables, PolicyReports, Events, metrics). The
//! front ends, [`webhook`] and [`cli`], only wire it; [`remedy`] plans diagnoses and the
//! ordered teardown from a report.

pub mod checks;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod facts;
pub mod output;
pub mod remedy;
pub mod webhook;

/// The CA and serving certificates (`nsguard certs`).
pub use nsguard_certs as certs;
