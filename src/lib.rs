//! nsguard: stops namespace deletions that would hang in `Terminating`.

pub mod admission;
pub mod certs;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod diagnose;
pub mod facts;
pub mod policy;
pub mod policyreport;
pub mod preflight;
pub mod ratelimit;
pub mod records;
pub mod render;
pub mod report;
pub mod serve;
pub mod server;
pub mod teardown;
