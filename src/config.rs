//! Pipeline configuration: a TOML file (see `pipelines/`), overridable by environment
//! variables `GPU_HEALTH_<SECTION>__<KEY>` (for example `GPU_HEALTH_SINK__PATH=out/x`),
//! validated when it loads. Errors name the file, the key and what was expected.

use std::path::Path;
use std::time::Duration;

use crate::error::ConfigError;
use serde::{Deserialize, Serialize};

use crate::window::WindowConfig;

/// The embedded demo pipeline, used by `gpu-health run` with no arguments.
pub const DEMO_PIPELINE: &str = include_str!("../pipelines/demo.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default = "default_name")]
    pub name: String,
    pub source: SourceConfig,
    pub sink: SinkConfig,
    #[serde(default)]
    pub window: WindowSection,
    #[serde(default)]
    pub validation: ValidationSection,
    #[serde(default)]
    pub health: HealthSection,
    #[serde(default)]
    pub engine: EngineSection,
    /// Kafka output topics beside the sink (DESIGN 2.3): rollups and dead letters.
    #[serde(default)]
    pub topics: Option<TopicsSection>,
    /// The Prometheus scrape endpoint; none without this section.
    #[serde(default)]
    pub metrics: Option<MetricsSection>,
}

/// The Prometheus scrape endpoint (`/metrics`, and `/healthz` for probes).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `address:port`; loopback by default, so nothing is exposed unless asked.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}

/// Output topics: every emitted rollup as a flat JSON row keyed by GPU UUID, and every
/// dead letter with its original bytes and reason headers. At least once: a flush's
/// messages are acknowledged by the broker before the flush is stored.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsSection {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    #[serde(default = "default_topic_1m")]
    pub rollup_1m: String,
    #[serde(default = "default_topic_15m")]
    pub rollup_15m: String,
    #[serde(default = "default_topic_dlq")]
    pub dead_letters: String,
    /// The largest message the brokers take (their `message.max.bytes`, 1 MB by
    /// default): a longer dead letter is produced truncated, with its original size
    /// and SHA-256 in headers.
    #[serde(default = "default_topic_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Replication factor of the output topics the processor creates; unset: the
    /// broker's own default (`default.replication.factor`).
    #[serde(default)]
    pub replication_factor: Option<i16>,
    /// Extra librdkafka producer settings.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// Kafka's default `message.max.bytes` (1,048,588) less room for the record's framing.
fn default_topic_max_message_bytes() -> usize {
    1_000_000
}

fn default_topic_1m() -> String {
    "gpu-metrics-1min".into()
}

fn default_topic_15m() -> String {
    "gpu-metrics-15min".into()
}

fn default_topic_dlq() -> String {
    "gpu-metrics-dlq".into()
}

fn default_name() -> String {
    "pipeline".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A topic dump (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`), or `embedded:fixture` for
    /// the fixture compiled into the binary.
    File {
        path: String,
        #[serde(default = "default_topic")]
        topic: String,
    },
    /// A Kafka topic, read as a member of a consumer group. With a TimescaleDB sink,
    /// partitions start at the offsets stored with the data.
    Kafka {
        /// `host:port[,host:port...]`.
        brokers: String,
        #[serde(default = "default_topic")]
        topic: String,
        /// Consumer group (default: the sink's consumer group, else the pipeline name).
        #[serde(default)]
        group: Option<String>,
        /// Stop at the end offsets taken at start (a backfill), instead of running on.
        #[serde(default)]
        bounded: bool,
        /// How long a bounded run waits for more messages once every partition has
        /// reached its end offset (the broker's high watermark may lag behind).
        #[serde(default = "default_linger", with = "humantime_serde")]
        end_linger: std::time::Duration,
        /// Extra librdkafka settings, e.g. `"security.protocol" = "ssl"`.
        #[serde(default)]
        properties: std::collections::BTreeMap<String, String>,
        /// RFC 3339 time: a partition with no stored checkpoint starts at its first
        /// message at or after it (Kafka's offsets for times) instead of the beginning.
        #[serde(default)]
        start_at: Option<String>,
    },
}

fn default_linger() -> std::time::Duration {
    std::time::Duration::from_secs(2)
}

pub fn default_topic() -> String {
    "gpu-metrics-enriched".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// A directory with one Parquet dataset per table plus the dead letters.
    Parquet {
        path: String,
        /// Rows per Parquet file (row groups are smaller).
        #[serde(default = "default_rows_per_file")]
        rows_per_file: usize,
    },
    /// TimescaleDB; the URL comes from the environment (`GPU_HEALTH_DATABASE_URL`,
    /// `DATABASE_URL`, or a file named by `GPU_HEALTH_DATABASE_URL_FILE`), never the file.
    Timescale {
        /// Name under which consumed offsets are stored (default: the pipeline name).
        #[serde(default)]
        consumer_group: Option<String>,
        /// Apply missing migrations at start (needs a role that may run DDL).
        #[serde(default)]
        apply_schema: bool,
        /// Apache edition: how often the aggregate views are refreshed.
        #[serde(default = "default_refresh", with = "humantime_serde")]
        refresh_interval: Duration,
        /// Apache edition: how often retention is enforced with drop_chunks.
        #[serde(default = "default_retention", with = "humantime_serde")]
        retention_interval: Duration,
        /// Cap of the reconnect backoff while the database is unavailable.
        #[serde(default = "default_backoff", with = "humantime_serde")]
        max_backoff: Duration,
    },
}

fn default_refresh() -> Duration {
    Duration::from_secs(60)
}

fn default_retention() -> Duration {
    Duration::from_secs(3600)
}

fn default_backoff() -> Duration {
    Duration::from_secs(10)
}

fn default_rows_per_file() -> usize {
    1_000_000
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowSection {
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    #[serde(with = "humantime_serde")]
    pub late_horizon: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for WindowSection {
    fn default() -> Self {
        WindowSection {
            allowed_lateness: Duration::from_secs(60),
            late_horizon: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl WindowSection {
    pub fn to_window_config(&self) -> WindowConfig {
        WindowConfig {
            allowed_lateness_us: self.allowed_lateness.as_micros() as i64,
            late_horizon_us: self.late_horizon.as_micros() as i64,
            idle_timeout: Some(self.idle_timeout),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSection {
    pub max_message_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
}

impl ValidationSection {
    /// The decoder's limits, with the wall clock sampled now.
    pub fn decode_limits(&self) -> crate::event::DecodeLimits {
        crate::event::DecodeLimits {
            max_message_bytes: self.max_message_bytes,
            max_future_skew_us: self.max_future_skew.as_micros() as i64,
            now_us: chrono::Utc::now().timestamp_micros(),
        }
    }
}

impl Default for ValidationSection {
    fn default() -> Self {
        ValidationSection {
            max_message_bytes: 1 << 20,
            max_future_skew: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// The interval assumed for a GPU-day with fewer than two samples; otherwise each
    /// GPU's interval is the median spacing of its samples that day.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// A day with less covered time than this is `insufficient_data`.
    #[serde(with = "humantime_serde")]
    pub min_data: Duration,
    /// A GPU silent this long gets `missing` rows.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// A GPU silent this long is no longer scored and its state is dropped.
    #[serde(with = "humantime_serde")]
    pub retire_after: Duration,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            sample_interval: Duration::from_secs(10),
            min_data: Duration::from_secs(3600),
            stale_after: Duration::from_secs(86_400),
            retire_after: Duration::from_secs(7 * 86_400),
        }
    }
}

impl HealthSection {
    /// The health tracker's parameters.
    pub fn params(&self, late_horizon_us: i64) -> crate::health::daily::HealthParams {
        let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        crate::health::daily::HealthParams {
            fallback_interval_us: us(self.sample_interval).max(1),
            late_horizon_us,
            min_data_s: self.min_data.as_secs_f64(),
            stale_after_us: us(self.stale_after),
            retire_after_us: us(self.retire_after),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Messages per micro-batch.
    pub batch_size: usize,
    /// Threads that decode a batch in parallel (0: one per core).
    pub decode_threads: usize,
    /// How often the engine state is stored with the data (Kafka source into
    /// TimescaleDB): a restart or a new owner of a partition resumes from the last
    /// one and re-reads what came after it. 0 stores it with every flush.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
}

impl EngineSection {
    /// Decode threads, with 0 resolved to one per core.
    pub fn decode_threads(&self) -> usize {
        match self.decode_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            batch_size: 65_536,
            decode_threads: 0,
            checkpoint_interval: Duration::from_secs(10),
        }
    }
}

impl PipelineConfig {
    /// Loads a pipeline file, applying environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses pipeline TOML; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Toml {
            origin: origin.to_owned(),
            source,
        })?;
        apply_env_overrides(&mut table, std::env::vars(), origin)?;
        let mut cfg: PipelineConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Key {
            origin: origin.to_owned(),
            key: e.path().to_string(),
            expected: e.into_inner().message().trim().to_owned(),
        })?;
        cfg.validate(origin)?;
        cfg.resolve_secrets(origin)?;
        Ok(cfg)
    }

    /// Kafka client properties may name their value's source instead of holding it:
    /// `${env:NAME}` or `${file:/path}` (Kafka's config-provider syntax), so that a
    /// SASL password or a key passphrase lives in the environment or a mounted secret.
    fn resolve_secrets(&mut self, origin: &str) -> Result<(), ConfigError> {
        let mut maps = Vec::new();
        if let SourceConfig::Kafka { properties, .. } = &mut self.source {
            maps.push(("source.properties", properties));
        }
        if let Some(t) = &mut self.topics {
            maps.push(("topics.properties", &mut t.properties));
        }
        for (section, map) in maps {
            for (key, value) in map.iter_mut() {
                if let Some(resolved) =
                    resolve_secret(value).map_err(|expected| ConfigError::Key {
                        origin: origin.to_owned(),
                        key: format!("{section}.{key}"),
                        expected,
                    })?
                {
                    *value = resolved;
                }
            }
        }
        Ok(())
    }

    /// The configuration as one JSON line with every secret masked, for the start-up
    /// log: Kafka properties whose name says password, secret, key or token.
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        let mask = |map: &mut std::collections::BTreeMap<String, String>| {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) {
                    *v = "***".into();
                }
            }
        };
        if let SourceConfig::Kafka { properties, .. } = &mut shown.source {
            mask(properties);
        }
        if let Some(t) = &mut shown.topics {
            mask(&mut t.properties);
        }
        serde_json::to_string(&shown).unwrap_or_else(|e| format!("(unprintable: {e})"))
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let wrong = |key: &str, expected: String| ConfigError::Key {
            origin: origin.to_owned(),
            key: key.to_owned(),
            expected,
        };
        if self.engine.batch_size == 0 {
            return Err(wrong(
                "engine.batch_size",
                "expected a positive number of messages".into(),
            ));
        }
        if self.health.sample_interval.is_zero() {
            return Err(wrong(
                "health.sample_interval",
                "expected a positive duration".into(),
            ));
        }
        if self.health.stale_after.is_zero() || self.health.retire_after < self.health.stale_after {
            return Err(wrong(
                "health.retire_after",
                format!(
                    "expected stale_after ({:?}) positive and retire_after ({:?}) at least as long",
                    self.health.stale_after, self.health.retire_after
                ),
            ));
        }
        if self.validation.max_message_bytes == 0 {
            return Err(wrong(
                "validation.max_message_bytes",
                "expected a positive size".into(),
            ));
        }
        Ok(())
    }
}

/// Whether a client property holds a secret (librdkafka: `sasl.password`,
/// `ssl.key.password`, `ssl.key.pem`, `sasl.oauthbearer.client.secret`, ...).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key.pem",
        "token",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// `${env:NAME}` -> the variable, `${file:/path}` -> the file's content without its
/// trailing newline; anything else is a literal (`None`).
/// The error is what was expected instead.
fn resolve_secret(value: &str) -> Result<Option<String>, String> {
    let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
        return Ok(None);
    };
    match inner.split_once(':') {
        Some(("env", name)) => std::env::var(name)
            .map(Some)
            .map_err(|e| format!("expected the environment variable {name} to be set ({e})")),
        Some(("file", path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_owned()))
            .map_err(|e| format!("expected a readable secret file at {path} ({e})")),
        _ => Err(format!(
            "expected ${{env:NAME}} or ${{file:/path}}, got {value:?}"
        )),
    }
}

/// `GPU_HEALTH_<SECTION>__<KEY>=value`: the value is read as a TOML literal when it
/// parses as one (numbers, booleans, quoted strings), else as a plain string.
fn apply_env_overrides(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
    origin: &str,
) -> Result<(), ConfigError> {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("GPU_HEALTH_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value.clone()));
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key, parsed);
            }
            _ => {
                return Err(ConfigError::Key {
                    origin: origin.to_owned(),
                    key: section,
                    expected: format!("a table, which {name} overrides"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_pipeline_parses() {
        let cfg = PipelineConfig::parse(DEMO_PIPELINE, "demo.toml").unwrap();
        assert!(matches!(cfg.source, SourceConfig::File { .. }));
    }

    #[test]
    fn errors_name_file_key_and_expectation() {
        let bad = "[source]\nkind = \"file\"\npath = \"x\"\n[sink]\nkind = \"parquet\"\npath = \"o\"\n[window]\nlate_horizon = 5\n";
        let err = format!(
            "{:#}",
            PipelineConfig::parse(bad, "pipelines/x.toml").unwrap_err()
        );
        assert!(err.contains("pipelines/x.toml"), "{err}");
        assert!(err.contains("late_horizon"), "{err}");
        let bad = "[source]\nkind = \"file\"\npath = \"x\"\ntypo = 1\n[sink]\nkind = \"parquet\"\npath = \"o\"\n";
        let err = format!("{:#}", PipelineConfig::parse(bad, "p.toml").unwrap_err());
        assert!(err.contains("typo"), "{err}");
    }

    #[test]
    fn env_overrides_replace_keys() {
        let mut t: toml::Table = toml::from_str("[sink]\npath = \"a\"\n").unwrap();
        let vars = vec![
            ("GPU_HEALTH_SINK__PATH".to_string(), "b/c".to_string()),
            (
                "GPU_HEALTH_ENGINE__BATCH_SIZE".to_string(),
                "42".to_string(),
            ),
        ];
        apply_env_overrides(&mut t, vars.into_iter(), "t").unwrap();
        assert_eq!(t["sink"]["path"].as_str(), Some("b/c"));
        assert_eq!(t["engine"]["batch_size"].as_integer(), Some(42));
    }

    #[test]
    fn secrets_come_from_the_environment_or_files_and_never_show() {
        let dir = std::env::temp_dir().join(format!("gpu-health-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sasl.txt");
        std::fs::write(&file, "from-file\n").unwrap();
        // PATH is always set; setting a variable here would race other tests' getenv.
        let path_var = std::env::var("PATH").unwrap();
        let text = format!(
            "[source]\nkind = \"kafka\"\nbrokers = \"b:9092\"\n[source.properties]\n\
             \"sasl.password\" = \"${{file:{}}}\"\n\"ssl.key.password\" = \"${{env:PATH}}\"\n\
             \"security.protocol\" = \"sasl_ssl\"\n[sink]\nkind = \"parquet\"\npath = \"o\"\n",
            file.display()
        );
        let cfg = PipelineConfig::parse(&text, "p.toml").unwrap();
        let SourceConfig::Kafka { properties, .. } = &cfg.source else {
            panic!("kafka")
        };
        assert_eq!(properties["sasl.password"], "from-file");
        assert_eq!(properties["ssl.key.password"], path_var);
        let shown = cfg.redacted();
        assert!(
            !shown.contains("from-file") && !shown.contains(&path_var),
            "{shown}"
        );
        assert!(shown.contains("sasl_ssl"), "{shown}");
        let missing = text.replace("env:PATH", "env:GPU_HEALTH_TEST_UNSET_VAR");
        let err = format!(
            "{:#}",
            PipelineConfig::parse(&missing, "p.toml").unwrap_err()
        );
        assert!(
            err.contains("p.toml") && err.contains("ssl.key.password"),
            "{err}"
        );
        assert!(err.contains("GPU_HEALTH_TEST_UNSET_VAR"), "{err}");
    }

    #[test]
    fn every_bundled_pipeline_parses() {
        for name in ["demo", "backfill", "fleet"] {
            let path = format!("{}/pipelines/{name}.toml", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = PipelineConfig::parse(&text, &path) {
                panic!("{e:#}");
            }
        }
    }
}
