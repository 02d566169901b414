//! The errors that cross a boundary (the database, Kafka, the input files, the
//! configuration, the decoder), each carrying an `ErrorClass` that tells its caller
//! what to do: wait and retry, set the data aside, or stop and say what to fix. Retry
//! loops match on the class, never on message text or a downcast.
//!
//! PostgreSQL errors are classified by SQLSTATE in `classify_postgres`, the one place
//! that knows the codes.

use std::error::Error as StdError;

use tokio_postgres::error::SqlState;

/// A cause of any kind (an `anyhow::Error` converts with `.into()`).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What a caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Something outside the job is unavailable (a lost connection, a broker or server
    /// restarting): wait it out with backoff and try the same work again.
    Retriable,
    /// The data was refused: retrying the same rows fails the same way.
    Data,
    /// A mistake in the set-up (a missing table, a refused login, a bad property):
    /// stop at once and say what to fix.
    Configuration,
}

/// A database error (the TimescaleDB sink, the state store, migrations).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// PostgreSQL refused or the connection failed while `doing`; a set-up error
    /// says what to fix.
    #[error("{doing}{}", advice(source))]
    Postgres {
        doing: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The connection settings cannot work (TLS files, `sslmode`).
    #[error("{doing}")]
    Settings {
        doing: String,
        #[source]
        source: BoxError,
    },
    /// The database lacks what this build needs (pending migrations).
    #[error("{0}")]
    Schema(String),
    /// Rows could not be encoded for the database.
    #[error("{doing}")]
    Encode {
        doing: String,
        #[source]
        source: BoxError,
    },
}

impl DbError {
    pub fn class(&self) -> ErrorClass {
        match self {
            DbError::Postgres { source, .. } => classify_postgres(source),
            DbError::Settings { .. } | DbError::Schema(_) => ErrorClass::Configuration,
            DbError::Encode { .. } => ErrorClass::Data,
        }
    }

    /// The SQLSTATE PostgreSQL answered with, if it answered.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self {
            DbError::Postgres { source, .. } => source.code(),
            _ => None,
        }
    }

    /// The same error, said to have happened while `doing` (its class kept).
    pub fn within(self, doing: String) -> DbError {
        match self {
            DbError::Postgres {
                doing: inner,
                source,
            } => DbError::Postgres {
                doing: format!("{doing}: {inner}"),
                source,
            },
            DbError::Settings {
                doing: inner,
                source,
            } => DbError::Settings {
                doing: format!("{doing}: {inner}"),
                source,
            },
            DbError::Encode {
                doing: inner,
                source,
            } => DbError::Encode {
                doing: format!("{doing}: {inner}"),
                source,
            },
            DbError::Schema(m) => DbError::Schema(format!("{doing}: {m}")),
        }
    }

    /// A row's key exists already (the direct COPY's cue to stage instead).
    pub fn is_unique_violation(&self) -> bool {
        self.sqlstate() == Some(&SqlState::UNIQUE_VIOLATION)
    }
}

/// Adds what was being done to a PostgreSQL error.
pub(crate) trait PgContext<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, DbError>;
}

impl<T> PgContext<T> for Result<T, tokio_postgres::Error> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, DbError> {
        self.map_err(|source| DbError::Postgres {
            doing: what(),
            source,
        })
    }
}

/// The class of a PostgreSQL error, by SQLSTATE (the codes are PostgreSQL's, Appendix A
/// of its manual):
/// - waited out (`Retriable`): no answer at all (a closed connection, an I/O failure),
///   class 08 (connection exception), 40001 (serialization failure), 40P01 (deadlock),
///   57P01..57P03 (administrator shutdown, crash shutdown, cannot connect now), 25006
///   (read-only transaction: a replica promoted or a server in recovery after a
///   failover), class 53 (insufficient resources: disk full, out of memory, too many
///   connections), 55P03 (lock not available) and 57014 (statement timeout or cancel);
/// - the rows' fault (`Data`): class 22 (data exception), 23 (integrity constraint) and
///   54 (a limit such as an index row that is too large);
/// - every other answer (a missing table, a refused login, a permission) is the
///   set-up's (`Configuration`): see `advice` for what to fix.
pub fn classify_postgres(e: &tokio_postgres::Error) -> ErrorClass {
    if e.is_closed() {
        return ErrorClass::Retriable;
    }
    let Some(code) = e.code() else {
        // No SQLSTATE: the server never answered (refused, reset) or a value could
        // not be converted on our side.
        let mut cause = e.source();
        let mut io = false;
        while let Some(c) = cause {
            io |= c.downcast_ref::<std::io::Error>().is_some();
            cause = c.source();
        }
        return if io {
            ErrorClass::Retriable
        } else {
            ErrorClass::Data
        };
    };
    classify_sqlstate(code.code())
}

/// `classify_postgres` for a SQLSTATE.
pub fn classify_sqlstate(c: &str) -> ErrorClass {
    const RETRIABLE: [&str; 8] = [
        "40001", "40P01", "57P01", "57P02", "57P03", "25006", "55P03", "57014",
    ];
    if c.starts_with("08") || c.starts_with("53") || RETRIABLE.contains(&c) {
        ErrorClass::Retriable
    } else if c.starts_with("22") || c.starts_with("23") || c.starts_with("54") {
        ErrorClass::Data
    } else {
        ErrorClass::Configuration
    }
}

/// What to fix for a set-up error, by SQLSTATE (empty when there is no advice).
fn advice(e: &tokio_postgres::Error) -> &'static str {
    let Some(code) = e.code() else { return "" };
    let c = code.code();
    match c {
        "42501" => {
            " (permission denied: grant the role what it needs, e.g. `GRANT gpu_health_writer \
             TO <role>`, or run `gpu-health schema apply` as the owner)"
        }
        "42P01" | "42703" | "42883" | "3F000" => {
            " (the schema is missing or older than this build: run `gpu-health schema apply`)"
        }
        "3D000" => " (no such database: check the database name in the database URL)",
        "0A000" => " (a feature this edition of TimescaleDB lacks)",
        _ if c.starts_with("28") => {
            " (the login was refused: check the user and password in the database URL and \
             pg_hba.conf)"
        }
        _ => "",
    }
}

/// A Kafka error (the source's consumer, the output topics, topic creation).
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused to build a client from the settings.
    #[error("creating a Kafka {what} for {brokers}")]
    Client {
        what: &'static str,
        brokers: String,
        class: ErrorClass,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A topic could not be created, subscribed to or read.
    #[error("topic {topic}")]
    Topic {
        topic: String,
        class: ErrorClass,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The topic the source is to read does not exist.
    #[error("topic {0} does not exist")]
    MissingTopic(String),
    /// The broker did not acknowledge a produced message.
    #[error("producing to {topic}")]
    Produce {
        topic: String,
        class: ErrorClass,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A row could not be encoded as a message.
    #[error("encoding a message for {topic}")]
    Encode {
        topic: String,
        #[source]
        source: BoxError,
    },
}

impl KafkaError {
    pub fn class(&self) -> ErrorClass {
        match self {
            KafkaError::Client { class, .. }
            | KafkaError::Topic { class, .. }
            | KafkaError::Produce { class, .. } => *class,
            KafkaError::MissingTopic(_) => ErrorClass::Configuration,
            KafkaError::Encode { .. } => ErrorClass::Data,
        }
    }
}

/// A pipeline file that cannot be used: names the file, the key and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading pipeline config {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not valid TOML")]
    Toml {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    /// `key`: what was wrong with its value.
    #[error("{origin}: key `{key}`: {expected}")]
    Key {
        origin: String,
        key: String,
        expected: String,
    },
}

impl ConfigError {
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Configuration
    }
}

/// A micro-batch that could not be turned into Arrow at all (single messages never
/// fail here: they become dead letters).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("building the raw batch")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("a decoder thread panicked")]
    Panicked,
}

impl DecodeError {
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Data
    }
}

/// A source that cannot deliver: a dump that cannot be opened or read, a Kafka or
/// state-store failure, a bad source setting.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("opening {path}")]
    Open {
        path: String,
        #[source]
        source: BoxError,
    },
    #[error("reading {path} line {line}")]
    Io {
        path: String,
        line: usize,
        #[source]
        source: std::io::Error,
    },
    /// A line of a dump that is not a dump record (the dump is damaged; the
    /// messages in it are judged by the decoder, never here).
    #[error("{path} line {line}: not a topic-dump record")]
    Record {
        path: String,
        line: usize,
        #[source]
        source: BoxError,
    },
    /// Boxed, as the next one: a source error stays small on the happy path.
    #[error(transparent)]
    Kafka(Box<KafkaError>),
    #[error(transparent)]
    Db(Box<DbError>),
    #[error("source.{key}: {expected}")]
    Settings { key: &'static str, expected: String },
}

impl From<KafkaError> for SourceError {
    fn from(e: KafkaError) -> Self {
        SourceError::Kafka(Box::new(e))
    }
}

impl From<DbError> for SourceError {
    fn from(e: DbError) -> Self {
        SourceError::Db(Box::new(e))
    }
}

impl SourceError {
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Open { .. } | SourceError::Io { .. } => ErrorClass::Configuration,
            SourceError::Record { .. } => ErrorClass::Data,
            SourceError::Kafka(e) => e.class(),
            SourceError::Db(e) => e.class(),
            SourceError::Settings { .. } => ErrorClass::Configuration,
        }
    }
}

/// An error and its causes on one line, for logs: `doing: because: because`.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_names_every_cause() {
        let e = DbError::Encode {
            doing: "encoding gpu_metrics".into(),
            source: anyhow::anyhow!("column x").context("row 3").into(),
        };
        assert_eq!(chain(&e), "encoding gpu_metrics: row 3: column x");
        assert_eq!(e.class(), ErrorClass::Data);
    }

    #[test]
    fn sqlstates_fall_in_the_classes_the_issue_lists() {
        use ErrorClass::*;
        // Codes from PostgreSQL's manual, Appendix A.
        for (code, class) in [
            ("08006", Retriable),     // connection_failure
            ("08P01", Retriable),     // protocol_violation
            ("40001", Retriable),     // serialization_failure
            ("40P01", Retriable),     // deadlock_detected
            ("57P01", Retriable),     // admin_shutdown
            ("57P02", Retriable),     // crash_shutdown
            ("57P03", Retriable),     // cannot_connect_now
            ("25006", Retriable),     // read_only_sql_transaction
            ("53100", Retriable),     // disk_full
            ("53200", Retriable),     // out_of_memory
            ("53300", Retriable),     // too_many_connections
            ("55P03", Retriable),     // lock_not_available
            ("57014", Retriable),     // query_canceled (statement_timeout)
            ("22021", Data),          // character_not_in_repertoire (NUL in text)
            ("22003", Data),          // numeric_value_out_of_range
            ("23514", Data),          // check_violation
            ("23502", Data),          // not_null_violation
            ("54000", Data),          // program_limit_exceeded
            ("42501", Configuration), // insufficient_privilege
            ("42P01", Configuration), // undefined_table
            ("3D000", Configuration), // invalid_catalog_name
            ("28P01", Configuration), // invalid_password
            ("28000", Configuration), // invalid_authorization_specification
            ("57P04", Configuration), // database_dropped
            ("0A000", Configuration), // feature_not_supported
        ] {
            assert_eq!(classify_sqlstate(code), class, "{code}");
        }
    }
}
