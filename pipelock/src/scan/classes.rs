//! Byte classes of text as bit masks, 64 bytes at a time: bit `i` of a mask describes byte `i`
//! of the block. The scanners' prefilters (long token runs, digit runs, word starts) work on
//! these masks with a few word-sized operations instead of a branch per byte.
//!
//! On x86-64 the masks come from SSE2 (part of the baseline, so always present); elsewhere
//! from a portable loop. Both give the same masks (tested).

/// Bytes per block.
pub const BLOCK: usize = 64;

/// The classes of one block's bytes that the run prefilters need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Classes {
    /// Letters, digits, `_` and `-`: the alphabet of API tokens.
    pub token: u64,
    /// The token alphabet plus `+` and `/`: standard and URL-safe base64 (and hex).
    pub base64: u64,
    /// ASCII digits.
    pub digit: u64,
    /// Space and `-`, which may join the digit groups of card numbers and SSNs.
    pub joiner: u64,
    /// ASCII letters.
    pub letter: u64,
}

/// `block` (at most [`BLOCK`] bytes) as exactly [`BLOCK`] bytes: itself when it is full, else
/// copied into `padded` and filled up with NUL bytes, which belong to no class.
#[must_use]
pub fn pad<'a>(block: &'a [u8], padded: &'a mut [u8; BLOCK]) -> &'a [u8] {
    if block.len() == BLOCK {
        return block;
    }
    let len = block.len().min(BLOCK);
    padded[..len].copy_from_slice(&block[..len]);
    padded[len..].fill(0);
    &padded[..]
}

/// Calls `f(offset, classes)` for each block of `bytes`, in order. The last block is padded
/// with NUL bytes, which belong to no class.
pub fn for_each_block(bytes: &[u8], mut f: impl FnMut(usize, Classes)) {
    let mut blocks = bytes.chunks_exact(BLOCK);
    let mut offset = 0;
    for block in blocks.by_ref() {
        f(offset, classify(block));
        offset += BLOCK;
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        let mut padded = [0u8; BLOCK];
        f(offset, classify(pad(rest, &mut padded)));
    }
}

/// The classes of a block of exactly [`BLOCK`] bytes.
#[must_use]
pub fn classify(block: &[u8]) -> Classes {
    debug_assert_eq!(block.len(), BLOCK);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU has it.
    unsafe {
        sse2::classify(block)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        classify_portable(block)
    }
}

/// Letters, chosen ASCII symbols and non-ASCII bytes of one block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LetterMasks {
    /// ASCII letters.
    pub letter: u64,
    /// Bytes in the chosen set.
    pub symbol: u64,
    /// Bytes `0x80..=0xff`.
    pub high: u64,
}

/// The letters, the bytes of `symbols` and the non-ASCII bytes of a block of exactly
/// [`BLOCK`] bytes.
#[must_use]
pub fn letters_symbols(block: &[u8], symbols: &[u8]) -> LetterMasks {
    debug_assert_eq!(block.len(), BLOCK);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU has it.
    unsafe {
        sse2::letters_symbols(block, symbols)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        letters_symbols_portable(block, symbols)
    }
}

/// The portable definition of [`letters_symbols`].
#[must_use]
pub fn letters_symbols_portable(block: &[u8], symbols: &[u8]) -> LetterMasks {
    let mut m = LetterMasks::default();
    for (i, &b) in block.iter().enumerate().take(BLOCK) {
        let bit = 1u64 << i;
        if b.is_ascii_alphabetic() {
            m.letter |= bit;
        }
        if symbols.contains(&b) {
            m.symbol |= bit;
        }
        if b >= 0x80 {
            m.high |= bit;
        }
    }
    m
}

/// The ASCII whitespace of a block of exactly [`BLOCK`] bytes: spaces, and the others (tab,
/// line feed, vertical tab, form feed, carriage return).
#[must_use]
pub fn whitespace(block: &[u8]) -> (u64, u64) {
    debug_assert_eq!(block.len(), BLOCK);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU has it.
    unsafe {
        sse2::whitespace(block)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        whitespace_portable(block)
    }
}

/// The portable definition of [`whitespace`].
#[must_use]
pub fn whitespace_portable(block: &[u8]) -> (u64, u64) {
    let (mut spaces, mut others) = (0, 0);
    for (i, b) in block.iter().take(BLOCK).enumerate() {
        match b {
            b' ' => spaces |= 1 << i,
            b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' => others |= 1 << i,
            _ => {}
        }
    }
    (spaces, others)
}

/// The portable definition of [`classify`].
#[must_use]
pub fn classify_portable(block: &[u8]) -> Classes {
    let mut c = Classes::default();
    for (i, &b) in block.iter().enumerate().take(BLOCK) {
        let bit = 1u64 << i;
        let letter = b.is_ascii_alphabetic();
        let digit = b.is_ascii_digit();
        let token = letter || digit || b == b'_' || b == b'-';
        if letter {
            c.letter |= bit;
        }
        if digit {
            c.digit |= bit;
        }
        if token {
            c.token |= bit;
        }
        if token || b == b'+' || b == b'/' {
            c.base64 |= bit;
        }
        if b == b' ' || b == b'-' {
            c.joiner |= bit;
        }
    }
    c
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128,
    };

    use super::{Classes, LetterMasks, BLOCK};

    /// Bytes in `lo..lo + len` (unsigned), by shifting the range to the bottom of the signed
    /// range and comparing once.
    #[inline]
    #[target_feature(enable = "sse2")]
    #[allow(clippy::cast_possible_wrap)]
    fn in_range(v: __m128i, lo: u8, len: u8) -> __m128i {
        let shifted = _mm_add_epi8(v, _mm_set1_epi8((0x80u8.wrapping_sub(lo)) as i8));
        _mm_cmplt_epi8(shifted, _mm_set1_epi8((0x80u8.wrapping_add(len)) as i8))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    #[allow(clippy::cast_possible_wrap)]
    fn eq(v: __m128i, b: u8) -> __m128i {
        _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    #[allow(clippy::cast_sign_loss)]
    fn bits(m: __m128i, lane: usize) -> u64 {
        u64::from(_mm_movemask_epi8(m) as u32 & 0xffff) << (16 * lane)
    }

    #[target_feature(enable = "sse2")]
    pub fn classify(block: &[u8]) -> Classes {
        assert!(block.len() >= BLOCK);
        let mut c = Classes::default();
        for lane in 0..BLOCK / 16 {
            let chunk = &block[16 * lane..16 * lane + 16];
            // SAFETY: `chunk` is 16 readable bytes, and the load has no alignment requirement.
            let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
            let letter = in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', 26);
            let digit = in_range(v, b'0', 10);
            let dash = eq(v, b'-');
            let token = _mm_or_si128(_mm_or_si128(letter, digit), _mm_or_si128(dash, eq(v, b'_')));
            let base64 = _mm_or_si128(token, _mm_or_si128(eq(v, b'+'), eq(v, b'/')));
            c.letter |= bits(letter, lane);
            c.digit |= bits(digit, lane);
            c.token |= bits(token, lane);
            c.base64 |= bits(base64, lane);
            c.joiner |= bits(_mm_or_si128(dash, eq(v, b' ')), lane);
        }
        c
    }

    #[target_feature(enable = "sse2")]
    pub fn letters_symbols(block: &[u8], symbols: &[u8]) -> LetterMasks {
        assert!(block.len() >= BLOCK);
        let mut m = LetterMasks::default();
        for lane in 0..BLOCK / 16 {
            let chunk = &block[16 * lane..16 * lane + 16];
            // SAFETY: `chunk` is 16 readable bytes, and the load has no alignment requirement.
            let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
            let folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
            m.letter |= bits(in_range(folded, b'a', 26), lane);
            let mut symbol = _mm_setzero_si128();
            for &s in symbols {
                symbol = _mm_or_si128(symbol, eq(v, s));
            }
            m.symbol |= bits(symbol, lane);
            m.high |= bits(v, lane);
        }
        m
    }

    #[target_feature(enable = "sse2")]
    pub fn whitespace(block: &[u8]) -> (u64, u64) {
        assert!(block.len() >= BLOCK);
        let (mut spaces, mut others) = (0, 0);
        for lane in 0..BLOCK / 16 {
            let chunk = &block[16 * lane..16 * lane + 16];
            // SAFETY: `chunk` is 16 readable bytes, and the load has no alignment requirement.
            let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
            spaces |= bits(eq(v, b' '), lane);
            others |= bits(in_range(v, b'\t', 5), lane);
        }
        (spaces, others)
    }
}

/// Finds runs of at least `MIN` (1..=64) set bits across a stream of block masks.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFinder<const MIN: u32> {
    /// Set bits at the end of the blocks pushed so far.
    carry: u32,
}

impl<const MIN: u32> RunFinder<MIN> {
    /// Adds the next block's mask; true when a run of at least `MIN` bits ends in it.
    #[inline]
    pub fn push(&mut self, mask: u64) -> bool {
        let joined = self.carry + mask.trailing_ones();
        self.carry = if mask == u64::MAX {
            self.carry + 64
        } else {
            mask.leading_ones()
        };
        joined >= MIN || has_run_within(mask, MIN)
    }
}

/// Does `mask` have `min` (1..=64) consecutive set bits?
#[inline]
#[must_use]
pub fn has_run_within(mut mask: u64, min: u32) -> bool {
    // After each step, bit i is set when bits i..i+len are all set.
    let mut len = 1;
    while len * 2 <= min {
        mask &= mask >> len;
        len *= 2;
    }
    if len < min {
        mask &= mask >> (min - len);
    }
    mask != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic byte soup weighted towards the interesting classes.
    fn soup(seed: u32, len: usize) -> Vec<u8> {
        let alphabet = b"aZq09-_+/ \n.:\x00\x80\xffAz@[`{";
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                if state.is_multiple_of(4) {
                    (state >> 8) as u8
                } else {
                    alphabet[(state as usize >> 3) % alphabet.len()]
                }
            })
            .collect()
    }

    #[test]
    fn simd_and_portable_agree_on_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        for block in all.chunks(BLOCK) {
            assert_eq!(classify(block), classify_portable(block));
        }
        for seed in 1..200 {
            let bytes = soup(seed, BLOCK);
            assert_eq!(classify(&bytes), classify_portable(&bytes), "seed {seed}");
        }
    }

    #[test]
    fn letter_masks_agree() {
        let all: Vec<u8> = (0..=255u8).collect();
        for symbols in [&b""[..], b".", b"./<[", b"\x00\x7f"] {
            for block in all.chunks(BLOCK) {
                assert_eq!(
                    letters_symbols(block, symbols),
                    letters_symbols_portable(block, symbols)
                );
            }
            for seed in 1..100 {
                let bytes = soup(seed, BLOCK);
                assert_eq!(
                    letters_symbols(&bytes, symbols),
                    letters_symbols_portable(&bytes, symbols)
                );
            }
        }
        for block in all.chunks(BLOCK) {
            assert_eq!(whitespace(block), whitespace_portable(block));
        }
    }

    fn longest_run(bits: &[bool]) -> usize {
        let (mut best, mut cur) = (0, 0);
        for &b in bits {
            cur = if b { cur + 1 } else { 0 };
            best = best.max(cur);
        }
        best
    }

    #[test]
    fn run_finder_matches_a_plain_count_across_blocks() {
        for seed in 1..300u32 {
            let len = 1 + (seed as usize * 37) % 400;
            let bytes: Vec<u8> = soup(seed, len)
                .into_iter()
                .map(|b| if b % 7 == 0 { b' ' } else { b'a' })
                .collect();
            let plain: Vec<bool> = bytes.iter().map(|b| *b == b'a').collect();
            fn check<const MIN: u32>(bytes: &[u8], plain: &[bool], seed: u32) {
                let mut finder = RunFinder::<MIN>::default();
                let mut found = false;
                for_each_block(bytes, |_, c| found |= finder.push(c.letter));
                assert_eq!(
                    found,
                    longest_run(plain) >= MIN as usize,
                    "seed {seed} min {MIN}"
                );
            }
            check::<1>(&bytes, &plain, seed);
            check::<2>(&bytes, &plain, seed);
            check::<9>(&bytes, &plain, seed);
            check::<16>(&bytes, &plain, seed);
            check::<20>(&bytes, &plain, seed);
            check::<63>(&bytes, &plain, seed);
            check::<64>(&bytes, &plain, seed);
        }
    }

    #[test]
    fn runs_within_a_word() {
        assert!(has_run_within(0b1111_0000, 4));
        assert!(!has_run_within(0b1110_0111, 4));
        assert!(has_run_within(u64::MAX, 64));
        assert!(!has_run_within(u64::MAX >> 1, 64));
    }
}
