//! nsguard: stops namespace deletions that would hang in `Terminating`.

pub mod certs;
pub mod checks;
pub mod facts;
pub mod report;
