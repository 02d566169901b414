//! TLS for database connections, with libpq's URL parameters so that the URL a DBA
//! hands over works unchanged: `sslmode` = `disable`, `prefer` (the default), `require`,
//! `verify-ca` or `verify-full`; `sslrootcert` (the CA file; without it the system's
//! trust store), and `sslcert` / `sslkey` for a client certificate. As in libpq,
//! `require` encrypts without checking the certificate unless `sslrootcert` is given,
//! `verify-ca` checks the chain, `verify-full` the chain and the host name (or IP).
//! OpenSSL does the work (the system library, shared with the Kafka client).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;

/// How far the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypted (when the server offers it, or must under `require`), not verified.
    None,
    /// The certificate chains to a trusted CA.
    Chain,
    /// ... and names the host connected to.
    Full,
}

/// The TLS part of a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub verify: Verify,
    pub root_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Splits a URL-form database URL into what tokio-postgres reads (its `sslmode` is
/// `disable`, `prefer` or `require`) and the TLS settings it does not know.
pub fn split(url: &str) -> Result<(String, TlsSettings)> {
    let mut settings = TlsSettings {
        verify: Verify::None,
        root_cert: None,
        client_cert: None,
        client_key: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), settings));
    };
    if !url.contains("://") {
        return Ok((url.to_owned(), settings));
    }
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                let mode = match value {
                    "disable" | "prefer" | "require" => value,
                    "verify-ca" => {
                        settings.verify = Verify::Chain;
                        "require"
                    }
                    "verify-full" => {
                        settings.verify = Verify::Full;
                        "require"
                    }
                    other => bail!(
                        "database URL: sslmode={other}: expected disable, prefer, require, \
                         verify-ca or verify-full"
                    ),
                };
                kept.push(format!("sslmode={mode}"));
            }
            "sslrootcert" => settings.root_cert = Some(PathBuf::from(decode(value))),
            "sslcert" => settings.client_cert = Some(PathBuf::from(decode(value))),
            "sslkey" => settings.client_key = Some(PathBuf::from(decode(value))),
            _ => kept.push(pair.to_owned()),
        }
    }
    // libpq: a root certificate given with `require` means verify-ca.
    if settings.verify == Verify::None && settings.root_cert.is_some() {
        settings.verify = Verify::Chain;
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, settings))
}

/// `%2F` and friends in a path given in a URL.
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if bytes[i] == b'%'
            && let Some(b) = hex
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The connector for these settings.
pub fn connector(s: &TlsSettings) -> Result<MakeTlsConnector> {
    let mut builder =
        SslConnector::builder(SslMethod::tls_client()).context("initialising OpenSSL")?;
    match s.verify {
        Verify::None => builder.set_verify(SslVerifyMode::NONE),
        Verify::Chain | Verify::Full => {
            builder.set_verify(SslVerifyMode::PEER);
            if let Some(ca) = &s.root_cert {
                builder
                    .set_ca_file(ca)
                    .with_context(|| format!("sslrootcert: reading {}", ca.display()))?;
            }
        }
    }
    match (&s.client_cert, &s.client_key) {
        (Some(cert), Some(key)) => {
            builder
                .set_certificate_chain_file(cert)
                .with_context(|| format!("sslcert: reading {}", cert.display()))?;
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .with_context(|| format!("sslkey: reading {}", key.display()))?;
        }
        (None, None) => {}
        _ => bail!("database URL: sslcert and sslkey go together"),
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    if s.verify != Verify::Full {
        connector.set_callback(|config, _| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_become_settings() {
        let (url, s) = split(
            "postgres://u:p@db:5432/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=a",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db:5432/x?sslmode=require&application_name=a"
        );
        assert_eq!(s.verify, Verify::Full);
        assert_eq!(s.root_cert, Some(PathBuf::from("/etc/ca.pem")));

        let (url, s) = split("postgres://db/x?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert_eq!(url, "postgres://db/x?sslmode=require");
        assert_eq!(
            s.verify,
            Verify::Chain,
            "a root cert with require is verify-ca"
        );

        let (url, s) = split("postgres://db/x").unwrap();
        assert_eq!((url.as_str(), s.verify), ("postgres://db/x", Verify::None));

        assert!(split("postgres://db/x?sslmode=allow-maybe").is_err());
    }
}
