//! Remedies, planned from a report (pure): the diagnosis of a namespace already Terminating,
//! and the ordered teardown of `nsguard delete` (its writes are made in
//! [`crate::cluster::teardown`]).

pub mod diagnose;
pub mod teardown;
