//! TLS for database connections, with libpq's URL parameters so that the URL a DBA
//! hands over works unchanged: `sslmode` = `disable`, `prefer` (the default), `require`,
//! `verify-ca` or `verify-full`; `sslrootcert` (the CA file; without it the system's
//! trust store), and `sslcert` / `sslkey` for a client certificate. As in libpq,
//! `require` encrypts without checking the certificate unless `sslrootcert` is given,
//! `verify-ca` checks the chain, `verify-full` the chain and the host name (or IP).
//! OpenSSL does the work (the system library, shared with the Kafka client).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::{X509Store, X509StoreBuilder};
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
    /// The client key's passphrase (`sslpassword`).
    pub key_password: Option<String>,
}

/// Splits a URL-form database URL into what tokio-postgres reads (its `sslmode` is
/// `disable`, `prefer` or `require`) and the TLS settings it does not know.
pub fn split(url: &str) -> Result<(String, TlsSettings)> {
    let mut settings = TlsSettings {
        verify: Verify::None,
        root_cert: None,
        client_cert: None,
        client_key: None,
        key_password: None,
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
            "sslpassword" => settings.key_password = Some(decode(value)),
            _ => kept.push(pair.to_owned()),
        }
    }
    // libpq: a root certificate given with `require` means verify-ca; verifying against
    // the system's CAs means verify-full.
    if settings.verify == Verify::None && settings.root_cert.is_some() {
        settings.verify = Verify::Chain;
    }
    if settings.verify == Verify::Chain && settings.root_cert.is_none() {
        settings.verify = Verify::Full;
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

/// A trust store holding the CAs of one PEM file and nothing else.
fn only_these_cas(path: &std::path::Path) -> Result<X509Store> {
    let pem =
        std::fs::read(path).with_context(|| format!("sslrootcert: reading {}", path.display()))?;
    let certs = X509::stack_from_pem(&pem)
        .with_context(|| format!("sslrootcert: {} is not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("sslrootcert: {} holds no certificate", path.display());
    }
    let mut store = X509StoreBuilder::new().context("initialising OpenSSL")?;
    for c in certs {
        store.add_cert(c).context("sslrootcert: adding a CA")?;
    }
    Ok(store.build())
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
                // Only this file's CAs: the builder starts with the system's store.
                builder.set_cert_store(only_these_cas(ca)?);
            }
        }
    }
    match (&s.client_cert, &s.client_key) {
        (Some(cert), Some(key)) => {
            builder
                .set_certificate_chain_file(cert)
                .with_context(|| format!("sslcert: reading {}", cert.display()))?;
            match &s.key_password {
                None => builder
                    .set_private_key_file(key, SslFiletype::PEM)
                    .with_context(|| format!("sslkey: reading {}", key.display()))?,
                Some(pass) => {
                    let pem = std::fs::read(key)
                        .with_context(|| format!("sslkey: reading {}", key.display()))?;
                    let pkey = PKey::private_key_from_pem_passphrase(&pem, pass.as_bytes())
                        .with_context(|| {
                            format!("sslkey: decrypting {} with sslpassword", key.display())
                        })?;
                    builder
                        .set_private_key(&pkey)
                        .context("sslkey: loading the key")?;
                }
            }
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

        let (_, s) = split("postgres://db/x?sslmode=verify-ca").unwrap();
        assert_eq!(
            s.verify,
            Verify::Full,
            "system CAs: the host name is checked too"
        );

        assert!(split("postgres://db/x?sslmode=allow-maybe").is_err());
    }
}
