//! `nsguard certs` and `nsguard completion`: files and scripts, no cluster.

use anyhow::Result;

use super::CertsArgs;
use crate::certs::{self, Ca};

/// Runs `nsguard certs`.
pub fn certs(args: CertsArgs) -> Result<()> {
    let ca = Ca::new("nsguard-ca", args.days)?;
    let first = args
        .dns
        .first()
        .cloned()
        .unwrap_or_else(|| "nsguard".into());
    let pair = ca.issue_server(&first, &args.dns, &args.ips, args.days)?;
    let d = &args.out_dir;
    certs::write_file(&d.join("ca.crt"), &ca.cert_pem(), false)?;
    certs::write_file(&d.join("ca.key"), &ca.pair().key_pem, true)?;
    certs::write_file(&d.join("tls.crt"), &pair.cert_pem, false)?;
    certs::write_file(&d.join("tls.key"), &pair.key_pem, true)?;
    eprintln!(
        "wrote ca.crt, ca.key, tls.crt, tls.key to {}; caBundle:",
        d.display()
    );
    println!("{}", ca.ca_bundle());
    Ok(())
}
