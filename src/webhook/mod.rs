//! The webhook front end: the admission adapter (the one choke point of every review), the
//! HTTPS and admin servers with TLS reloading, and `nsguard serve`'s wiring. It decides
//! nothing itself: the engine gathers and checks, the policy decides.

pub mod admission;
pub mod background;
pub mod config_review;
pub mod managed;
pub mod ratelimit;
pub mod serve;
pub mod server;
pub mod tls;
