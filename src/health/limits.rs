//! Per-model limits used by the health model (HEALTH_MODEL.md, "Model limits").
//!
//! Sources: NVIDIA product specifications and `nvidia-smi -q` of each model. Hopper
//! SXM: slowdown 89 C, memory max operating 95 C, max SM clock 1980 MHz, 700 W.
//! A100 80GB PCIe: slowdown 89 C, memory max 95 C. Unknown models get the most
//! conservative values of the table (lowest power limit and temperatures).

/// Limits of one GPU model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelLimits {
    pub name: &'static str,
    pub power_limit_w: f64,
    pub max_sm_clock_mhz: f64,
    pub slowdown_temp_c: f64,
    pub memory_max_temp_c: f64,
}

/// Matched by substring against the reported model string, first match wins, so the
/// more specific forms come first.
const TABLE: &[(&[&str], ModelLimits)] = &[
    (
        &["H100 PCIe", "H100-PCIE"],
        ModelLimits {
            name: "H100 PCIe 80 GB",
            power_limit_w: 350.0,
            max_sm_clock_mhz: 1755.0,
            slowdown_temp_c: 89.0,
            memory_max_temp_c: 95.0,
        },
    ),
    (
        &["H100"],
        ModelLimits {
            name: "H100 SXM5 80 GB",
            power_limit_w: 700.0,
            max_sm_clock_mhz: 1980.0,
            slowdown_temp_c: 89.0,
            memory_max_temp_c: 95.0,
        },
    ),
    (
        &["A100 80GB PCIe", "A100-PCIE", "A100 PCIe"],
        ModelLimits {
            name: "A100 PCIe 80 GB",
            power_limit_w: 300.0,
            max_sm_clock_mhz: 1410.0,
            slowdown_temp_c: 89.0,
            memory_max_temp_c: 95.0,
        },
    ),
    (
        &["A100"],
        ModelLimits {
            name: "A100 SXM4 40/80 GB",
            power_limit_w: 400.0,
            max_sm_clock_mhz: 1410.0,
            slowdown_temp_c: 89.0,
            memory_max_temp_c: 95.0,
        },
    ),
];

/// Conservative fallback for models not in the table.
pub const UNKNOWN_MODEL: ModelLimits = ModelLimits {
    name: "unknown (conservative)",
    power_limit_w: 300.0,
    max_sm_clock_mhz: 1410.0,
    slowdown_temp_c: 85.0,
    memory_max_temp_c: 90.0,
};

/// Limits for a reported model string.
pub fn limits_for(model: Option<&str>) -> ModelLimits {
    let Some(model) = model else {
        return UNKNOWN_MODEL;
    };
    TABLE
        .iter()
        .find(|(keys, _)| keys.iter().any(|k| model.contains(k)))
        .map(|(_, l)| *l)
        .unwrap_or(UNKNOWN_MODEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_strings_map_to_their_rows() {
        assert_eq!(
            limits_for(Some("NVIDIA H100 80GB HBM3")).power_limit_w,
            700.0
        );
        assert_eq!(limits_for(Some("NVIDIA H100 PCIe")).power_limit_w, 350.0);
        assert_eq!(
            limits_for(Some("NVIDIA A100-SXM4-80GB")).power_limit_w,
            400.0
        );
        assert_eq!(
            limits_for(Some("NVIDIA A100 80GB PCIe")).power_limit_w,
            300.0
        );
        assert_eq!(limits_for(Some("Tesla V100")), UNKNOWN_MODEL);
        assert_eq!(limits_for(None), UNKNOWN_MODEL);
    }
}
