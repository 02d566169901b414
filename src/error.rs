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
    /// PostgreSQL refused or the connection failed while `doing`.
    #[error("{doing}")]
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

/// The class of a PostgreSQL error: a closed connection or an I/O failure (no answer
/// at all), SQLSTATE class 08 (connection exception), 57P (the server shutting down or
/// restarting) and 53300 (too many connections) are waited out; classes 22 (data
/// exception) and 23 (integrity constraint) are the rows' fault; every other answer
/// (a missing table, a refused login, a permission) is the set-up's.
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
    let c = code.code();
    if c.starts_with("08") || c.starts_with("57P") || c == "53300" {
        ErrorClass::Retriable
    } else if c.starts_with("22") || c.starts_with("23") {
        ErrorClass::Data
    } else {
        ErrorClass::Configuration
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
            KafkaError::Client { class, .. } | KafkaError::Topic { class, .. } => *class,
            KafkaError::MissingTopic(_) => ErrorClass::Configuration,
            // librdkafka has retried within `message.timeout.ms` already.
            KafkaError::Produce { .. } => ErrorClass::Retriable,
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
}
