//! `gpu-health bench`: generates a fleet in memory and prints events/s for decoding,
//! for windows + scores, for decode + windows + scores, and end to end into Parquet,
//! plus peak memory; `db` measures the TimescaleDB bars. Figures, not assertions: the
//! quality bars live in DESIGN 9.

pub mod db;

use std::time::Instant;

use anyhow::Result;

use crate::config::{DEMO_PIPELINE, PipelineConfig};
use crate::dump::Message;
use crate::event::decoder::decode_batch;
use crate::generate::{GenerateOptions, generate};
use crate::internal_events::Events;
use crate::pipeline::Pipeline;
use crate::sink::{ParquetSink, Sink};
use crate::stage::Engine;

pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Process CPU time (user + system) in seconds, from /proc (Linux).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Times a stage: wall clock and CPU.
pub(crate) struct Timed {
    pub(crate) wall: Instant,
    cpu: f64,
}

impl Timed {
    pub(crate) fn start() -> Self {
        Timed {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    pub(crate) fn rate(&self, n: usize) -> String {
        let secs = self.wall.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - self.cpu;
        format!(
            "{:>10.0} events/s  ({n} events in {secs:.2} s wall, {cpu:.2} s CPU = {:.2} us CPU/event)",
            n as f64 / secs,
            cpu * 1e6 / n as f64
        )
    }
}

pub async fn run(gpus: usize, hours: f64) -> Result<()> {
    let mut cfg = PipelineConfig::parse(DEMO_PIPELINE, "embedded pipelines/demo.toml")?;
    cfg.health.sample_interval = std::time::Duration::from_secs(10);
    let opts = GenerateOptions {
        gpus,
        days: hours / 24.0,
        start: chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z")?
            .with_timezone(&chrono::Utc),
        interval_s: 10,
        ..Default::default()
    };
    let t = Timed::start();
    let mut msgs: Vec<Message> = Vec::new();
    generate(&opts, &mut |m| {
        msgs.push(m);
        Ok(())
    })?;
    let bytes: usize = msgs.iter().map(|m| m.value.len()).sum();
    println!(
        "generated {} messages ({:.0} MB of JSON, {} GPUs, {:.1} h) in {:.2} s; RSS after generation {:.0} MiB",
        msgs.len(),
        bytes as f64 / 1e6,
        gpus,
        hours,
        t.wall.elapsed().as_secs_f64(),
        peak_rss_mib().unwrap_or(0.0)
    );
    let batch = cfg.engine.batch_size;
    let threads = cfg.engine.decode_threads();
    let limits = cfg.validation.decode_limits();

    // 0. The floor: serde_json skimming every message without building anything.
    let t = Timed::start();
    let mut ok = 0usize;
    for m in &msgs {
        ok += serde_json::from_slice::<serde::de::IgnoredAny>(&m.value).is_ok() as usize;
    }
    println!(
        "json parse floor (1 thread): {}  ({ok} parse)",
        t.rate(msgs.len())
    );

    // 1. Decode only.
    let t = Timed::start();
    let mut decoded = Vec::new();
    for chunk in msgs.chunks(batch) {
        decoded.push(decode_batch(chunk, &limits, threads)?);
    }
    println!("decode ({threads} threads):      {}", t.rate(msgs.len()));

    // 2. Windows + scores over pre-decoded batches.
    let mut engine = Engine::new(crate::stage::standard(&cfg));
    let events = Events::new();
    let t = Timed::start();
    let mut rows = 0usize;
    let mut scored = 0usize;
    let mut state_bytes = 0usize;
    for (chunk, d) in msgs.chunks(batch).zip(&decoded) {
        let parts: Vec<i32> = d.row_message.iter().map(|&i| chunk[i].partition).collect();
        let out = engine.step(&d.raw, &parts, &events, Instant::now()).await?;
        scored += out.scored.len();
        rows += d.raw.num_rows();
        state_bytes = state_bytes.max(engine.state_size().approx_bytes);
    }
    scored += engine.finish(&events, Instant::now())?.scored.len();
    println!(
        "windows + scores:          {}  ({} GPU-days scored, peak state {:.0} MiB)",
        t.rate(rows),
        scored,
        state_bytes as f64 / 1048576.0
    );
    drop(decoded);

    // 3. Decode + windows + scores (no sink): the DESIGN 9 bar.
    let mut pipeline = Pipeline::new(cfg.clone());
    let t = Timed::start();
    for chunk in msgs.chunks(batch) {
        let set = pipeline.step(chunk).await?;
        drop(set);
    }
    let _ = pipeline.finish()?;
    println!("decode + windows + scores: {}", t.rate(msgs.len()));

    // 4. End to end into Parquet.
    let dir = std::env::temp_dir().join(format!("gpu-health-bench-{}", std::process::id()));
    let mut sink = Sink::Parquet(ParquetSink::create(&dir, 1_000_000)?);
    let mut pipeline = Pipeline::new(cfg.clone());
    let t = Timed::start();
    for chunk in msgs.chunks(batch) {
        let set = pipeline.step(chunk).await?;
        sink.write(set, &events).await?;
    }
    sink.write(pipeline.finish()?, &events).await?;
    sink.close(&events).await?;
    println!("end to end into Parquet:   {}", t.rate(msgs.len()));
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "peak RSS {:.0} MiB (includes the {:.0} MB of generated messages held in memory)",
        peak_rss_mib().unwrap_or(0.0),
        bytes as f64 / 1e6
    );
    Ok(())
}
