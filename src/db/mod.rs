//! TimescaleDB access shared by the schema commands and the sink: connecting from a
//! URL held in the environment (never logged with its password), telling the edition
//! apart, and applying the ordered migrations of `schema/`.

pub(crate) mod assets;
pub(crate) mod copy;
pub mod maintain;
pub mod migrate;
pub(crate) mod state;
pub mod status;
pub(crate) mod tls;

use anyhow::{Context, Result, bail};
use tokio_postgres::Client;

use crate::error::{DbError, PgContext};

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
    // The user part runs to the first `@` (as tokio-postgres reads it), even where the
    // password holds `?` or `/`; masking too much is the safe side.
    let (userinfo, tail) = match rest.find('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let userinfo = userinfo.map(|u| match u.split_once(':') {
        Some((user, _)) => format!("{user}:***@"),
        None => format!("{u}@"),
    });
    let tail = match tail.split_once('?') {
        Some((host_path, query)) => {
            let query = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_password_key(k) => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("&");
            format!("{host_path}?{query}")
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{}{tail}", userinfo.unwrap_or_default())
}

/// `password`, `sslpassword` and the like.
fn is_password_key(key: &str) -> bool {
    key.to_ascii_lowercase().ends_with("password")
}

/// `host=db password='a b' user=x` with the value of every key ending in `password`
/// (quoted or not) masked.
fn redact_key_values(dsn: &str) -> String {
    let mut out = String::with_capacity(dsn.len());
    let mut rest = dsn.trim_start();
    while !rest.is_empty() {
        // key [spaces] = [spaces] value, where value is 'quoted' (with \' escapes) or bare.
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_key = rest[key_end..].trim_start();
        let Some(value) = after_key.strip_prefix('=') else {
            // Not key=value: copy the word and go on.
            out.push_str(key);
            rest = after_key;
            if !rest.is_empty() {
                out.push(' ');
            }
            continue;
        };
        let value = value.trim_start();
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            let bytes = quoted.as_bytes();
            let mut i = 0;
            while i < bytes.len() && bytes[i] != b'\'' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            (i + 2).min(value.len())
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        out.push_str(key);
        out.push('=');
        out.push_str(if is_password_key(key) {
            "***"
        } else {
            &value[..end]
        });
        rest = value[end..].trim_start();
        if !rest.is_empty() {
            out.push(' ');
        }
    }
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

/// Connects and drives the connection on the runtime, with TLS as the URL's libpq
/// parameters say (`tls`; `prefer` when they say nothing).
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let settings_error = |source: anyhow::Error| DbError::Settings {
        doing: format!("in {}", redact(url)),
        source: source.into(),
    };
    let (plain, settings) = tls::split(url).map_err(settings_error)?;
    let connector = tls::connector(&settings).map_err(settings_error)?;
    let (client, connection) = tokio_postgres::connect(&plain, connector)
        .await
        .doing(|| format!("connecting to {}", redact(url)))?;
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
pub async fn edition(client: &Client) -> Result<Edition, DbError> {
    let row = client
        .query_one("SHOW timescaledb.license", &[])
        .await
        .doing(|| "SHOW timescaledb.license: is the timescaledb extension loaded?".into())?;
    let license: String = row.get(0);
    match license.as_str() {
        "timescale" => Ok(Edition::Timescale),
        "apache" => Ok(Edition::Apache),
        other => Err(DbError::Schema(format!(
            "unknown timescaledb.license {other:?}"
        ))),
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
        assert!(!redact("postgres://u:pa?ss@h/d").contains("ss"));
        assert!(!redact("postgres://u:p/a@h/d").contains("p/a"));
        assert_eq!(
            redact("postgres://u@h/d?sslkey=k.pem&sslpassword=phrase"),
            "postgres://u@h/d?sslkey=k.pem&sslpassword=***"
        );
        assert_eq!(
            redact("host=h sslpassword=phrase dbname=d"),
            "host=h sslpassword=*** dbname=d"
        );
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
