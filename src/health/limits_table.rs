// The rows of `limits::TABLE` (included there), most specific first within a family.
// Columns: name, keys (normalised model strings), max power limit W, max SM clock MHz
// (nvidia-smi -q "Max Clocks / SM" = `clocks.max.sm`, DCGM 113), slowdown C, memory max
// operating C, source. `None`: no source gives the value; the GPU's own samples must
// (DESIGN 2.1), or the factors that need it are not scored (`limits_unknown`).
//
// Source abbreviations (full list in docs/health-model.md, "Model limits"):
//   captures  ../shared/real-telemetry/nvidia-smi-captures/<file> (nvidia-smi -q)
//   gls       github.com/thamada/gls, gls/<file> (real nvidia-smi -q output, 2026-02)
//   telegraf  github.com/influxdata/telegraf, plugins/inputs/nvidia_smi/testdata/<file>
//   gpud      github.com/leptonai/gpud, pkg/nvidia-query/testdata/<file>
//   datasheet NVIDIA's product datasheet; not re-read against a -q output (marked so).
// T.Limit GPUs (Hopper, Ada data-center, Blackwell) print their temperature thresholds
// as offsets from the T.Limit, not as degrees: their slowdown is judged from the
// `gpu_temp_tlimit` headroom the samples carry, so the table gives no slowdown for them.
[
    // ---- Volta ---------------------------------------------------------------------
    row(
        "V100 SXM2 16/32 GB",
        &["V100 SXM2"],
        Some(300.0),
        Some(1530.0),
        Some(87.0),
        Some(85.0),
        "gls V100_x8_smi.py: Tesla V100-SXM2-16GB, max power 300 W, max SM 1530 MHz, \
         shutdown 90 / slowdown 87 / max operating 83 C, memory max operating 85 C \
         (the 32 GB board shares the SXM2 limits: same -q values in \
         github.com/NVIDIA/nvidia-docker issue 1076)",
    ),
    row(
        "V100 SXM3 32 GB",
        &["V100 SXM3"],
        Some(350.0),
        Some(1597.0),
        None,
        None,
        "datasheet (NVIDIA DGX-2: V100 SXM3 350 W, boost 1597 MHz; not seen in -q output)",
    ),
    row(
        "V100S PCIe 32 GB",
        &["V100S"],
        Some(250.0),
        Some(1597.0),
        None,
        None,
        "datasheet (V100S PCIe: 250 W, boost 1597 MHz; not seen in -q output)",
    ),
    row(
        "V100 PCIe 16/32 GB",
        &["V100 PCIE"],
        Some(250.0),
        Some(1380.0),
        None,
        None,
        "datasheet (V100 PCIe: 250 W, boost 1380 MHz; not seen in -q output)",
    ),
    // ---- Turing --------------------------------------------------------------------
    row(
        "T4",
        &["T4"],
        Some(70.0),
        Some(1590.0),
        Some(93.0),
        None,
        "telegraf tesla-t4.xml: Tesla T4, power limit 70 W, max SM 1590 MHz, shutdown 96 / \
         slowdown 93 / max operating 85 C (GDDR6: no memory threshold)",
    ),
    // ---- Ampere --------------------------------------------------------------------
    row(
        "A100 PCIe 80 GB",
        &["A100 80GB PCIE", "A100 PCIE 80GB"],
        Some(300.0),
        Some(1410.0),
        Some(89.0),
        Some(95.0),
        "datasheet (A100 PCIe 80 GB: 300 W, boost 1410 MHz); HEALTH_MODEL.md's nvidia-smi \
         -q of an A100 80GB PCIe: shutdown 92 / slowdown 89 / max operating 85 C, memory \
         95 C",
    ),
    row(
        "A100 PCIe 40 GB",
        &["A100 PCIE"],
        Some(250.0),
        Some(1410.0),
        None,
        None,
        "datasheet (A100 PCIe 40 GB: 250 W, boost 1410 MHz; not seen in -q output)",
    ),
    row(
        "A100 SXM4 40/80 GB",
        &["A100 SXM4", "A100"],
        Some(400.0),
        Some(1410.0),
        Some(89.0),
        Some(95.0),
        "telegraf a100-sxm4-v12.xml and gls A100SXMx4_smi.py: NVIDIA A100-SXM4-80GB, max \
         SM 1410 MHz, shutdown 92 / slowdown 89 / max operating 85 C, memory 95 C; power \
         400 W per the datasheet (boards with custom cooling allow 500 W, which their \
         samples' power.limit then says)",
    ),
    row(
        "A10G",
        &["A10G"],
        Some(300.0),
        Some(1710.0),
        Some(95.0),
        None,
        "telegraf a10g.xml: NVIDIA A10G, power limit 300 W, max SM 1710 MHz, shutdown 98 / \
         slowdown 95 / max operating 88 C",
    ),
    row(
        "A10",
        &["A10"],
        Some(150.0),
        Some(1695.0),
        Some(98.0),
        None,
        "gpud nvidia-smi-query.535.129.03.out.0.valid.a10 and gls A10_smi.py: NVIDIA A10, \
         150 W, max SM 1695 MHz, shutdown 101 / slowdown 98 / max operating 91 C",
    ),
    row(
        "A2",
        &["A2"],
        Some(60.0),
        Some(1770.0),
        None,
        None,
        "datasheet (A2: 40-60 W configurable, boost 1770 MHz; not seen in -q output)",
    ),
    row(
        "A16 (per GPU)",
        &["A16"],
        Some(62.5),
        Some(1755.0),
        None,
        None,
        "datasheet (A16: 250 W for the board's four GPUs, 62.5 W each; boost 1755 MHz; \
         not seen in -q output)",
    ),
    row(
        "A30",
        &["A30"],
        Some(165.0),
        Some(1440.0),
        None,
        None,
        "datasheet (A30: 165 W, boost 1440 MHz); name as dcgm-exporter reports it \
         (github.com/NVIDIA/dcgm-exporter issue 317)",
    ),
    row(
        "A40",
        &["A40"],
        Some(300.0),
        Some(1740.0),
        Some(95.0),
        None,
        "gls A40x10_smi.py: NVIDIA A40, 300 W, max SM 1740 MHz, shutdown 98 / slowdown 95 \
         / max operating 88 C",
    ),
    // ---- Ada -----------------------------------------------------------------------
    row(
        "L4",
        &["L4"],
        Some(72.0),
        Some(2040.0),
        None,
        None,
        "gls L4_smi.py: NVIDIA L4, 72 W, max SM 2040 MHz; T.Limit thresholds (shutdown -5, \
         slowdown -2)",
    ),
    row(
        "L40S",
        &["L40S"],
        Some(350.0),
        Some(2520.0),
        None,
        None,
        "captures linux-x86_64__nvidia-l40s__595.80.txt and gls L40S_smi.py: NVIDIA L40S, \
         max power limit 350 W, max SM 2520 MHz; T.Limit thresholds (shutdown -5, slowdown \
         -2)",
    ),
    row(
        "L40",
        &["L40"],
        Some(300.0),
        Some(2490.0),
        None,
        None,
        "datasheet (L40: 300 W, boost 2490 MHz; not seen in -q output)",
    ),
    // ---- Hopper --------------------------------------------------------------------
    row(
        "GH200 (GPU)",
        &["GH200"],
        Some(900.0),
        Some(1980.0),
        None,
        None,
        "gls GH200_smi.py: NVIDIA GH200 480GB, GPU max power limit 900 W (module 1000 W, \
         shared with the Grace CPU), max SM 1980 MHz; T.Limit thresholds",
    ),
    row(
        "H200 NVL",
        &["H200 NVL"],
        Some(600.0),
        None,
        None,
        None,
        "datasheet (H200 NVL: up to 600 W; not seen in -q output)",
    ),
    row(
        "H200 SXM 141 GB",
        &["H200"],
        Some(700.0),
        Some(1980.0),
        None,
        None,
        "captures linux-x86_64__nvidia-h200__590.48.01.txt (and the MIG capture), gls \
         H200_smi.py: NVIDIA H200, max power limit 700 W, max SM 1980 MHz; T.Limit \
         thresholds (shutdown -8, slowdown -2, memory max operating 0)",
    ),
    row(
        "H100 NVL",
        &["H100 NVL"],
        Some(400.0),
        Some(1785.0),
        None,
        None,
        "gls H100NVLx2_smi.py: NVIDIA H100 NVL, max power limit 400 W (default 310 W), max \
         SM 1785 MHz; T.Limit thresholds",
    ),
    row(
        "H100 PCIe",
        &["H100 PCIE"],
        Some(350.0),
        Some(1755.0),
        Some(89.0),
        Some(95.0),
        "datasheet (H100 PCIe: 300-350 W, boost 1755 MHz; not seen in -q output); slowdown \
         89 C and memory max operating 95 C as HEALTH_MODEL.md gives them for Hopper",
    ),
    row(
        "H100 SXM5 80 GB",
        &["H100 80GB HBM3", "H100 SXM5", "H100"],
        Some(700.0),
        Some(1980.0),
        Some(89.0),
        Some(95.0),
        "captures linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt (and the MIG capture), \
         gpud nvidia-smi-query.535.161.08.out.0.valid: NVIDIA H100 80GB HBM3, 700 W, max SM \
         1980 MHz; T.Limit thresholds (shutdown -8, slowdown -2, memory max operating 0); \
         absolute slowdown 89 C (NVML's threshold query on H100, NVIDIA NVSentinel ADR-042) \
         and memory max operating 95 C (HEALTH_MODEL.md's Hopper SXM -q)",
    ),
    // ---- Blackwell -----------------------------------------------------------------
    row(
        "GB200",
        &["GB200"],
        None,
        None,
        None,
        None,
        "no -q output or datasheet figure per GPU found: the samples must carry the limits",
    ),
    row(
        "B200",
        &["B200"],
        Some(1000.0),
        None,
        None,
        None,
        "datasheet (HGX B200: up to 1000 W per GPU; not seen in -q output)",
    ),
    // ---- Workstation and consumer RTX ----------------------------------------------
    row(
        "RTX 6000 Ada",
        &["RTX 6000 ADA GENERATION", "RTX 6000 ADA"],
        Some(300.0),
        Some(3105.0),
        None,
        None,
        "gls RTX6000Ada_x8_smi.py: NVIDIA RTX 6000 Ada Generation, 300 W, max SM 3105 MHz; \
         T.Limit thresholds",
    ),
    row(
        "RTX A6000",
        &["RTX A6000"],
        Some(300.0),
        Some(2100.0),
        Some(95.0),
        None,
        "gls RTX_A6000_x9_smi.py: NVIDIA RTX A6000, 300 W, max SM 2100 MHz, shutdown 98 / \
         slowdown 95 / max operating 93 C",
    ),
    row(
        "GeForce RTX 4080 SUPER",
        &["GEFORCE RTX 4080 SUPER"],
        Some(320.0),
        Some(3165.0),
        Some(96.0),
        None,
        "captures linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05.txt: default power \
         limit 320 W (max 400 W), max SM 3165 MHz, shutdown 101 / slowdown 96 / max \
         operating 90 C",
    ),
    row(
        "GeForce RTX 2080 SUPER",
        &["GEFORCE RTX 2080 SUPER"],
        Some(250.0),
        Some(2145.0),
        Some(97.0),
        None,
        "captures linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05.txt and three more: \
         default power limit 250 W (max 350 W), max SM 2145 MHz, shutdown 100 / slowdown \
         97 / max operating 89 C",
    ),
    row(
        "RTX (generic workstation or GeForce)",
        &["RTX"],
        None,
        None,
        None,
        None,
        "no limits common to the family (slowdown 91-97 C and 64-575 W across the RTX -q \
         outputs in gls and telegraf): the samples must carry them (power.limit, \
         clocks.max.sm, temperature.gpu.tlimit)",
    ),
]
