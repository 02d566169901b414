//! NVML clock-event reason bits (`nvmlClocksEventReasons`, verified in HEALTH_MODEL.md),
//! as carried in `throttle_reasons`. Defined once here, upstream of both the rollup
//! event counts and the health model.

pub const BIT_SW_POWER_CAP: i64 = 0x04;
pub const BIT_HW_SLOWDOWN: i64 = 0x08;
pub const BIT_SW_THERMAL: i64 = 0x20;
pub const BIT_HW_THERMAL: i64 = 0x40;
pub const BIT_HW_POWER_BRAKE: i64 = 0x80;
/// Thermal = SW 0x20 | HW 0x40.
pub const THERMAL_BITS: i64 = BIT_SW_THERMAL | BIT_HW_THERMAL;
/// Power faults = HW slowdown 0x08 | HW power brake 0x80.
pub const POWER_FAULT_BITS: i64 = BIT_HW_SLOWDOWN | BIT_HW_POWER_BRAKE;
/// The bits DCGM diagnostics treat as faults (0x8, 0x20, 0x40, 0x80).
pub const FAULT_BITS: i64 = THERMAL_BITS | POWER_FAULT_BITS;
/// "Throttled (any non-idle reason)": everything except the normal bits GpuIdle 0x1,
/// ApplicationsClocksSetting 0x2, SyncBoost 0x10, DisplayClockSetting 0x100.
pub const NORMAL_BITS: i64 = 0x1 | 0x2 | 0x10 | 0x100;
