//! nsguard: stops namespace deletions that would hang in `Terminating`.

pub mod certs;
