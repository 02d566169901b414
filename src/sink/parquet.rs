//! The Parquet directory sink (the embedded default and the cold-archive format):
//! one dataset per table, `<dir>/<table>/part-NNNNN.parquet`, plus `dead_letters/`.
//! Rollups are written once each, when final, so a dataset has one row per key.
//! The directory's datasets are replaced at start: a replay writes a complete copy.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

use super::FlushSet;
use crate::event::dead_letter::dead_letter_schema;
use crate::event::schema::raw_schema;
use crate::health::predict::predictions_schema;
use crate::health::scores::scores_schema;
use crate::window::rollup::rollup_schema;

pub const TABLES: [&str; 6] = [
    "gpu_metrics",
    "gpu_metrics_1min",
    "gpu_metrics_15min",
    "gpu_health_scores",
    "gpu_failure_predictions",
    "dead_letters",
];

/// The schema of every table, in `TABLES` order.
pub fn table_schemas() -> [SchemaRef; 6] {
    [
        raw_schema(),
        rollup_schema(),
        rollup_schema(),
        scores_schema(),
        predictions_schema(),
        dead_letter_schema(),
    ]
}

/// One dataset: rotates files every `rows_per_file` rows.
struct Dataset {
    dir: PathBuf,
    schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
    file_rows: usize,
    files: usize,
    rows: u64,
    rows_per_file: usize,
}

impl Dataset {
    fn create(dir: PathBuf, schema: SchemaRef, rows_per_file: usize) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("clearing dataset {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Dataset {
            dir,
            schema,
            writer: None,
            file_rows: 0,
            files: 0,
            rows: 0,
            rows_per_file,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.writer.is_none() {
            let path = self.dir.join(format!("part-{:05}.parquet", self.files));
            let file =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(256 * 1024))
                .build();
            self.writer = Some(ArrowWriter::try_new(
                file,
                self.schema.clone(),
                Some(props),
            )?);
            self.files += 1;
            self.file_rows = 0;
        }
        if let Some(w) = self.writer.as_mut() {
            w.write(batch)
                .with_context(|| format!("writing to {}", self.dir.display()))?;
        }
        self.file_rows += batch.num_rows();
        self.rows += batch.num_rows() as u64;
        if self.file_rows >= self.rows_per_file {
            self.close_file()?;
        }
        Ok(())
    }

    fn close_file(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            w.close()
                .with_context(|| format!("finishing a file in {}", self.dir.display()))?;
        }
        Ok(())
    }
}

pub struct ParquetSink {
    root: PathBuf,
    sets: Vec<Dataset>,
}

impl ParquetSink {
    pub fn create(root: &Path, rows_per_file: usize) -> Result<Self> {
        let sets = TABLES
            .iter()
            .zip(table_schemas())
            .map(|(t, s)| Dataset::create(root.join(t), s, rows_per_file))
            .collect::<Result<Vec<_>>>()?;
        Ok(ParquetSink {
            root: root.to_owned(),
            sets,
        })
    }

    pub fn describe(&self) -> String {
        format!("parquet {}", self.root.display())
    }

    pub fn write(&mut self, set: FlushSet) -> Result<()> {
        let groups = [
            set.raw,
            set.finals_1m,
            set.finals_15m,
            set.scores,
            set.predictions,
            set.dead_letters,
        ];
        for (ds, batches) in self.sets.iter_mut().zip(groups) {
            for b in &batches {
                ds.write(b)?;
            }
        }
        Ok(())
    }

    pub fn close(mut self) -> Result<()> {
        for ds in &mut self.sets {
            ds.close_file()?;
        }
        Ok(())
    }

    /// Rows written per table, in `TABLES` order.
    pub fn rows(&self) -> Vec<u64> {
        self.sets.iter().map(|d| d.rows).collect()
    }
}
