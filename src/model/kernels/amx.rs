//! Intel AMX (Advanced Matrix Extensions) for the kernels: whether this process may use the
//! tile registers, and their configuration.
//!
//! A CPU that reports AMX in CPUID still needs the operating system's consent: Linux keeps the
//! 8 KiB of tile data out of a thread's saved state until the process asks for it with
//! `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` (Linux 5.16 and later), and a tile
//! instruction before that faults. [`permitted`] asks once per process and remembers the answer;
//! a kernel path that uses tiles is offered only where it is yes.
//!
//! The instructions are written as inline assembly (Rust's AMX intrinsics are not stable), with
//! the tile registers named: nothing else in this program uses them, so no other code's values
//! live there.

use std::sync::OnceLock;

/// Whether this process may execute AMX tile instructions: the CPU has the tiles (CPUID), and
/// the kernel granted the tile data state. Asked once, then remembered. (Which products the
/// tiles do, int8 or bf16, each path checks in the CPU's features.)
pub fn permitted() -> bool {
    static PERMITTED: OnceLock<bool> = OnceLock::new();
    *PERMITTED
        .get_or_init(|| super::features::CpuFeatures::detect().amx_tile && request_tile_data())
}

/// Asks Linux for the tile data state (`ARCH_REQ_XCOMP_PERM` = 0x1023, `XFEATURE_XTILEDATA`
/// = 18); false where it refuses or is not Linux on x86-64.
fn request_tile_data() -> bool {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain system call with integer arguments; it changes only which register
        // state the kernel saves for this process.
        let status = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        status == 0
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    false
}

/// A tile configuration (palette 1): the shape of each of the 8 tile registers, as `ldtilecfg`
/// reads it from 64 aligned bytes.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig([u8; 64]);

impl TileConfig {
    /// Every tile unused.
    pub const fn new() -> Self {
        let mut bytes = [0u8; 64];
        bytes[0] = 1; // palette 1: 8 tiles of up to 16 rows of 64 bytes
        Self(bytes)
    }

    /// Tile `index` as `rows` rows of `bytes_per_row` bytes.
    pub const fn tile(mut self, index: usize, rows: u8, bytes_per_row: u16) -> Self {
        assert!(index < 8 && rows <= 16 && bytes_per_row <= 64);
        let le = bytes_per_row.to_le_bytes();
        self.0[16 + 2 * index] = le[0];
        self.0[17 + 2 * index] = le[1];
        self.0[48 + index] = rows;
        self
    }

    /// Loads this configuration into the tile registers of the calling thread (zeroing them).
    ///
    /// # Safety
    /// [`permitted`] is true.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub unsafe fn load(&self) {
        // SAFETY: the caller has checked that AMX is usable; the 64 bytes are aligned.
        unsafe {
            std::arch::asm!("ldtilecfg [{}]", in(reg) self.0.as_ptr(), options(nostack, readonly));
        }
    }
}

impl Default for TileConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Loads `config` into the calling thread's tile registers unless it is the last one this
/// function loaded there: a kernel called for every tile of a product configures once per
/// thread rather than once per tile (`ldtilecfg` costs about as much as a small tile's work).
/// Only these kernels use the tiles, and the operating system keeps each thread's
/// configuration across context switches, so the remembered one stays loaded.
///
/// # Safety
/// The CPU has AMX. (Whether the kernel permits it is asked here, once per process, so that a
/// path chosen without [`permitted`] fails with a message rather than an illegal instruction.)
#[cfg(target_arch = "x86_64")]
#[inline]
pub unsafe fn load_once(config: &'static TileConfig) {
    use std::cell::Cell;
    assert!(
        permitted(),
        "an AMX kernel was chosen where AMX is not permitted"
    );
    thread_local!(static LOADED: Cell<*const TileConfig> = const { Cell::new(std::ptr::null()) });
    LOADED.with(|loaded| {
        if !std::ptr::eq(loaded.get(), config) {
            // SAFETY: as the caller promises.
            unsafe { config.load() };
            loaded.set(config);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_has_the_layout_ldtilecfg_reads() {
        let config = TileConfig::new().tile(0, 8, 32).tile(7, 16, 64);
        assert_eq!(config.0[0], 1);
        assert_eq!(&config.0[16..18], &32u16.to_le_bytes());
        assert_eq!(&config.0[30..32], &64u16.to_le_bytes());
        assert_eq!((config.0[48], config.0[55]), (8, 16));
        assert_eq!(std::mem::align_of::<TileConfig>(), 64);
    }

    /// One signed × unsigned tile product against plain integer arithmetic, where the CPU and
    /// the kernel allow AMX.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_tile_product_equals_integer_arithmetic() {
        if !(permitted() && super::super::features::CpuFeatures::detect().amx_int8) {
            println!("skipped the AMX tile product: this CPU or kernel does not allow AMX-INT8");
            return;
        }
        let a: Vec<i8> = (0..16 * 64).map(|i| ((i * 7 + 3) % 255) as i8).collect();
        let b: Vec<u8> = (0..16 * 64).map(|i| ((i * 13 + 5) % 256) as u8).collect();
        let mut c = vec![0i32; 256];
        let config = TileConfig::new()
            .tile(0, 16, 64)
            .tile(1, 16, 64)
            .tile(2, 16, 64);
        // SAFETY: AMX is permitted; each tile reads or writes 16 rows of 64 bytes of a buffer
        // of 1 KiB.
        unsafe {
            config.load();
            std::arch::asm!(
                "tilezero tmm0",
                "tileloadd tmm1, [{a} + {stride}*1]",
                "tileloadd tmm2, [{b} + {stride}*1]",
                "tdpbsud tmm0, tmm1, tmm2",
                "tilestored [{c} + {stride}*1], tmm0",
                "tilerelease",
                a = in(reg) a.as_ptr(),
                b = in(reg) b.as_ptr(),
                c = in(reg) c.as_mut_ptr(),
                stride = in(reg) 64usize,
                options(nostack),
            );
        }
        for m in 0..16 {
            for n in 0..16 {
                let want: i32 = (0..64)
                    .map(|k| a[m * 64 + k] as i32 * b[(k / 4) * 64 + n * 4 + k % 4] as i32)
                    .sum();
                assert_eq!(c[m * 16 + n], want, "row {m}, column {n}");
            }
        }
    }
}
