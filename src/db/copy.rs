//! Arrow record batches to PostgreSQL, set-based: the binary COPY format encoded
//! column-aware from Arrow arrays (raw rows), and the SQL for upserting a batch from a
//! staging table (rollups, scores, dead letters). Both are driven by the batch's Arrow
//! schema, so a column added to a table's schema needs no change here.

use anyhow::{Result, bail};
use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int32Type, Int64Type, SchemaRef, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// The PostgreSQL type of an Arrow type, as used in our tables.
pub fn pg_type(dt: &DataType) -> Result<&'static str> {
    Ok(match dt {
        DataType::Float64 => "double precision",
        DataType::Int64 => "bigint",
        DataType::Int32 => "integer",
        DataType::Boolean => "boolean",
        DataType::Utf8 => "text",
        DataType::Binary => "bytea",
        DataType::Timestamp(TimeUnit::Microsecond, _) => "timestamptz",
        other => bail!("no PostgreSQL mapping for Arrow type {other}"),
    })
}

/// Writes the binary COPY header.
pub fn copy_header(buf: &mut BytesMut) {
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0);
    buf.put_i32(0);
}

/// Writes the binary COPY trailer.
pub fn copy_trailer(buf: &mut BytesMut) {
    buf.put_i16(-1);
}

enum Col<'a> {
    F64(&'a datafusion::arrow::array::Float64Array),
    I64(&'a datafusion::arrow::array::Int64Array),
    I32(&'a datafusion::arrow::array::Int32Array),
    Bool(&'a datafusion::arrow::array::BooleanArray),
    Text(&'a datafusion::arrow::array::StringArray),
    Bin(&'a datafusion::arrow::array::BinaryArray),
    Ts(&'a datafusion::arrow::array::TimestampMicrosecondArray),
}

fn view(a: &ArrayRef) -> Result<Col<'_>> {
    Ok(match a.data_type() {
        DataType::Float64 => Col::F64(a.as_primitive::<Float64Type>()),
        DataType::Int64 => Col::I64(a.as_primitive::<Int64Type>()),
        DataType::Int32 => Col::I32(a.as_primitive::<Int32Type>()),
        DataType::Boolean => Col::Bool(a.as_boolean()),
        DataType::Utf8 => Col::Text(a.as_string::<i32>()),
        DataType::Binary => Col::Bin(a.as_binary::<i32>()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Col::Ts(a.as_primitive::<TimestampMicrosecondType>())
        }
        other => bail!("cannot COPY Arrow type {other}"),
    })
}

/// Appends a batch's rows in binary COPY row format (no header or trailer); the
/// caller sends the buffer on when it grows large.
pub fn encode_rows(batch: &RecordBatch, buf: &mut BytesMut) -> Result<()> {
    let cols: Vec<Col> = batch.columns().iter().map(view).collect::<Result<_>>()?;
    let n_fields = cols.len() as i16;
    for row in 0..batch.num_rows() {
        buf.put_i16(n_fields);
        for c in &cols {
            macro_rules! fixed {
                ($a:expr, $len:expr, $put:expr) => {
                    if $a.is_null(row) {
                        buf.put_i32(-1);
                    } else {
                        buf.put_i32($len);
                        $put;
                    }
                };
            }
            match c {
                Col::F64(a) => fixed!(a, 8, buf.put_f64(a.value(row))),
                Col::I64(a) => fixed!(a, 8, buf.put_i64(a.value(row))),
                Col::I32(a) => fixed!(a, 4, buf.put_i32(a.value(row))),
                Col::Bool(a) => fixed!(a, 1, buf.put_u8(a.value(row) as u8)),
                Col::Ts(a) => fixed!(a, 8, buf.put_i64(a.value(row) - PG_EPOCH_OFFSET_US)),
                Col::Text(a) => {
                    let v = a.value(row);
                    fixed!(a, v.len() as i32, buf.put_slice(v.as_bytes()))
                }
                Col::Bin(a) => {
                    let v = a.value(row);
                    fixed!(a, v.len() as i32, buf.put_slice(v))
                }
            }
        }
    }
    Ok(())
}

/// Field metadata naming the PostgreSQL type a text column is cast to on upsert.
const PG_CAST: &str = "pg_cast";

/// A text field stored in a `jsonb` column: staged as text, cast on upsert.
pub fn jsonb_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
        .with_metadata([(PG_CAST.to_owned(), "jsonb".to_owned())].into())
}

/// `"a", "b", ...` of a schema.
pub fn column_list(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE TEMP TABLE` for staging rows of `schema` (dropped at session end).
pub fn staging_ddl(name: &str, schema: &SchemaRef) -> Result<String> {
    let cols = schema
        .fields()
        .iter()
        .map(|f| Ok(format!("\"{}\" {}", f.name(), pg_type(f.data_type())?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(format!(
        "CREATE TEMP TABLE IF NOT EXISTS {name} ({}) ON COMMIT DELETE ROWS",
        cols.join(", ")
    ))
}

/// Moves staged rows into `table`: new keys are inserted, existing keys updated (or
/// left alone when `update` is false).
pub fn upsert_from_staging(
    table: &str,
    staging: &str,
    schema: &SchemaRef,
    key: &[&str],
    update: bool,
) -> String {
    let cols = column_list(schema);
    let action = if update {
        let sets = schema
            .fields()
            .iter()
            .filter(|f| !key.contains(&f.name().as_str()))
            .map(|f| format!("\"{0}\" = EXCLUDED.\"{0}\"", f.name()))
            .collect::<Vec<_>>()
            .join(", ");
        format!("DO UPDATE SET {sets}")
    } else {
        "DO NOTHING".to_owned()
    };
    let select = schema
        .fields()
        .iter()
        .map(|f| match f.metadata().get(PG_CAST) {
            Some(cast) => format!("\"{}\"::{cast}", f.name()),
            None => format!("\"{}\"", f.name()),
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({cols}) SELECT {select} FROM {staging} ON CONFLICT ({}) {action}",
        key.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn binary_rows_follow_the_copy_format() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("xy"), Some("")])),
                Arc::new(Float64Array::from(vec![Some(0.5), None])),
            ],
        )
        .unwrap();
        let mut buf = BytesMut::new();
        encode_rows(&batch, &mut buf).unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&1i64.to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice(b"xy");
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&0.5f64.to_be_bytes());
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&0i32.to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(&buf[..], &want[..]);
    }

    #[test]
    fn upsert_updates_every_non_key_column() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", DataType::Int64, false),
            Field::new("gpu_uuid", DataType::Utf8, false),
            Field::new("x", DataType::Float64, true),
        ]));
        let sql = upsert_from_staging("t", "s", &schema, &["time", "gpu_uuid"], true);
        assert!(sql.ends_with("ON CONFLICT (time, gpu_uuid) DO UPDATE SET \"x\" = EXCLUDED.\"x\""));
    }
}
