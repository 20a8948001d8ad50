//! Reproducible pseudo-random numbers without state: SplitMix64 of a counter, so that number
//! `i` of a stream depends only on the seed and `i` (synthetic weights generated in parallel,
//! bootstrap resamples that are the same on every machine).

/// SplitMix64's output function of `x` (the stream's state after `x` steps of its increment).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Number `index` of the stream `seed`, uniform on `0..n` (`n` > 0; the modulo's bias is below
/// n / 2⁶⁴).
pub fn below(seed: u64, index: u64, n: usize) -> usize {
    (splitmix64(seed.wrapping_add(index)) % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs of SplitMix64 seeded with 0, as its reference implementation gives
    /// them (state incremented before mixing).
    #[test]
    fn matches_the_reference_sequence() {
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn draws_cover_the_range_evenly() {
        let mut counts = [0usize; 7];
        for i in 0..70_000 {
            counts[below(42, i, 7)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
    }
}
