//! A cheap guess, before any compression is tried, at whether bytes are
//! already compressed or encrypted: then zstd only spends time to give up.
//!
//! The guess is the order-0 (byte frequency) entropy of a sample. Bytes that
//! look uniformly random leave an entropy coder nothing to save; zstd's
//! matches could still find repeats in them, but that is rare in practice,
//! and repeats the size of a chunk are deduplicated anyway.

/// Bytes looked at: windows spread over the data, so a chunk is judged
/// by more than its start, at a cost independent of its size.
const WINDOWS: usize = 8;
const WINDOW: usize = 512;
/// Below this many bytes the estimate is too noisy to trust.
const MIN_SAMPLE: usize = 1024;
/// Bits per byte above which a sample counts as incompressible: an entropy
/// coder could save at most 2.5 %, under the share worth keeping.
const RANDOM_BITS: f64 = 7.8;

/// True when `data` looks random, judged on a sample of it.
pub fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < MIN_SAMPLE {
        return false;
    }
    let counts = if data.len() <= WINDOWS * WINDOW {
        histogram(data)
    } else {
        // Window starts from 0 to len - WINDOW, evenly spaced.
        let step = (data.len() - WINDOW) / (WINDOWS - 1);
        let mut counts = [0u32; 256];
        for i in 0..WINDOWS {
            let window = &data[i * step..i * step + WINDOW];
            for (total, add) in counts.iter_mut().zip(histogram(window)) {
                *total += add;
            }
        }
        counts
    };
    entropy_bits_per_byte(&counts) > RANDOM_BITS
}

/// Order-0 entropy of `bytes` in bits per byte, with the Miller-Madow
/// correction for the bias of a finite sample (which reads low: 4 KiB of
/// random bytes measure about 7.95 bits, not 8).
fn entropy_bits_per_byte(counts: &[u32; 256]) -> f64 {
    let n = f64::from(counts.iter().sum::<u32>());
    let mut bits = 0.0;
    let mut seen = 0u32;
    for &count in counts {
        if count > 0 {
            seen += 1;
            let p = f64::from(count) / n;
            bits -= p * p.log2();
        }
    }
    bits + f64::from(seen.saturating_sub(1)) / (2.0 * n * std::f64::consts::LN_2)
}

/// Byte counts. Four tables, merged at the end, so runs of one byte value do
/// not stall on the same counter.
fn histogram(bytes: &[u8]) -> [u32; 256] {
    let mut tables = [[0u32; 256]; 4];
    let mut quads = bytes.chunks_exact(4);
    for quad in &mut quads {
        tables[0][usize::from(quad[0])] += 1;
        tables[1][usize::from(quad[1])] += 1;
        tables[2][usize::from(quad[2])] += 1;
        tables[3][usize::from(quad[3])] += 1;
    }
    for &b in quads.remainder() {
        tables[0][usize::from(b)] += 1;
    }
    let mut counts = [0u32; 256];
    for (i, count) in counts.iter_mut().enumerate() {
        *count = tables[0][i] + tables[1][i] + tables[2][i] + tables[3][i];
    }
    counts
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
