//! The instruction-set extensions of the CPU this process runs on that the kernels can use,
//! detected at run time.

use serde::Serialize;

/// The instruction-set extensions the kernels can use, as this CPU reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vnni: bool,
    pub avx512bf16: bool,
    pub avxvnni: bool,
    pub amx_tile: bool,
    pub amx_int8: bool,
    pub amx_bf16: bool,
}

impl CpuFeatures {
    /// The features of the CPU this process runs on.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                avx2: is_x86_feature_detected!("avx2"),
                fma: is_x86_feature_detected!("fma"),
                avx512f: is_x86_feature_detected!("avx512f"),
                avx512bw: is_x86_feature_detected!("avx512bw"),
                avx512vnni: is_x86_feature_detected!("avx512vnni"),
                avx512bf16: is_x86_feature_detected!("avx512bf16"),
                avxvnni: is_x86_feature_detected!("avxvnni"),
                ..amx_from_cpuid()
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self::default()
    }

    /// The names of the features present, as `/proc/cpuinfo` spells them, for reports.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.avx512f, "avx512f"),
            (self.avx512bw, "avx512bw"),
            (self.avx512vnni, "avx512_vnni"),
            (self.avx512bf16, "avx512_bf16"),
            (self.avxvnni, "avx_vnni"),
            (self.amx_tile, "amx_tile"),
            (self.amx_int8, "amx_int8"),
            (self.amx_bf16, "amx_bf16"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }
}

/// AMX as CPUID leaf 7 reports it (EDX bits 24, 25, 22: tile, int8, bf16); std's detection
/// of AMX is not stable yet. Whether Linux lets this process use the tiles is asked separately,
/// before their first use.
#[cfg(target_arch = "x86_64")]
fn amx_from_cpuid() -> CpuFeatures {
    let max_leaf = std::arch::x86_64::__cpuid(0).eax;
    let edx = if max_leaf >= 7 {
        std::arch::x86_64::__cpuid_count(7, 0).edx
    } else {
        0
    };
    let bit = |n: u32| max_leaf >= 7 && edx & (1 << n) != 0;
    CpuFeatures {
        amx_tile: bit(24),
        amx_int8: bit(25),
        amx_bf16: bit(22),
        ..CpuFeatures::default()
    }
}
