//! `gpu-health bench db`: the TimescaleDB quality bars of DESIGN 9, on a scratch
//! database beside the one in the environment's URL (created afresh, dropped after).
//!
//! 1. Raw ingest: the same generated rows loaded by the server itself
//!    (`COPY gpu_metrics FROM '<file>'`, binary) and by the sink (direct binary COPY,
//!    and the staging path a replay takes); the sink's rows/s over the server's is the
//!    ratio DESIGN 9 asks to be at least 0.8. The database must run on this machine,
//!    since the server reads the file.
//! 2. Backfill: one dump of a generated fleet (1,000 GPUs, 24 h by default) through
//!    the whole pipeline into TimescaleDB, end to end, timed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use datafusion::arrow::record_batch::RecordBatch;
use tokio_postgres::Client;

use super::{Timed, peak_rss_mib};
use crate::config::PipelineConfig;
use crate::db::copy::{copy_header, copy_trailer, encode_rows};
use crate::db::{connect, redact, with_database};
use crate::dump::Message;
use crate::event::decoder::decode_batch;
use crate::generate::{GenerateOptions, Manifest, generate, generate_to_file, manifest_path};
use crate::internal_events::Events;
use crate::pipeline::Pipeline;
use crate::sink::{FlushSet, Sink, TimescaleOptions, TimescaleSink};
use crate::source::Source;

/// What `bench db` measures.
#[derive(Debug, Clone)]
pub struct DbBenchOptions {
    pub gpus: usize,
    /// Hours of telemetry for the raw-ingest ratio.
    pub copy_hours: f64,
    /// Runs of each raw-ingest method; the median is reported.
    pub repeat: usize,
    /// Hours of telemetry for the backfill (0 skips it).
    pub backfill_hours: f64,
    /// Where the backfill dump is written, or reused when its manifest matches.
    pub dump: Option<PathBuf>,
    /// The scratch database's name.
    pub database: String,
}

const BATCH: usize = 65_536;

fn options(gpus: usize, hours: f64, bad_data: bool) -> Result<GenerateOptions> {
    Ok(GenerateOptions {
        gpus,
        days: hours / 24.0,
        start: chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z")?
            .with_timezone(&chrono::Utc),
        interval_s: 10,
        faults: gpus >= 8,
        bad_data,
        ..Default::default()
    })
}

pub async fn run(admin_url: &str, opts: &DbBenchOptions) -> Result<()> {
    let url = with_database(admin_url, &opts.database)?;
    println!(
        "scratch database {} (dropped and created for each part)",
        redact(&url)
    );
    if opts.copy_hours > 0.0 {
        raw_ingest(admin_url, &url, opts).await?;
    }
    if opts.backfill_hours > 0.0 {
        backfill(admin_url, &url, opts).await?;
    }
    drop_database(admin_url, &opts.database).await?;
    Ok(())
}

/// Drops and creates the scratch database and applies the schema to it.
async fn fresh_database(admin_url: &str, url: &str, name: &str) -> Result<Client> {
    drop_database(admin_url, name).await?;
    let admin = connect(admin_url).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .with_context(|| format!("creating the scratch database {name} (needs CREATEDB)"))?;
    let mut client = connect(url).await?;
    crate::db::migrate::apply(&mut client).await?;
    Ok(client)
}

async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    let admin = connect(admin_url).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .with_context(|| format!("dropping the scratch database {name}"))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Part 1: the sink's raw-ingest rate against the server's own COPY of the same rows.
async fn raw_ingest(admin_url: &str, url: &str, opts: &DbBenchOptions) -> Result<()> {
    // Duplicates and hard errors are left out: the server's COPY has no ON CONFLICT.
    let gen_opts = options(opts.gpus, opts.copy_hours, false)?;
    let mut msgs: Vec<Message> = Vec::new();
    generate(&gen_opts, &mut |m| {
        msgs.push(m);
        Ok(())
    })?;
    let cfg = PipelineConfig::parse(crate::config::DEMO_PIPELINE, "embedded demo")?;
    let limits = cfg.validation.decode_limits();
    let batches: Vec<RecordBatch> = msgs
        .chunks(BATCH)
        .map(|c| decode_batch(c, &limits, cfg.engine.decode_threads()).map(|d| d.raw))
        .collect::<Result<_, _>>()?;
    drop(msgs);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();

    // The server reads the file itself: it must be world-readable, in a directory
    // the server's user can enter.
    let dir = scratch_dir()?;
    let file = dir.join("gpu_metrics.copy");
    let mut buf = BytesMut::with_capacity(rows * 512);
    copy_header(&mut buf);
    for b in &batches {
        encode_rows(b, &mut buf)?;
    }
    copy_trailer(&mut buf);
    std::fs::write(&file, &buf).with_context(|| format!("writing {}", file.display()))?;
    make_readable(&file)?;
    println!(
        "raw ingest: {rows} rows of {} GPUs x {} h ({:.0} MB in binary COPY format), {} runs each",
        opts.gpus,
        opts.copy_hours,
        buf.len() as f64 / 1e6,
        opts.repeat
    );
    drop(buf);

    let mut server = Vec::new();
    let mut direct = Vec::new();
    let mut staged = Vec::new();
    let client = fresh_database(admin_url, url, &opts.database).await?;
    for _ in 0..opts.repeat {
        truncate(&client).await?;
        let t = Instant::now();
        let n = client
            .execute(
                &format!(
                    "COPY gpu_metrics FROM '{}' (FORMAT binary)",
                    file.display().to_string().replace('\'', "''")
                ),
                &[],
            )
            .await
            .context(
                "server-side COPY FROM a file: needs a superuser (or pg_read_server_files) \
                 and the database on this machine",
            )?;
        server.push(rows as f64 / t.elapsed().as_secs_f64());
        check_count(&client, n as usize, rows).await?;

        for (staging, rates) in [(false, &mut direct), (true, &mut staged)] {
            truncate(&client).await?;
            let mut sink = sink(url).await?;
            if staging {
                sink.prefer_staging();
            }
            let t = Instant::now();
            for b in &batches {
                let set = FlushSet {
                    raw: vec![b.clone()],
                    ..Default::default()
                };
                sink.write(&set, &Events::new()).await?;
            }
            rates.push(rows as f64 / t.elapsed().as_secs_f64());
            check_count(&client, rows, rows).await?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (s, d, st) = (median(server), median(direct), median(staged));
    println!("  server COPY FROM file:        {s:>10.0} rows/s");
    println!(
        "  sink, direct binary COPY:     {d:>10.0} rows/s   ratio {:.2} (target >= 0.80)",
        d / s
    );
    println!(
        "  sink, staging + ON CONFLICT:  {st:>10.0} rows/s   ratio {:.2} (the replay path)",
        st / s
    );
    Ok(())
}

async fn sink(url: &str) -> Result<TimescaleSink> {
    Ok(TimescaleSink::connect(TimescaleOptions {
        url: url.to_owned(),
        consumer_group: "bench".into(),
        apply_schema: false,
        refresh_interval: Duration::from_secs(3600),
        retention_interval: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(10),
    })
    .await?)
}

async fn truncate(client: &Client) -> Result<()> {
    client
        .batch_execute("TRUNCATE gpu_metrics; CHECKPOINT")
        .await
        .context("emptying gpu_metrics")
}

async fn check_count(client: &Client, reported: usize, expected: usize) -> Result<()> {
    let n: i64 = client
        .query_one("SELECT count(*) FROM gpu_metrics", &[])
        .await?
        .get(0);
    if n as usize != expected || reported != expected {
        bail!("gpu_metrics holds {n} rows (COPY reported {reported}), expected {expected}");
    }
    Ok(())
}

fn scratch_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("gpu-health-bench-db-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    make_readable(&dir)?;
    Ok(dir)
}

fn make_readable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("making {} readable by the server", path.display()))
}

/// Part 2: a generated fleet dump through the whole pipeline into TimescaleDB.
async fn backfill(admin_url: &str, url: &str, opts: &DbBenchOptions) -> Result<()> {
    let gen_opts = options(opts.gpus, opts.backfill_hours, true)?;
    let dump = opts.dump.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "gpu-health-bench-{}gpus-{}h.jsonl",
            opts.gpus, opts.backfill_hours
        ))
    });
    let messages = match reusable(&dump, &gen_opts) {
        Some(n) => {
            println!("backfill: reusing {} ({n} messages)", dump.display());
            n
        }
        None => {
            let t = Instant::now();
            let m = generate_to_file(&gen_opts, &dump)?;
            println!(
                "backfill: generated {} messages into {} in {:.1} s",
                m.messages,
                dump.display(),
                t.elapsed().as_secs_f64()
            );
            m.messages
        }
    };
    drop(fresh_database(admin_url, url, &opts.database).await?);
    let text = format!(
        "name = \"bench-backfill\"\n\
         [source]\nkind = \"file\"\npath = {path:?}\n\
         [sink]\nkind = \"timescale\"\n\
         [health]\nsample_interval = \"10s\"\n\
         [engine]\nbatch_size = {BATCH}\n",
        path = dump.display().to_string()
    );
    let cfg = PipelineConfig::parse(&text, "bench backfill pipeline")?;
    let source = Source::from_config(&cfg.source, None, &cfg.name, &Events::new())?;
    let sink = Sink::Timescale(Box::new(sink(url).await?));
    let t = Timed::start();
    let report = Pipeline::new(cfg).run(source, sink).await?;
    let secs = t.wall.elapsed().as_secs_f64();
    println!(
        "  end to end: {} messages -> {} raw rows, {} 1-min rows, {} 15-min rows, {} scores",
        report.messages,
        report.raw_rows,
        report.rollup_1m_rows,
        report.rollup_15m_rows,
        report.score_rows
    );
    println!("  {}", t.rate(messages as usize));
    println!(
        "  backfill time {secs:.1} s (target < 60 s for 8.64 M events); books {}; peak RSS {:.0} MiB",
        if report.books_balance() {
            "balanced"
        } else {
            "NOT balanced"
        },
        peak_rss_mib().unwrap_or(0.0)
    );
    Ok(())
}

/// The message count of an existing dump made with the same options, if any.
fn reusable(dump: &Path, opts: &GenerateOptions) -> Option<u64> {
    let text = std::fs::read_to_string(manifest_path(dump)).ok()?;
    let m: Manifest = serde_json::from_str(&text).ok()?;
    let o = &m.options;
    let same = o.gpus == opts.gpus
        && o.days == opts.days
        && o.interval_s == opts.interval_s
        && o.seed == opts.seed
        && dump.exists();
    same.then_some(m.messages)
}
