//! Tests of the generator: determinism, the manifest's books (checked against an
//! independent classification of the emitted messages), scenarios and clean output.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::*;

fn small(seed: u64, days: f64) -> GenerateOptions {
    GenerateOptions {
        gpus: 16,
        days,
        seed,
        ..GenerateOptions::default()
    }
}

fn collect(opts: &GenerateOptions) -> (Vec<Message>, Manifest) {
    let mut out = Vec::new();
    let manifest = generate(opts, &mut |m| {
        out.push(m);
        Ok(())
    })
    .expect("generate");
    (out, manifest)
}

fn uuid_of(obj: &serde_json::Map<String, Value>) -> Option<&str> {
    obj.get("gpu_uuid")
        .or_else(|| obj.get("gpu").and_then(|g| g.get("gpu_uuid")))
        .and_then(Value::as_str)
}

fn hostname_of(obj: &serde_json::Map<String, Value>) -> Option<&str> {
    obj.get("hostname")
        .or_else(|| obj.get("host").and_then(|h| h.get("hostname")))
        .and_then(Value::as_str)
}

/// Event time in epoch ms, when the message has a usable one.
fn time_of(obj: &serde_json::Map<String, Value>) -> Option<i64> {
    let t = obj.get("timestamp").or_else(|| obj.get("time"))?;
    let ms = match t {
        Value::String(s) => DateTime::parse_from_rfc3339(s).ok()?.timestamp_millis(),
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    // 2000-01-01 .. 2090-01-01
    (946_684_800_000..3_786_912_000_000)
        .contains(&ms)
        .then_some(ms)
}

fn valid_uuid(u: &str) -> bool {
    u.len() == 40 && u.starts_with("GPU-")
}

/// A usable sample's identity, or None for a hard message.
fn classify(m: &Message) -> Option<(String, i64)> {
    if m.value.len() > 1_048_576 {
        return None;
    }
    let v: Value = serde_json::from_slice(&m.value).ok()?;
    let obj = v.as_object()?;
    let uuid = uuid_of(obj).filter(|u| valid_uuid(u))?;
    hostname_of(obj)?;
    let t = time_of(obj)?;
    Some((uuid.to_owned(), t))
}

#[test]
fn same_seed_gives_identical_output() {
    let (a, ma) = collect(&small(7, 0.05));
    let (b, mb) = collect(&small(7, 0.05));
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_string(&ma).expect("manifest"),
        serde_json::to_string(&mb).expect("manifest")
    );
}

#[test]
fn different_seeds_differ() {
    let (a, _) = collect(&small(1, 0.02));
    let (b, _) = collect(&small(2, 0.02));
    assert_ne!(a, b);
}

#[test]
fn books_balance_against_independent_classification() {
    let (msgs, m) = collect(&small(42, 0.1));
    let mut seen = HashSet::new();
    let (mut samples, mut hard, mut dups) = (0u64, 0u64, 0u64);
    for msg in &msgs {
        assert_eq!(msg.topic, TOPIC);
        match classify(msg) {
            None => hard += 1,
            Some(id) => {
                if seen.insert(id) {
                    samples += 1;
                } else {
                    dups += 1;
                }
            }
        }
    }
    let hard_kinds: u64 = Kind::ALL
        .iter()
        .filter(|k| k.is_hard())
        .map(|k| m.injected[k.name()])
        .sum();
    assert_eq!(msgs.len() as u64, m.messages);
    assert_eq!(samples, m.samples);
    assert_eq!(hard, hard_kinds);
    assert_eq!(hard, m.hard.len() as u64);
    assert_eq!(dups, m.injected["duplicate"]);
    assert_eq!(m.messages, m.samples + hard + dups);
    for k in Kind::ALL {
        assert!(m.injected[k.name()] > 0, "no {} injected", k.name());
    }
    assert_eq!(m.too_late.len() as u64, m.injected["too_late"]);
    let soft: u64 = ["wrong_type", "not_finite", "out_of_range"]
        .iter()
        .map(|k| m.injected[*k])
        .sum();
    assert_eq!(m.soft.len() as u64, soft);

    // Offsets count from 0 per partition, in emission order; keys pick partitions.
    let mut next: HashMap<i32, i64> = HashMap::new();
    for msg in &msgs {
        let n = next.entry(msg.partition).or_insert(0);
        assert_eq!(msg.offset, *n);
        *n += 1;
        if let Some(k) = &msg.key {
            assert_eq!(msg.partition, kafka_partition(k, 4));
        }
    }
}

#[test]
fn scenario_gpus_exist_and_are_distinct() {
    let (_, m) = collect(&small(3, 0.02));
    assert_eq!(m.scenarios.len(), 6);
    let fleet: HashSet<&str> = m.gpus.iter().map(|g| g.gpu_uuid.as_str()).collect();
    let mut used = HashSet::new();
    for s in &m.scenarios {
        assert!(
            fleet.contains(s.gpu_uuid.as_str()),
            "{} not in fleet",
            s.gpu_uuid
        );
        assert!(used.insert(s.gpu_uuid.clone()), "two scenarios on one GPU");
    }
    assert!(m.gpus.iter().any(|g| g.shape == "flat"));
    assert!(m.gpus.iter().any(|g| g.shape == "nested"));
}

#[test]
fn fell_off_bus_gpu_goes_silent() {
    let (msgs, m) = collect(&small(5, 0.3));
    let s = m
        .scenarios
        .iter()
        .find(|s| s.scenario == "fell_off_bus")
        .expect("fell_off_bus scenario");
    let at = DateTime::parse_from_rfc3339(&s.starts_at)
        .expect("starts_at")
        .timestamp_millis();
    let mut last = None;
    for msg in &msgs {
        if let Some((uuid, t)) = classify(msg)
            && uuid == s.gpu_uuid
        {
            assert!(t <= at, "sample after the GPU fell off the bus");
            if t == at {
                last = Some(msg.value.clone());
            }
        }
    }
    let last = last.expect("last sample");
    let text = String::from_utf8(last).expect("utf8");
    assert!(text.contains("\"xid\":79"), "{text}");
}

#[test]
fn clean_run_is_all_valid_objects() {
    let opts = GenerateOptions {
        faults: false,
        bad_data: false,
        ..small(11, 0.02)
    };
    let (msgs, m) = collect(&opts);
    let ticks = (0.02f64 * 86_400.0 / 10.0).floor() as u64;
    assert_eq!(m.messages, 16 * ticks);
    assert_eq!(m.samples, m.messages);
    assert!(m.scenarios.is_empty());
    let mut seen = HashSet::new();
    for msg in &msgs {
        let v: Value = serde_json::from_slice(&msg.value).expect("valid JSON");
        assert!(v.is_object());
        let id = classify(msg).expect("usable sample");
        assert!(seen.insert(id), "duplicate sample");
    }
}

#[test]
fn writes_dump_and_manifest() {
    let dir = std::env::temp_dir().join(format!("gpu-health-gen-{}", std::process::id()));
    let path = dir.join("t.jsonl");
    let m = generate_to_file(&small(9, 0.01), &path).expect("generate_to_file");
    let mut source =
        crate::source::FileSource::open(&path.display().to_string(), TOPIC).expect("open the dump");
    let back = source
        .next_batch(usize::MAX)
        .expect("read back")
        .unwrap_or_default();
    assert_eq!(back.len() as u64, m.messages);
    let text = std::fs::read_to_string(manifest_path(&path)).expect("manifest");
    let parsed: Manifest = serde_json::from_str(&text).expect("manifest parses");
    assert_eq!(parsed.messages, m.messages);
    let _ = std::fs::remove_dir_all(&dir);
}

fn num(obj: &serde_json::Map<String, Value>, flat: &str, path: &[&str]) -> Option<f64> {
    if let Some(v) = obj.get(flat) {
        return v.as_f64();
    }
    let mut v = obj.get("metrics")?;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_f64()
}

fn p95(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get((v.len() as f64 * 0.95) as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Profiles a full default run (3 days, 16 GPUs): per GPU-day health statistics and the
/// dump size. Run by hand with `--ignored --nocapture`.
#[test]
#[ignore]
fn profile_default_fixture() {
    let opts = GenerateOptions::default();
    let path = std::env::temp_dir().join("gpu-health-profile.jsonl");
    let started = std::time::Instant::now();
    let m = generate_to_file(&opts, &path).expect("generate");
    let size = std::fs::metadata(&path).map(|md| md.len()).unwrap_or(0);
    println!(
        "messages {} samples {} in {:?}, {} bytes",
        m.messages,
        m.samples,
        started.elapsed(),
        size
    );
    println!("{}", serde_json::to_string(&m.injected).unwrap_or_default());
    let (msgs, _) = collect(&opts);
    let start_ms = opts.start.timestamp_millis();
    #[derive(Default)]
    struct Day {
        n: usize,
        temp: Vec<f64>,
        mem: Vec<f64>,
        power: Vec<f64>,
        thermal: usize,
        brake: usize,
        cap: usize,
        any: usize,
        loaded_clock: Vec<f64>,
        sbe: Vec<f64>,
    }
    let mut days: BTreeMap<(String, i64), Day> = BTreeMap::new();
    for msg in &msgs {
        let Some((uuid, t)) = classify(msg) else {
            continue;
        };
        let v: Value = serde_json::from_slice(&msg.value).expect("json");
        let o = v.as_object().expect("object");
        let d = days.entry((uuid, (t - start_ms) / 86_400_000)).or_default();
        d.n += 1;
        let get = |flat: &str, path: &[&str]| num(o, flat, path);
        if let Some(x) = get("gpu_temp", &["health", "gpu_temp_c"]) {
            d.temp.push(x);
        }
        if let Some(x) = get("memory_temp", &["health", "memory_temp_c"]) {
            d.mem.push(x);
        }
        if let Some(x) = get("power_usage", &["health", "power_usage_w"]) {
            d.power.push(x);
        }
        let th = get("throttle_reasons", &["health", "throttle_reasons"]).unwrap_or(0.0) as u32;
        d.thermal += usize::from(th & 0x60 != 0);
        d.brake += usize::from(th & 0x88 != 0);
        d.cap += usize::from(th & 0x4 != 0);
        d.any += usize::from(th & !0x1 != 0);
        let sm = get("sm_active", &["performance", "sm_active"]).unwrap_or(0.0);
        if sm >= 0.5
            && let Some(c) = get("sm_clock_mhz", &["clocks", "sm_clock_mhz"])
        {
            d.loaded_clock.push(c);
        }
        if let Some(x) = get("ecc_sbe_aggregate", &["memory", "ecc_sbe_aggregate"]) {
            d.sbe.push(x);
        }
    }
    let scen: HashMap<&str, &str> = m
        .scenarios
        .iter()
        .map(|s| (s.gpu_uuid.as_str(), s.scenario.as_str()))
        .collect();
    let model: HashMap<&str, &str> = m
        .gpus
        .iter()
        .map(|g| (g.gpu_uuid.as_str(), g.model.as_str()))
        .collect();
    for ((uuid, day), d) in &mut days {
        let mut lc = std::mem::take(&mut d.loaded_clock);
        lc.sort_by(f64::total_cmp);
        let med = lc.get(lc.len() / 2).copied().unwrap_or(f64::NAN);
        let sbe = d.sbe.last().copied().unwrap_or(0.0) - d.sbe.first().copied().unwrap_or(0.0);
        println!(
            "{} d{} {:22} {:16} n={} t95={} m95={} p95={:.0} therm={:.3} brake={:.3} cap={:.3} thr={:.3} clk={} sbe={}",
            &uuid[..12],
            day,
            model[uuid.as_str()],
            scen.get(uuid.as_str()).unwrap_or(&"-"),
            d.n,
            p95(&mut d.temp),
            p95(&mut d.mem),
            p95(&mut d.power),
            d.thermal as f64 / d.n as f64,
            d.brake as f64 / d.n as f64,
            d.cap as f64 / d.n as f64,
            d.any as f64 / d.n as f64,
            med,
            sbe
        );
    }
}

/// Throughput of the generator for a 1,000-GPU fleet. Run by hand with `--ignored`.
#[test]
#[ignore]
fn profile_throughput() {
    let opts = GenerateOptions {
        gpus: 1000,
        days: 0.1,
        ..GenerateOptions::default()
    };
    let mut bytes = 0usize;
    let started = std::time::Instant::now();
    let m = generate(&opts, &mut |msg| {
        bytes += msg.value.len();
        Ok(())
    })
    .expect("generate");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} messages, {} bytes in {:.2} s: {:.0} messages/s",
        m.messages,
        bytes,
        secs,
        m.messages as f64 / secs
    );
}
