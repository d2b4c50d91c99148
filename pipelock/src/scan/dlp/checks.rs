//! Checksums and structure checks that turn a regex match into a confident finding: Luhn for
//! card numbers (plus issuer prefixes), ISO 13616 mod-97 for IBANs, SSA rules for SSNs, and
//! Base58Check for Bitcoin WIF keys.

use sha2::{Digest, Sha256};

use super::rules::Check;

/// Whether `matched` passes `check`.
#[must_use]
pub fn passes(check: Check, matched: &str) -> bool {
    match check {
        Check::Luhn => card_number(matched),
        Check::Mod97 => iban(matched),
        Check::Ssn => ssn(matched),
        Check::Wif => wif(matched),
        Check::Aba => aba(matched),
    }
}

/// ABA routing number: 9 digits, 3·(d1+d4+d7) + 7·(d2+d5+d8) + (d3+d6+d9) ≡ 0 (mod 10).
fn aba(text: &str) -> bool {
    let d: Vec<u32> = digits(text).into_iter().map(u32::from).collect();
    d.len() == 9
        && (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8])
            .is_multiple_of(10)
}

fn digits(text: &str) -> Vec<u8> {
    text.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// Luhn checksum over 13–19 digits with a known issuer prefix.
fn card_number(text: &str) -> bool {
    let digits = digits(text);
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|d| *d == digits[0]) {
        return false;
    }
    let prefix = |n: usize| -> u32 {
        digits[..n]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
    };
    let issuer = digits[0] == 4 // Visa
        || (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) // Mastercard
        || matches!(prefix(2), 34 | 37) // Amex
        || prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)) // Discover
        || prefix(2) == 35 // JCB
        || matches!(prefix(2), 30 | 36 | 38) // Diners
        || prefix(2) == 62; // UnionPay
    if !issuer {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1.
fn iban(text: &str) -> bool {
    let compact: Vec<u8> = text.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u32 = 0;
    for b in rotated {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// Area not 000, 666 or 9xx; group not 00; serial not 0000.
fn ssn(text: &str) -> bool {
    let d = digits(text);
    if d.len() != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    area != 0 && area != 666 && area < 900 && d[3..5] != [0, 0] && d[5..] != [0, 0, 0, 0]
}

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Base58Check with version byte 0x80 and a 32-byte key (optionally with the 0x01
/// compression flag).
fn wif(text: &str) -> bool {
    let Some(bytes) = base58_decode(text) else {
        return false;
    };
    if !(bytes.len() == 37 || bytes.len() == 38) || bytes[0] != 0x80 {
        return false;
    }
    if bytes.len() == 38 && bytes[33] != 0x01 {
        return false;
    }
    let (payload, checksum) = bytes.split_at(bytes.len() - 4);
    let hash = Sha256::digest(Sha256::digest(payload));
    hash[..4] == *checksum
}

fn base58_decode(text: &str) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(40);
    for c in text.bytes() {
        let mut carry = u32::try_from(BASE58.iter().position(|b| *b == c)?).ok()?;
        for byte in out.iter_mut().rev() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
        if out.len() > 64 {
            return None;
        }
    }
    let zeros = text.bytes().take_while(|b| *b == b'1').count();
    let mut result = vec![0u8; zeros];
    result.extend(out);
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_cards() {
        assert!(card_number("4111 1111 1111 1111"));
        assert!(card_number("5500-0000-0000-0004"));
        assert!(card_number("378282246310005"));
        assert!(!card_number("4111 1111 1111 1112"));
        assert!(!card_number("1234567812345670")); // Luhn-valid, no issuer
        assert!(!card_number("0000000000000000"));
    }

    #[test]
    fn ibans() {
        assert!(iban("DE89370400440532013000"));
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban("DE89370400440532013001"));
        assert!(!iban("DE8937"));
    }

    #[test]
    fn ssns() {
        assert!(ssn("123-45-6789"));
        assert!(!ssn("000-12-3456"));
        assert!(!ssn("666-12-3456"));
        assert!(!ssn("912-12-3456"));
        assert!(!ssn("123-00-6789"));
        assert!(!ssn("123-45-0000"));
    }

    #[test]
    fn aba_numbers() {
        assert!(aba("011000015"));
        assert!(!aba("011000016"));
    }

    #[test]
    fn wif_keys() {
        // The well-known example WIF key from the Bitcoin wiki.
        assert!(wif("5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ"));
        assert!(!wif("5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTK"));
        assert!(!wif("not base58 0OIl"));
    }
}
