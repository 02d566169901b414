//! Hand-made inputs for the window and stage unit tests: flat-row samples decoded by
//! the real decoder, and the 1-minute rows of an emission in a comparable form.

use datafusion::arrow::array::{Array, Float64Array, Int64Array, TimestampMicrosecondArray};
use datafusion::arrow::record_batch::RecordBatch;

use crate::config::{DEMO_PIPELINE, PipelineConfig};
use crate::dump::Message;
use crate::event::decoder::decode_batch;

/// 2026-01-01T00:00:00Z, µs.
pub(crate) const T0: i64 = 1_767_225_600_000_000;
pub(crate) const S: i64 = 1_000_000;

/// A flat-row sample: seconds after T0, GPU, partition, temperature, SBE counter.
pub(crate) struct Sample(pub i64, pub &'static str, pub i32, pub f64, pub i64);

pub(crate) fn batch(samples: &[Sample]) -> (RecordBatch, Vec<i32>) {
    let msgs: Vec<Message> = samples
        .iter()
        .enumerate()
        .map(|(i, Sample(secs, gpu, partition, temp, sbe))| {
            let value = format!(
                r#"{{"time":{},"gpu_uuid":"{gpu}","hostname":"h1","gpu_temp":{temp},"ecc_sbe_aggregate":{sbe}}}"#,
                (T0 + secs * S) / 1000
            );
            Message {
                key: None,
                value: value.into_bytes(),
                topic: "t".into(),
                partition: *partition,
                offset: i as i64,
            }
        })
        .collect();
    let limits = PipelineConfig::parse(DEMO_PIPELINE, "demo.toml")
        .unwrap()
        .validation
        .decode_limits();
    let decoded = decode_batch(&msgs, &limits, 1).unwrap();
    assert!(decoded.dead.is_empty(), "test samples decode");
    let parts = decoded
        .row_message
        .iter()
        .map(|&i| msgs[i].partition)
        .collect();
    (decoded.raw, parts)
}

/// (minute start in s after T0, GPU, avg temp, samples, SBE delta) of 1-min rows.
pub(crate) fn rows(batches: &[RecordBatch]) -> Vec<(i64, String, f64, i64, Option<i64>)> {
    let mut out = Vec::new();
    for b in batches {
        let col = |n: &str| b.column_by_name(n).unwrap();
        let time = col("time")
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let gpu = col("gpu_uuid")
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        let avg = col("gpu_temp_avg")
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        let n = col("sample_count")
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let sbe = col("ecc_sbe_delta")
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            out.push((
                (time.value(i) - T0) / S,
                gpu.value(i).to_owned(),
                avg.value(i),
                n.value(i),
                sbe.is_valid(i).then(|| sbe.value(i)),
            ));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out
}
