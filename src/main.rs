//! The `gpu-health` command line: argument parsing and dispatch only.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use gpu_health::config::{DEMO_PIPELINE, PipelineConfig, SinkConfig};
use gpu_health::generate::{GenerateOptions, generate_to_file};

#[derive(Parser)]
#[command(
    name = "gpu-health",
    version,
    about = "GPU fleet telemetry: rollups and health scores"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline; with no --config, the embedded demo (bundled fixture -> Parquet).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        /// How many of the worst GPUs the summary lists.
        #[arg(long, default_value_t = 8)]
        worst: usize,
    },
    /// Generate a deterministic synthetic fleet as a topic dump.
    Generate {
        #[arg(long, default_value_t = 16)]
        gpus: usize,
        #[arg(long, default_value_t = 3.0)]
        days: f64,
        /// Start time, RFC 3339.
        #[arg(long, default_value = "2026-11-01T00:00:00Z")]
        start: String,
        /// Sample interval in seconds.
        #[arg(long, default_value_t = 10)]
        interval: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Leave out the fault scenarios.
        #[arg(long)]
        no_faults: bool,
        /// Leave out the injected bad data.
        #[arg(long)]
        no_bad_data: bool,
        /// Output dump (.jsonl, .jsonl.gz or .jsonl.zst); a manifest goes beside it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Convert logs you already have (nvidia-smi CSV, dcgm-exporter text, any CSV) into a
    /// topic dump that `GPU_HEALTH_SOURCE__PATH=OUT gpu-health run` reads.
    Import {
        #[command(subcommand)]
        kind: ImportKind,
    },
    /// Produce a topic dump into Kafka (keys and partitions kept), as fast as possible
    /// or at --rate messages per second; creates the topic when missing.
    Replay {
        /// The dump (.jsonl, .jsonl.gz, .jsonl.zst) or embedded:fixture.
        dump: String,
        #[arg(long, default_value = "gpu-metrics-enriched")]
        topic: String,
        /// Bootstrap servers (default: GPU_HEALTH_KAFKA_BROKERS or KAFKA_BROKERS).
        #[arg(long)]
        brokers: Option<String>,
        /// Partitions of the topic if it has to be created.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(long)]
        rate: Option<f64>,
        /// At most this many records per produced batch. 1 lets a consumer seek to any
        /// offset on brokers that cannot fetch from inside a batch (Tansu 0.6).
        #[arg(long)]
        batch_records: Option<u32>,
        /// A librdkafka property for the producer and the admin client, e.g.
        /// security.protocol=ssl (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = key_value)]
        properties: Vec<(String, String)>,
    },
    /// Manage the TimescaleDB schema (URL from GPU_HEALTH_DATABASE_URL or DATABASE_URL).
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Report on stored results: from the Parquet store of `gpu-health run` (default
    /// out/demo), or from TimescaleDB with --database.
    Report {
        #[command(subcommand)]
        kind: ReportKind,
        /// Read TimescaleDB (URL from GPU_HEALTH_DATABASE_URL, DATABASE_URL or
        /// GPU_HEALTH_DATABASE_URL_FILE) instead of a Parquet store.
        #[arg(long, global = true, conflicts_with = "parquet")]
        database: bool,
        /// The Parquet store to read.
        #[arg(long, global = true, default_value = "out/demo")]
        parquet: PathBuf,
        #[arg(long, global = true, value_enum, default_value = "table")]
        format: gpu_health::report::Format,
    },
    /// Measure decode, windows + scores, and end-to-end throughput on a generated fleet
    /// (`bench db` measures the TimescaleDB bars).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        target: Option<BenchTarget>,
        #[arg(long, default_value_t = 1000)]
        gpus: usize,
        /// Hours of fleet telemetry to generate (10 s samples).
        #[arg(long, default_value_t = 3.0)]
        hours: f64,
    },
}

#[derive(Subcommand)]
enum ImportKind {
    /// `nvidia-smi --query-gpu=... --format=csv[,nounits][,noheader]` output, also inside
    /// larger captures (other sections are skipped and counted).
    NvidiaSmi {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Zone of nvidia-smi's local timestamps: IANA name (Europe/Berlin) or offset
        /// (+02:00); default UTC.
        #[arg(long)]
        tz: Option<String>,
        /// Host name when the output has no hostname column (default: from the file name).
        #[arg(long)]
        hostname: Option<String>,
        /// The --query-gpu list the files were written with, for noheader output.
        #[arg(long)]
        query_gpu: Option<String>,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Output dump (.jsonl, .jsonl.gz or .jsonl.zst).
        #[arg(short, long)]
        out: PathBuf,
    },
    /// dcgm-exporter /metrics text: one scrape, or scrapes concatenated with timestamps.
    Dcgm {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Time of samples without a timestamp, RFC 3339 (default: the file's mtime).
        #[arg(long)]
        at: Option<String>,
        /// Host name when samples carry no Hostname label (default: from the file name).
        #[arg(long)]
        hostname: Option<String>,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Any CSV with a header, by a column map onto the gpu_metrics columns.
    Csv {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// src=dst pairs, e.g. timestamp=time,gpu_index=device_index,power_W=power_usage.
        #[arg(long)]
        map: String,
        #[arg(long)]
        hostname: Option<String>,
        /// GPU model for every row (when no column is mapped to gpu_model).
        #[arg(long)]
        model: Option<String>,
        /// Zone of times without an offset (IANA name or +02:00); default UTC.
        #[arg(long)]
        tz: Option<String>,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(short, long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ReportKind {
    /// The newest raw samples of one GPU (--gpu), or the newest sample of every GPU that
    /// reported in the last 10 minutes of the fleet's data.
    Latest {
        #[arg(long)]
        gpu: Option<String>,
        /// Samples of the GPU to show (with --gpu).
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Temperature per 15 minutes: of one GPU (--gpu) or across the fleet.
    Temperature {
        #[arg(long)]
        gpu: Option<String>,
        #[arg(long, default_value_t = 24)]
        hours: u32,
    },
    /// GPUs per grade on the newest scored day (`insufficient_data` and `missing`
    /// included, with the oldest last-seen time).
    Fleet,
    /// Minutes whose peak reached --threshold °C or rose --rise °C over the previous minute.
    Spikes {
        #[arg(long, default_value_t = 85.0)]
        threshold: f64,
        #[arg(long, default_value_t = 10.0)]
        rise: f64,
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// ECC counter increases per GPU, with rates per hour.
    Ecc {
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Power, utilisation and utilisation per 100 W per GPU, least efficient first.
    Power {
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// The GPUs whose score falls fastest, with their failure probability.
    Degrading {
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// GPUs silent for `health.stale_after` on the newest day, with when each was last
    /// seen.
    Missing {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One self-contained HTML page with plots and tables.
    Html {
        #[arg(long)]
        out: PathBuf,
        /// Days of history in the trend plots.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// How many of the worst GPUs get a score history.
        #[arg(long, default_value_t = 5)]
        worst: u32,
    },
}

#[derive(Subcommand)]
enum BenchTarget {
    /// Raw-ingest rows/s against server-side COPY FROM a file, and an end-to-end
    /// backfill, on a scratch database beside the one in the environment's URL
    /// (needs CREATEDB and superuser; the server must run on this machine).
    Db {
        #[arg(long, default_value_t = 1000)]
        gpus: usize,
        /// Hours of telemetry for the raw-ingest ratio.
        #[arg(long, default_value_t = 1.0)]
        copy_hours: f64,
        /// Runs of each raw-ingest method (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Hours of telemetry for the backfill (0 skips it).
        #[arg(long, default_value_t = 24.0)]
        backfill_hours: f64,
        /// The backfill dump: written there, or reused when its manifest matches.
        #[arg(long)]
        dump: Option<PathBuf>,
        /// Name of the scratch database (dropped and created).
        #[arg(long, default_value = "gpu_health_bench")]
        database: String,
    },
}

#[derive(Subcommand)]
enum SchemaAction {
    /// Apply the migrations that are missing (idempotent).
    Apply,
    /// Show the edition, tables, chunks, sizes, policies and compression.
    Status,
}

/// `KEY=VALUE` of `--property`.
fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GPU_HEALTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,gpu_health=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command.unwrap_or(Command::Run {
        config: None,
        worst: 8,
    }) {
        Command::Run { config, worst } => runtime.block_on(run(config, worst)),
        Command::Generate {
            gpus,
            days,
            start,
            interval,
            seed,
            partitions,
            no_faults,
            no_bad_data,
            out,
        } => {
            let start = chrono::DateTime::parse_from_rfc3339(&start)
                .with_context(|| {
                    format!("--start {start:?}: expected RFC 3339, e.g. 2026-11-01T00:00:00Z")
                })?
                .with_timezone(&chrono::Utc);
            let opts = GenerateOptions {
                gpus,
                days,
                start,
                interval_s: interval,
                seed,
                partitions,
                faults: !no_faults,
                bad_data: !no_bad_data,
            };
            let manifest = generate_to_file(&opts, &out)?;
            println!(
                "wrote {} messages ({} samples) to {}",
                manifest.messages,
                manifest.samples,
                out.display()
            );
            Ok(())
        }
        Command::Import { kind } => import(kind),
        Command::Schema { action } => runtime.block_on(schema(action)),
        Command::Report {
            kind,
            database,
            parquet,
            format,
        } => runtime.block_on(report(kind, database, parquet, format)),
        Command::Replay {
            dump,
            topic,
            brokers,
            partitions,
            rate,
            batch_records,
            properties,
        } => {
            let brokers = brokers
                .or_else(|| std::env::var("GPU_HEALTH_KAFKA_BROKERS").ok())
                .or_else(|| std::env::var("KAFKA_BROKERS").ok())
                .context("no brokers: pass --brokers or set KAFKA_BROKERS")?;
            let opts = gpu_health::replay::ReplayOptions {
                dump,
                brokers,
                topic,
                partitions,
                rate,
                batch_records,
                properties,
            };
            let started = std::time::Instant::now();
            let n = runtime.block_on(gpu_health::replay::replay(&opts))?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "produced {n} messages into {} in {secs:.2} s ({:.0} msg/s)",
                opts.topic,
                n as f64 / secs
            );
            Ok(())
        }
        Command::Bench {
            target: None,
            gpus,
            hours,
        } => runtime.block_on(gpu_health::bench::run(gpus, hours)),
        Command::Bench {
            target:
                Some(BenchTarget::Db {
                    gpus,
                    copy_hours,
                    repeat,
                    backfill_hours,
                    dump,
                    database,
                }),
            ..
        } => {
            let url = gpu_health::db::database_url_from_env()?;
            let opts = gpu_health::bench::db::DbBenchOptions {
                gpus,
                copy_hours,
                repeat: repeat.max(1),
                backfill_hours,
                dump,
                database,
            };
            runtime.block_on(gpu_health::bench::db::run(&url, &opts))
        }
    }
}

fn import(kind: ImportKind) -> Result<()> {
    use gpu_health::import;
    let zone = |tz: Option<String>| tz.as_deref().map(import::Zone::parse).transpose();
    let summary = match kind {
        ImportKind::NvidiaSmi {
            files,
            tz,
            hostname,
            query_gpu,
            partitions,
            out,
        } => import::import_nvidia_smi(&import::NvidiaSmiOptions {
            files,
            tz: zone(tz)?,
            hostname,
            query_gpu,
            partitions,
            out,
        })?,
        ImportKind::Dcgm {
            files,
            at,
            hostname,
            partitions,
            out,
        } => {
            let at = at
                .map(|a| {
                    chrono::DateTime::parse_from_rfc3339(&a)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .with_context(|| {
                            format!("--at {a:?}: expected RFC 3339, e.g. 2026-11-01T00:00:00Z")
                        })
                })
                .transpose()?;
            import::import_dcgm(&import::DcgmOptions {
                files,
                at,
                hostname,
                partitions,
                out,
            })?
        }
        ImportKind::Csv {
            files,
            map,
            hostname,
            model,
            tz,
            partitions,
            out,
        } => import::import_csv(&import::CsvOptions {
            files,
            map: import::parse_map(&map)?,
            hostname,
            model,
            tz: zone(tz)?,
            partitions,
            out,
        })?,
    };
    eprint!("{summary}");
    Ok(())
}

async fn schema(action: SchemaAction) -> Result<()> {
    let url = gpu_health::db::database_url_from_env()?;
    let mut client = gpu_health::db::connect(&url).await?;
    match action {
        SchemaAction::Apply => {
            let r = gpu_health::db::migrate::apply(&mut client).await?;
            println!(
                "edition {}: applied {} migration(s){}, {} already applied",
                r.edition.as_str(),
                r.applied.len(),
                if r.applied.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.applied.join(", "))
                },
                r.already.len()
            );
        }
        SchemaAction::Status => print!("{}", gpu_health::db::status::status(&client).await?),
    }
    Ok(())
}

async fn report(
    kind: ReportKind,
    database: bool,
    parquet: PathBuf,
    format: gpu_health::report::Format,
) -> Result<()> {
    use gpu_health::report::{Query, Store, html};
    let store = if database {
        Store::timescale(&gpu_health::db::database_url_from_env()?).await?
    } else {
        Store::parquet(&parquet).await?
    };
    let query = match kind {
        ReportKind::Html { out, days, worst } => {
            let page = html::render(&store, &html::HtmlOptions { days, worst }).await?;
            std::fs::write(&out, page).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
            return Ok(());
        }
        ReportKind::Latest { gpu, limit } => Query::Latest { gpu, limit },
        ReportKind::Temperature { gpu, hours } => Query::Temperature { gpu, hours },
        ReportKind::Fleet => Query::Fleet,
        ReportKind::Spikes {
            threshold,
            rise,
            hours,
            limit,
        } => {
            if !threshold.is_finite() || !rise.is_finite() {
                anyhow::bail!("--threshold and --rise: expected finite numbers of °C");
            }
            Query::Spikes {
                threshold_c: threshold,
                rise_c: rise,
                hours,
                limit,
            }
        }
        ReportKind::Ecc { hours, limit } => Query::Ecc { hours, limit },
        ReportKind::Power { hours, limit } => Query::Power { hours, limit },
        ReportKind::Degrading { limit } => Query::Degrading { limit },
        ReportKind::Missing { limit } => Query::Missing { limit },
    };
    let table = store.run(&query).await?;
    print!("{}", gpu_health::report::render(&table, format)?);
    Ok(())
}

async fn run(config: Option<PathBuf>, worst: usize) -> Result<()> {
    let cfg = match &config {
        Some(path) => PipelineConfig::load(path)?,
        None => PipelineConfig::parse(DEMO_PIPELINE, "embedded pipelines/demo.toml")?,
    };
    let output = match &cfg.sink {
        SinkConfig::Parquet { path, .. } => format!("parquet datasets under {path}/"),
        SinkConfig::Timescale { .. } => "TimescaleDB (DATABASE_URL)".to_owned(),
    };
    let report = gpu_health::run_pipeline(cfg).await?;
    print!("{}", gpu_health::summary::render(&report, &output, worst));
    if !report.books_balance() {
        anyhow::bail!("the books do not balance: some messages are unaccounted for");
    }
    Ok(())
}
