//! BIP-39 seed phrases (`seed_phrase_detection`): runs of words from the BIP-39 English word
//! list, 12 to 24 long, whose last word's checksum bits match the SHA-256 of the entropy the
//! other words encode. The checksum makes a false positive on ordinary text a 1-in-16 (for 12
//! words) to 1-in-256 (24 words) chance *given* a run of list words, which prose almost never
//! has.
//!
//! The word list is the standard English list from BIP-39 (`bip39-english.txt`, 2048 words).

use sha2::{Digest, Sha256};

use super::finding::{redact, Finding, ScannerKind};
use crate::config::{SeedPhraseDetection, Severity};

const WORDLIST: &str = include_str!("bip39-english.txt");
/// The phrase lengths BIP-39 defines.
const LENGTHS: [usize; 5] = [24, 21, 18, 15, 12];

/// The seed phrase detector for one config.
#[derive(Debug)]
pub struct SeedPhrases {
    /// The words packed into `u64`s (up to 8 ASCII bytes), in list order (which is sorted).
    packed: Vec<u64>,
    /// For each two-letter prefix (`aa`..`zz`), the range of `packed` starting with it.
    buckets: Vec<(u16, u16)>,
    min_words: usize,
    verify_checksum: bool,
}

/// A word of the text that is on the list: its list index and byte range.
#[derive(Debug, Clone, Copy)]
struct Word {
    index: u16,
    start: usize,
    end: usize,
}

impl SeedPhrases {
    /// Builds the detector; `min_words` is clamped to 12..=24.
    #[must_use]
    pub fn new(config: &SeedPhraseDetection) -> Self {
        let packed: Vec<u64> = WORDLIST.lines().map(|w| pack(w.as_bytes())).collect();
        let mut buckets = vec![(0u16, 0u16); 26 * 26];
        for (i, word) in WORDLIST.lines().enumerate() {
            let (Some(bucket), Ok(i)) = (bucket_of(word.as_bytes()), u16::try_from(i)) else {
                continue;
            };
            let entry = &mut buckets[bucket];
            if entry.0 == entry.1 {
                *entry = (i, i + 1);
            } else {
                entry.1 = i + 1;
            }
        }
        Self {
            packed,
            buckets,
            min_words: usize::try_from(config.min_words)
                .unwrap_or(12)
                .clamp(12, 24),
            verify_checksum: config.verify_checksum,
        }
    }

    /// Every seed phrase in `text`.
    #[must_use]
    pub fn scan(&self, text: &str, view: &'static str) -> Vec<Finding> {
        let mut findings = Vec::new();
        // First pass, allocation-free: find stretches of at least `min_words` words of 3 to 8
        // letters (every list word is one). Most text has none; only stretches are tokenized
        // again and looked up in the list.
        let bytes = text.as_bytes();
        let (mut count, mut stretch_start, mut stretch_end) = (0usize, 0usize, 0usize);
        let mut i = 0;
        while i < bytes.len() {
            if !bytes[i].is_ascii_alphabetic() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            if (3..=8).contains(&(i - start)) {
                if count == 0 {
                    stretch_start = start;
                }
                count += 1;
                stretch_end = i;
            } else {
                if count >= self.min_words {
                    self.check_stretch(text, stretch_start..stretch_end, view, &mut findings);
                }
                count = 0;
            }
        }
        if count >= self.min_words {
            self.check_stretch(text, stretch_start..stretch_end, view, &mut findings);
        }
        findings
    }

    /// Looks up the words of a stretch and checks each run of list words in it.
    fn check_stretch(
        &self,
        text: &str,
        stretch: std::ops::Range<usize>,
        view: &'static str,
        findings: &mut Vec<Finding>,
    ) {
        let bytes = text.as_bytes();
        let mut run: Vec<Word> = Vec::new();
        let mut i = stretch.start;
        while i < stretch.end {
            if !bytes[i].is_ascii_alphabetic() {
                i += 1;
                continue;
            }
            let start = i;
            while i < stretch.end && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            match self.lookup(&text[start..i]) {
                Some(index) => run.push(Word {
                    index,
                    start,
                    end: i,
                }),
                None => {
                    self.check_run(text, &run, view, findings);
                    run.clear();
                }
            }
        }
        self.check_run(text, &run, view, findings);
    }

    fn lookup(&self, word: &str) -> Option<u16> {
        let bytes = word.as_bytes();
        if !(3..=8).contains(&bytes.len()) {
            return None;
        }
        let mut lower = [0u8; 8];
        for (slot, b) in lower.iter_mut().zip(bytes) {
            *slot = b.to_ascii_lowercase();
        }
        let lower = &lower[..bytes.len()];
        let (start, end) = self.buckets[bucket_of(lower)?];
        let key = pack(lower);
        let slice = &self.packed[usize::from(start)..usize::from(end)];
        let at = slice.binary_search(&key).ok()?;
        u16::try_from(at).ok().map(|at| start + at)
    }

    /// Reports the longest valid phrase at each position of a run of list words.
    fn check_run(&self, text: &str, run: &[Word], view: &'static str, findings: &mut Vec<Finding>) {
        if run.len() < self.min_words {
            return;
        }
        let mut at = 0;
        while at + self.min_words <= run.len() {
            let found = LENGTHS
                .iter()
                .filter(|len| **len >= self.min_words && at + **len <= run.len())
                .find(|len| !self.verify_checksum || checksum_ok(&run[at..at + **len]));
            match found {
                Some(&len) => {
                    let span = run[at].start..run[at + len - 1].end;
                    findings.push(Finding {
                        rule_id: "dlp.bip39_seed_phrase".to_string(),
                        rule_name: format!("BIP-39 Seed Phrase ({len} words)"),
                        scanner: ScannerKind::Dlp,
                        severity: Severity::Critical,
                        preview: redact(&text[span.clone()]),
                        span,
                        view,
                    });
                    at += len;
                }
                None => at += 1,
            }
        }
    }
}

/// Up to 8 ASCII bytes as a big-endian `u64`, so numeric order is lexicographic order.
fn pack(word: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    for (slot, b) in buf.iter_mut().zip(word) {
        *slot = *b;
    }
    u64::from_be_bytes(buf)
}

/// The bucket of a lowercase word by its first two letters.
fn bucket_of(word: &[u8]) -> Option<usize> {
    match word {
        [a @ b'a'..=b'z', b @ b'a'..=b'z', ..] => {
            Some(usize::from(a - b'a') * 26 + usize::from(b - b'a'))
        }
        _ => None,
    }
}

/// Whether the words' checksum bits match SHA-256 of the entropy they encode.
fn checksum_ok(words: &[Word]) -> bool {
    let n = words.len();
    let total_bits = n * 11;
    let checksum_bits = total_bits / 33;
    let entropy_bits = total_bits - checksum_bits;
    let mut bits = Vec::with_capacity(total_bits);
    for word in words {
        for shift in (0..11).rev() {
            bits.push((word.index >> shift) & 1 == 1);
        }
    }
    let entropy: Vec<u8> = bits[..entropy_bits]
        .chunks(8)
        .map(|byte| {
            byte.iter()
                .fold(0u8, |acc, bit| (acc << 1) | u8::from(*bit))
        })
        .collect();
    let hash = Sha256::digest(&entropy);
    (0..checksum_bits).all(|i| {
        let expected = (hash[i / 8] >> (7 - i % 8)) & 1 == 1;
        expected == bits[entropy_bits + i]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BIP-39 test vector for all-zero 128-bit entropy.
    const VALID_12: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    /// The BIP-39 test vector for all-0x7f 256-bit entropy.
    const VALID_24: &str = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title";

    fn detector() -> SeedPhrases {
        SeedPhrases::new(&SeedPhraseDetection::default())
    }

    #[test]
    fn the_word_list_is_the_standard_one() {
        assert_eq!(WORDLIST.lines().count(), 2048);
        let digest = Sha256::digest(WORDLIST.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"
        );
    }

    #[test]
    fn every_list_word_is_found_at_its_index() {
        let d = detector();
        for (i, word) in WORDLIST.lines().enumerate() {
            assert_eq!(d.lookup(word).map(usize::from), Some(i), "{word}");
            assert_eq!(
                d.lookup(&word.to_uppercase()).map(usize::from),
                Some(i),
                "{word}"
            );
        }
        for word in ["the", "xylophone", "ab", "zzzz", "abandons"] {
            assert_eq!(d.lookup(word), None, "{word}");
        }
    }

    #[test]
    fn valid_phrases_are_found_in_any_case_and_separator() {
        let d = detector();
        for text in [
            VALID_12.to_string(),
            VALID_12.to_uppercase(),
            VALID_12.replace(' ', ","),
            VALID_12.replace(' ', "-"),
            format!("my wallet: {VALID_24}\nthanks"),
        ] {
            let found = d.scan(&text, "raw");
            assert_eq!(found.len(), 1, "{text}");
            assert!(
                !found[0].preview.contains("abandon abandon"),
                "{}",
                found[0].preview
            );
        }
        assert!(d.scan(VALID_24, "raw")[0].rule_name.contains("24 words"));
    }

    #[test]
    fn wrong_checksums_and_short_runs_are_not_phrases() {
        let d = detector();
        let bad = VALID_12.replace("about", "abandon");
        assert!(d.scan(&bad, "raw").is_empty());
        let eleven = VALID_12.split_once(' ').map_or("", |(_, rest)| rest);
        assert!(d.scan(eleven, "raw").is_empty());
        assert!(d
            .scan(
                "The quarterly report shows revenue grew in every region.",
                "raw"
            )
            .is_empty());
        let unchecked = SeedPhrases::new(&SeedPhraseDetection {
            verify_checksum: false,
            ..SeedPhraseDetection::default()
        });
        assert_eq!(unchecked.scan(&bad, "raw").len(), 1);
    }
}
