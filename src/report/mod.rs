//! Reports over stored results (DESIGN 7): the query patterns in `queries`, run against
//! TimescaleDB or the embedded Parquet store, printed as a table, CSV or JSON; and the
//! self-contained HTML page with plots in `html`.

pub mod html;
pub mod queries;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use tokio_postgres::types::Type;

pub use queries::Query;

/// One value of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Time(DateTime<Utc>),
}

/// A report's result: column names and rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// The index of a column, by name.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c == name)
            .with_context(|| format!("the report has no column {name}"))
    }
}

/// Where the results are read from.
pub enum Store {
    Timescale(tokio_postgres::Client),
    /// A Parquet directory as the Parquet sink writes it (one dataset per table).
    Parquet(SessionContext),
}

impl Store {
    /// TimescaleDB at this URL (a reader role is enough).
    pub async fn timescale(url: &str) -> Result<Self> {
        Ok(Store::Timescale(crate::db::connect(url).await?))
    }

    /// The Parquet store under `root`: each table a dataset directory; a table with
    /// no rows yet is empty, not an error.
    pub async fn parquet(root: &Path) -> Result<Self> {
        if !root.join(crate::sink::parquet::TABLES[0]).is_dir() {
            bail!(
                "{} holds no Parquet store (no {}/ in it): run `gpu-health run` first, \
                 or pass --parquet <dir> or --database",
                root.display(),
                crate::sink::parquet::TABLES[0]
            );
        }
        let ctx = SessionContext::new();
        for (table, schema) in crate::sink::parquet::TABLES
            .iter()
            .zip(crate::sink::parquet::table_schemas())
        {
            let dir = root.join(table);
            let url = format!("{}/", dir.canonicalize().unwrap_or(dir).display());
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            ctx.register_listing_table(*table, &url, options, Some(schema), None)
                .await
                .with_context(|| format!("opening the {table} dataset at {url}"))?;
        }
        Ok(Store::Parquet(ctx))
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Store::Timescale(_) => "TimescaleDB",
            Store::Parquet(_) => "Parquet store",
        }
    }

    /// Runs a report query.
    pub async fn run(&self, query: &Query) -> Result<Table> {
        self.sql(&query.sql(), query.gpu())
            .await
            .with_context(|| format!("report {} on the {}", query.name(), self.describe()))
    }

    /// Runs SQL both stores understand; `gpu` is bound to `$1`.
    pub async fn sql(&self, sql: &str, gpu: Option<&str>) -> Result<Table> {
        match self {
            Store::Timescale(client) => {
                // Prepared first: the columns are known even when no row comes back.
                let stmt = client.prepare(sql).await.context("preparing the query")?;
                let rows = match gpu {
                    Some(g) => client.query(&stmt, &[&g]).await,
                    None => client.query(&stmt, &[]).await,
                }
                .context("running the query")?;
                let columns = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
                let rows = rows.iter().map(pg_row).collect::<Result<Vec<_>>>()?;
                Ok(Table { columns, rows })
            }
            Store::Parquet(ctx) => {
                let mut df = ctx.sql(sql).await.context("planning the query")?;
                if let Some(g) = gpu {
                    df = df.with_param_values(vec![ScalarValue::Utf8(Some(g.to_owned()))])?;
                }
                let schema = df.schema().clone();
                let batches = df.collect().await.context("running the query")?;
                let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
                let mut rows = Vec::new();
                for b in &batches {
                    arrow_rows(b, &mut rows)?;
                }
                Ok(Table { columns, rows })
            }
        }
    }
}

fn pg_row(row: &tokio_postgres::Row) -> Result<Vec<Cell>> {
    (0..row.len())
        .map(|i| {
            let col = &row.columns()[i];
            let ty = col.type_();
            let cell = match *ty {
                Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(Cell::Bool),
                Type::INT2 => row
                    .try_get::<_, Option<i16>>(i)?
                    .map(|v| Cell::Int(v.into())),
                Type::INT4 => row
                    .try_get::<_, Option<i32>>(i)?
                    .map(|v| Cell::Int(v.into())),
                Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
                Type::FLOAT4 => row
                    .try_get::<_, Option<f32>>(i)?
                    .map(|v| Cell::Float(v.into())),
                Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Cell::Float),
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                    row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
                }
                Type::TIMESTAMPTZ => row.try_get::<_, Option<DateTime<Utc>>>(i)?.map(Cell::Time),
                Type::JSON | Type::JSONB => row
                    .try_get::<_, Option<serde_json::Value>>(i)?
                    .map(|v| Cell::Text(v.to_string())),
                _ => bail!(
                    "column {} has type {ty}, which reports do not read (cast it in the SQL)",
                    col.name()
                ),
            };
            Ok(cell.unwrap_or(Cell::Null))
        })
        .collect()
}

fn arrow_rows(batch: &RecordBatch, rows: &mut Vec<Vec<Cell>>) -> Result<()> {
    let start = rows.len();
    rows.extend((0..batch.num_rows()).map(|_| Vec::with_capacity(batch.num_columns())));
    for col in batch.columns() {
        // Every timestamp unit and zone as UTC microseconds, once per column.
        let col = match col.data_type() {
            DataType::Timestamp(_, _) => datafusion::arrow::compute::cast(
                col,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?,
            _ => col.clone(),
        };
        let formatter = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
        for i in 0..batch.num_rows() {
            let cell = if col.is_null(i) {
                Cell::Null
            } else {
                match col.data_type() {
                    DataType::Boolean => Cell::Bool(col.as_boolean().value(i)),
                    DataType::Int32 => Cell::Int(col.as_primitive::<Int32Type>().value(i).into()),
                    DataType::Int64 => Cell::Int(col.as_primitive::<Int64Type>().value(i)),
                    DataType::UInt64 => Cell::Int(
                        col.as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
                            .value(i) as i64,
                    ),
                    DataType::Float32 => {
                        Cell::Float(col.as_primitive::<Float32Type>().value(i).into())
                    }
                    DataType::Float64 => Cell::Float(col.as_primitive::<Float64Type>().value(i)),
                    DataType::Timestamp(_, _) => {
                        let us = col.as_primitive::<TimestampMicrosecondType>().value(i);
                        DateTime::from_timestamp_micros(us).map_or(Cell::Null, Cell::Time)
                    }
                    _ => Cell::Text(formatter.value(i).to_string()),
                }
            };
            rows[start + i].push(cell);
        }
    }
    Ok(())
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

fn text(cell: &Cell, round: bool) -> String {
    match cell {
        Cell::Null => String::new(),
        Cell::Bool(b) => b.to_string(),
        Cell::Int(v) => v.to_string(),
        // Tables show three decimals at most; CSV and JSON keep every digit.
        Cell::Float(v) if round => {
            let s = format!("{v:.3}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            if s == "-0" { "0".into() } else { s.into() }
        }
        Cell::Float(v) => v.to_string(),
        Cell::Text(s) => s.clone(),
        Cell::Time(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    }
}

fn json(cell: &Cell) -> serde_json::Value {
    match cell {
        Cell::Null => serde_json::Value::Null,
        Cell::Bool(b) => (*b).into(),
        Cell::Int(v) => (*v).into(),
        Cell::Float(v) => {
            serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into)
        }
        Cell::Text(_) | Cell::Time(_) => text(cell, false).into(),
    }
}

/// Prints a report in the format asked for.
pub fn render(table: &Table, format: Format) -> Result<String> {
    match format {
        Format::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
                .set_header(&table.columns);
            for row in &table.rows {
                t.add_row(row.iter().map(|c| text(c, true)));
            }
            for (i, _) in table.columns.iter().enumerate() {
                let numeric = table
                    .rows
                    .iter()
                    .all(|r| matches!(r[i], Cell::Int(_) | Cell::Float(_) | Cell::Null));
                if numeric && let Some(col) = t.column_mut(i) {
                    col.set_cell_alignment(comfy_table::CellAlignment::Right);
                }
            }
            let footer = format!("({} rows)", table.rows.len());
            Ok(format!("{t}\n{footer}\n"))
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(&table.columns)?;
            for row in &table.rows {
                w.write_record(row.iter().map(|c| text(c, false)))?;
            }
            String::from_utf8(w.into_inner()?).context("CSV is UTF-8")
        }
        Format::Json => {
            // Objects keep the report's column order.
            let mut out = String::from("[");
            for (n, row) in table.rows.iter().enumerate() {
                out.push_str(if n == 0 { "\n  {" } else { ",\n  {" });
                for (i, (name, cell)) in table.columns.iter().zip(row).enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&serde_json::to_string(name)?);
                    out.push_str(": ");
                    out.push_str(&serde_json::to_string(&json(cell))?);
                }
                out.push('}');
            }
            out.push_str(if table.rows.is_empty() {
                "]\n"
            } else {
                "\n]\n"
            });
            Ok(out)
        }
    }
}
