//! A cheap guess, before any compression is tried, at whether bytes are
//! already compressed or encrypted: then zstd only spends time to give up.
//!
//! The guess is the order-0 (byte frequency) entropy of a sample. Bytes that
//! look uniformly random leave an entropy coder nothing to save; zstd's
//! matches could still find repeats in them, but that is rare in practice,
//! and repeats the size of a chunk are deduplicated anyway.

use std::sync::LazyLock;

/// Bytes looked at: windows spread over the data, so a chunk is judged by
/// more than its start, at a cost independent of its size. 2 KiB measure
/// random bytes within a few hundredths of a bit of 8, and the count costs
/// about a microsecond: on small files it is a tenth of the compression.
const WINDOWS: usize = 8;
const WINDOW: usize = 256;
const SAMPLE: usize = WINDOWS * WINDOW;
/// Below this many bytes the estimate is too noisy to trust.
const MIN_SAMPLE: usize = 1024;
/// Bits per byte above which a sample counts as incompressible: an entropy
/// coder could save at most 2.5 %, under the share worth keeping.
const RANDOM_BITS: f64 = 7.8;

/// `c * log2(c)` for every count a sample can hold, so the entropy sum
/// takes no logarithm per byte value.
static COUNT_LOG2: LazyLock<Box<[f64]>> = LazyLock::new(|| {
    (0..=SAMPLE)
        .map(|c| match c {
            0 => 0.0,
            c => c as f64 * (c as f64).log2(),
        })
        .collect()
});

/// True when `data` looks random, judged on a sample of it.
pub fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < MIN_SAMPLE {
        return false;
    }
    let mut counts = Histogram::new();
    if data.len() <= SAMPLE {
        counts.add(data);
    } else {
        // Window starts from 0 to len - WINDOW, evenly spaced.
        let step = (data.len() - WINDOW) / (WINDOWS - 1);
        for i in 0..WINDOWS {
            counts.add(&data[i * step..i * step + WINDOW]);
        }
    }
    entropy_bits_per_byte(&counts.merged()) > RANDOM_BITS
}

/// Order-0 entropy in bits per byte of a sample of at most [`SAMPLE`]
/// bytes, with the Miller-Madow correction for the bias of a finite sample
/// (which reads low: 2 KiB of random bytes measure about 7.91 bits, not 8).
///
/// H = log2(n) - sum(c log2 c) / n, over the counts c of the n bytes.
fn entropy_bits_per_byte(counts: &[u32; 256]) -> f64 {
    let table = &*COUNT_LOG2;
    let mut n = 0u32;
    let mut sum = 0.0;
    let mut seen = 0u32;
    for &count in counts {
        n += count;
        seen += u32::from(count > 0);
        sum += table.get(count as usize).copied().unwrap_or_else(|| {
            let c = f64::from(count);
            c * c.log2()
        });
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    n.log2() - sum / n + f64::from(seen.saturating_sub(1)) / (2.0 * n * std::f64::consts::LN_2)
}

/// Byte counts in four tables, merged at the end, so runs of one byte value
/// do not stall on the same counter.
struct Histogram {
    tables: [[u32; 256]; 4],
}

impl Histogram {
    fn new() -> Self {
        Self {
            tables: [[0; 256]; 4],
        }
    }

    fn add(&mut self, bytes: &[u8]) {
        let mut quads = bytes.chunks_exact(4);
        for quad in &mut quads {
            self.tables[0][usize::from(quad[0])] += 1;
            self.tables[1][usize::from(quad[1])] += 1;
            self.tables[2][usize::from(quad[2])] += 1;
            self.tables[3][usize::from(quad[3])] += 1;
        }
        for &b in quads.remainder() {
            self.tables[0][usize::from(b)] += 1;
        }
    }

    fn merged(&self) -> [u32; 256] {
        let [a, b, c, d] = &self.tables;
        std::array::from_fn(|i| a[i] + b[i] + c[i] + d[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bytes::noise;

    #[test]
    fn random_bytes_of_any_size_look_incompressible() {
        for len in [MIN_SAMPLE, 1500, 4096, 4097, 16 << 10, 64 << 10, 4 << 20] {
            assert!(looks_incompressible(&noise(len, len as u64)), "{len} bytes");
        }
    }

    #[test]
    fn text_runs_and_small_alphabets_do_not() {
        let text = b"the quick brown fox jumps over the lazy dog. ".repeat(200);
        assert!(!looks_incompressible(&text));
        assert!(!looks_incompressible(&vec![0u8; 10_000]));
        // Random hex: random, but four bits a byte, so it halves.
        let hex: Vec<u8> = noise(10_000, 7)
            .iter()
            .map(|b| b"0123456789abcdef"[usize::from(b & 15)])
            .collect();
        assert!(!looks_incompressible(&hex));
    }

    #[test]
    fn entropy_matches_its_definition() {
        // Every byte value equally often: exactly 8 bits, plus the correction.
        let uniform = [8u32; 256];
        let correction = 255.0 / (2.0 * 2048.0 * std::f64::consts::LN_2);
        assert!((entropy_bits_per_byte(&uniform) - (8.0 + correction)).abs() < 1e-9);
        // One value only: no information.
        let mut single = [0u32; 256];
        single[b'a' as usize] = 2048;
        assert_eq!(entropy_bits_per_byte(&single), 0.0);
        // Two values, one three times the other: the textbook 0.811 bits.
        let mut skewed = [0u32; 256];
        skewed[0] = 1536;
        skewed[1] = 512;
        let expected = -(0.75f64 * 0.75f64.log2() + 0.25 * 0.25f64.log2())
            + 1.0 / (2.0 * 2048.0 * std::f64::consts::LN_2);
        assert!((entropy_bits_per_byte(&skewed) - expected).abs() < 1e-9);
        assert_eq!(entropy_bits_per_byte(&[0; 256]), 0.0);
    }

    #[test]
    fn tiny_inputs_are_left_to_the_compressor() {
        assert!(!looks_incompressible(&noise(MIN_SAMPLE - 1, 3)));
        assert!(!looks_incompressible(b""));
    }

    #[test]
    fn a_chunk_is_judged_by_its_whole_length() {
        // Random at the start, text after: mostly text, worth compressing.
        let text = b"the quick brown fox jumps over the lazy dog. ".repeat(30_000);
        let mut data = noise(64 << 10, 9);
        data.extend_from_slice(&text);
        assert!(!looks_incompressible(&data));
        // And the other way round.
        let mut data = text[..64 << 10].to_vec();
        data.extend(noise(1 << 20, 11));
        assert!(looks_incompressible(&data));
    }
}
