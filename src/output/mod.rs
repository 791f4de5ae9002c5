//! The pipeline's last stage: a report and a decision, said to whoever asked. Tables, JSON
//! and Graphviz for the command line ([`render`]), PolicyReports ([`policyreport`]), and
//! Events and metrics ([`records`]). The admission response itself is built by the webhook.

pub mod policyreport;
pub mod records;
pub mod render;
