//! The clock: the one place nsguard reads the time. Facts carry the time they were gathered
//! at, so checks compare ages against a fact, never against the clock.

use k8s_openapi::jiff::Timestamp;

/// The current time.
pub fn now() -> Timestamp {
    Timestamp::now()
}
