//! Input events: the two message shapes of DESIGN 2.1 decoded, validated (DESIGN 2.2)
//! and laid out as Arrow record batches in the `gpu_metrics` column order.

pub mod batch;
pub mod clock_events;
pub mod columns;
pub mod dead_letter;
pub mod decode;
pub mod decoder;
pub mod schema;

pub use decode::{DecodeLimits, SoftReason};
