//! The pipeline's last stage: a report turned into a decision ([`policy`]: mode, overrides,
//! bypasses) and said to whoever asked. Messages, tables, JSON and Graphviz ([`render`]),
//! PolicyReports ([`policyreport`]), and Events and metrics ([`records`]). The admission
//! response itself is built by the webhook.

pub mod policy;
pub mod policyreport;
pub mod records;
pub mod render;
