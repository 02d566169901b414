//! Accumulates decoded samples into a raw `gpu_metrics` record batch.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use super::decode::RawSample;
use super::schema::{Kind, METRICS, raw_schema};

enum MetricBuilder {
    Float(Float64Builder),
    Int(Int64Builder),
    Bool(BooleanBuilder),
}

/// Column builders for raw rows, in `raw_schema()` order.
pub struct RawBatchBuilder {
    time: TimestampMicrosecondBuilder,
    gpu_uuid: StringBuilder,
    hostname: StringBuilder,
    pci_bus_id: StringBuilder,
    device_index: Int32Builder,
    gpu_model: StringBuilder,
    rack_id: StringBuilder,
    cluster_id: StringBuilder,
    datacenter: StringBuilder,
    metrics: Vec<MetricBuilder>,
    validation_passed: BooleanBuilder,
    validation_errors: StringBuilder,
    rows: usize,
    scratch: String,
}

impl Default for RawBatchBuilder {
    fn default() -> Self {
        Self::with_capacity(1024)
    }
}

impl RawBatchBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        let text = || StringBuilder::with_capacity(rows, rows * 16);
        RawBatchBuilder {
            time: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            gpu_uuid: StringBuilder::with_capacity(rows, rows * 40),
            hostname: text(),
            pci_bus_id: text(),
            device_index: Int32Builder::with_capacity(rows),
            gpu_model: StringBuilder::with_capacity(rows, rows * 24),
            rack_id: text(),
            cluster_id: text(),
            datacenter: text(),
            metrics: METRICS
                .iter()
                .map(|m| match m.kind {
                    Kind::Float => MetricBuilder::Float(Float64Builder::with_capacity(rows)),
                    Kind::Int => MetricBuilder::Int(Int64Builder::with_capacity(rows)),
                    Kind::Bool => MetricBuilder::Bool(BooleanBuilder::with_capacity(rows)),
                })
                .collect(),
            validation_passed: BooleanBuilder::with_capacity(rows),
            validation_errors: StringBuilder::new(),
            rows: 0,
            scratch: String::new(),
        }
    }

    pub fn append(&mut self, s: &RawSample) {
        self.time.append_value(s.time_us);
        self.gpu_uuid.append_value(&s.gpu_uuid);
        self.hostname.append_value(&s.hostname);
        self.pci_bus_id.append_option(s.pci_bus_id.as_deref());
        self.device_index.append_option(s.device_index);
        self.gpu_model.append_option(s.gpu_model.as_deref());
        self.rack_id.append_option(s.rack_id.as_deref());
        self.cluster_id.append_option(s.cluster_id.as_deref());
        self.datacenter.append_option(s.datacenter.as_deref());
        for (b, v) in self.metrics.iter_mut().zip(s.values.iter()) {
            match b {
                MetricBuilder::Float(b) => b.append_option(*v),
                MetricBuilder::Int(b) => b.append_option(v.map(|x| x as i64)),
                MetricBuilder::Bool(b) => b.append_option(v.map(|x| x != 0.0)),
            }
        }
        self.validation_passed.append_value(s.errors.is_empty());
        if s.errors.is_empty() {
            self.validation_errors.append_null();
        } else {
            self.scratch.clear();
            for (n, (field, reason)) in s.errors.iter().enumerate() {
                if n > 0 {
                    self.scratch.push(';');
                }
                let _ = write!(self.scratch, "{}:{}", field.name(), reason.as_str());
            }
            self.validation_errors.append_value(&self.scratch);
        }
        self.rows += 1;
    }

    /// Finishes the batch and leaves the builder empty for the next one.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.gpu_uuid.finish()),
            Arc::new(self.hostname.finish()),
            Arc::new(self.pci_bus_id.finish()),
            Arc::new(self.device_index.finish()),
            Arc::new(self.gpu_model.finish()),
            Arc::new(self.rack_id.finish()),
            Arc::new(self.cluster_id.finish()),
            Arc::new(self.datacenter.finish()),
        ];
        for b in &mut self.metrics {
            columns.push(match b {
                MetricBuilder::Float(b) => Arc::new(b.finish()),
                MetricBuilder::Int(b) => Arc::new(b.finish()),
                MetricBuilder::Bool(b) => Arc::new(b.finish()),
            });
        }
        columns.push(Arc::new(self.validation_passed.finish()));
        columns.push(Arc::new(self.validation_errors.finish()));
        self.rows = 0;
        RecordBatch::try_new(raw_schema(), columns)
    }
}
