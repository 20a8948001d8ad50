//! numpy's legacy `RandomState` as far as `DataFrame.sample(n, random_state=seed)` uses it:
//! MT19937 seeded from a 32-bit integer, `permutation` by the backwards Fisher–Yates shuffle with
//! masked rejection sampling, and pandas taking the permutation's first `n` positions. The
//! paper's code draws its few-shot examples and test rows this way, so the same draw needs the
//! same generator, bit for bit.

/// The Mersenne Twister as numpy's `mt19937` bit generator runs it.
pub struct Mt19937 {
    key: [u32; STATE_LEN],
    pos: usize,
}

const STATE_LEN: usize = 624;
const SHIFT: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

impl Mt19937 {
    /// `RandomState(seed)` for an integer seed (numpy's `mt19937_seed`).
    pub fn new(seed: u32) -> Self {
        let mut key = [0u32; STATE_LEN];
        key[0] = seed;
        for i in 1..STATE_LEN {
            let previous = key[i - 1];
            key[i] = 1_812_433_253u32
                .wrapping_mul(previous ^ (previous >> 30))
                .wrapping_add(i as u32);
        }
        Self {
            key,
            pos: STATE_LEN,
        }
    }

    fn generate(&mut self) {
        for i in 0..STATE_LEN {
            let y = (self.key[i] & UPPER_MASK) | (self.key[(i + 1) % STATE_LEN] & LOWER_MASK);
            let twisted = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.key[i] = self.key[(i + SHIFT) % STATE_LEN] ^ (y >> 1) ^ twisted;
        }
        self.pos = 0;
    }

    /// The next 32-bit output (numpy's `next_uint32`, `genrand_int32` of the reference code).
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == STATE_LEN {
            self.generate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// Uniform on `0..=max` (numpy's `random_interval`): the draw masked to `max`'s bit length,
    /// rejected while above `max`.
    pub fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let value = self.next_u32() & mask;
            if value <= max {
                return value;
            }
        }
    }

    /// `RandomState.permutation(n)`: `arange(n)` shuffled from the last position down.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut items: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(u32::try_from(i).expect("checked by sample_positions")) as usize;
            items.swap(i, j);
        }
        items
    }
}

/// The positions `DataFrame.sample(n, random_state=seed)` takes from a frame of `len` rows, in
/// the order it returns them; `None` when `n > len` (pandas raises then).
pub fn sample_positions(len: usize, n: usize, seed: u32) -> Option<Vec<usize>> {
    if n > len || u32::try_from(len).is_err() {
        return None;
    }
    let mut permutation = Mt19937::new(seed).permutation(len);
    permutation.truncate(n);
    Some(permutation)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs of the reference implementation's `init_genrand(5489)`, and the
    /// 10,000th, as given in the C++ standard ([rand.predef]: mt19937's 10000th output).
    #[test]
    fn matches_the_reference_generator() {
        let mut mt = Mt19937::new(5489);
        assert_eq!(mt.next_u32(), 3_499_211_612);
        assert_eq!(mt.next_u32(), 581_869_302);
        for _ in 2..9_999 {
            mt.next_u32();
        }
        assert_eq!(mt.next_u32(), 4_123_659_995);
    }

    #[test]
    fn interval_stays_in_range_and_covers_it() {
        let mut mt = Mt19937::new(42);
        let mut seen = [false; 6];
        for _ in 0..1000 {
            let v = mt.interval(5) as usize;
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(mt.interval(0), 0);
    }

    #[test]
    fn a_sample_is_distinct_positions_and_refuses_too_many() {
        let positions = sample_positions(50, 20, 42).unwrap();
        let mut sorted = positions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 20);
        assert!(sorted.iter().all(|&p| p < 50));
        assert!(sample_positions(5, 6, 42).is_none());
        assert_eq!(sample_positions(0, 0, 42), Some(vec![]));
    }
}
