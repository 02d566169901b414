//! TimescaleDB access shared by the schema commands and the sink: connecting from a
//! URL held in the environment (never logged with its password), telling the edition
//! apart, and applying the ordered migrations of `schema/`.

pub mod assets;
pub mod copy;
pub mod migrate;
pub mod status;
pub mod tls;

use anyhow::{Context, Result, bail};
use tokio_postgres::Client;

/// Where the database URL comes from: `GPU_HEALTH_DATABASE_URL`, then `DATABASE_URL`,
/// or a file named by `GPU_HEALTH_DATABASE_URL_FILE` (for mounted secrets).
pub fn database_url_from_env() -> Result<String> {
    if let Ok(path) = std::env::var("GPU_HEALTH_DATABASE_URL_FILE") {
        let url = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the database URL from {path}"))?;
        return Ok(url.trim().to_owned());
    }
    for var in ["GPU_HEALTH_DATABASE_URL", "DATABASE_URL"] {
        if let Ok(url) = std::env::var(var) {
            return Ok(url);
        }
    }
    bail!(
        "no database URL: set GPU_HEALTH_DATABASE_URL or DATABASE_URL \
         (for local tests, scripts/timescaledb.sh start prints one)"
    )
}

/// The URL with any password replaced, for logs and errors: the password of the
/// user part and a `password=` parameter (URL query or key=value form) alike.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_key_values(url);
    };
    let (authority_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority_path = match authority_path.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority_path.to_owned(),
        },
        None => authority_path.to_owned(),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}://{authority_path}?{q}"),
        None => format!("{scheme}://{authority_path}"),
    }
}

/// `host=db password='a b' user=x` with the password's value (quoted or not) masked.
fn redact_key_values(dsn: &str) -> String {
    let mut out = String::with_capacity(dsn.len());
    let mut rest = dsn;
    while let Some(at) = rest.find("password") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after_key = from["password".len()..].trim_start();
        let at_token_start = before.is_empty() || before.ends_with(char::is_whitespace);
        let Some(value) = after_key.strip_prefix('=').filter(|_| at_token_start) else {
            out.push_str("password");
            rest = &from["password".len()..];
            continue;
        };
        let value = value.trim_start();
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            // Up to the closing quote that is not escaped by a backslash.
            let mut i = 0;
            let bytes = quoted.as_bytes();
            while i < bytes.len() && bytes[i] != b'\'' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            (i + 2).min(value.len())
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        out.push_str("password=***");
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Microseconds since the Unix epoch as a `timestamptz` parameter.
pub fn timestamptz(us: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// The same server and credentials with another database name (URL form only).
pub fn with_database(url: &str, dbname: &str) -> Result<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!(
            "expected a URL-form database URL (postgres://...), got {}",
            redact(url)
        );
    };
    let host_start = rest.rfind('@').map_or(0, |i| i + 1);
    let (userinfo, tail) = rest.split_at(host_start);
    let (host, after) = tail.split_at(tail.find(['/', '?']).unwrap_or(tail.len()));
    let query = after.find('?').map_or("", |i| &after[i..]);
    Ok(format!("{scheme}://{userinfo}{host}/{dbname}{query}"))
}

/// Connects and drives the connection on the runtime.
/// TLS as the URL's libpq parameters say (`tls`); `prefer` when they say nothing.
pub async fn connect(url: &str) -> Result<Client> {
    let (plain, settings) = tls::split(url).with_context(|| format!("in {}", redact(url)))?;
    let connector = tls::connector(&settings).with_context(|| format!("in {}", redact(url)))?;
    let (client, connection) = tokio_postgres::connect(&plain, connector)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

/// The TimescaleDB edition (DESIGN 5): decides which schema parts apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// Community edition (TSL): compression, policies, continuous aggregates.
    Timescale,
    /// Apache-2 build: the processor replaces what is missing.
    Apache,
}

impl Edition {
    pub fn as_str(self) -> &'static str {
        match self {
            Edition::Timescale => "timescale",
            Edition::Apache => "apache",
        }
    }
}

/// Reads `SHOW timescaledb.license`; never guesses from error text.
pub async fn edition(client: &Client) -> Result<Edition> {
    let row = client
        .query_one("SHOW timescaledb.license", &[])
        .await
        .context("SHOW timescaledb.license: is the timescaledb extension loaded?")?;
    let license: String = row.get(0);
    match license.as_str() {
        "timescale" => Ok(Edition::Timescale),
        "apache" => Ok(Edition::Apache),
        other => bail!("unknown timescaledb.license {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://writer:s3cret@db:5432/gpu_health"),
            "postgres://writer:***@db:5432/gpu_health"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert!(!redact("postgresql://a:b:c@h/d").contains("b:c"));
        assert_eq!(
            redact("postgres://h/d?user=u&password=s3cret&sslmode=require"),
            "postgres://h/d?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact("host=h password=s3cret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact("host=h password = 'a \\' b' user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(redact("host=h user=password"), "host=h user=password");
    }

    #[test]
    fn another_database_keeps_everything_else() {
        let w = |u| super::with_database(u, "scratch").unwrap_or_default();
        assert_eq!(
            w("postgres://u:p@h:5432/db"),
            "postgres://u:p@h:5432/scratch"
        );
        assert_eq!(
            w("postgres://u@h/db?sslmode=require"),
            "postgres://u@h/scratch?sslmode=require"
        );
        assert_eq!(w("postgresql://h:1"), "postgresql://h:1/scratch");
        assert!(super::with_database("host=h dbname=db", "scratch").is_err());
    }
}
