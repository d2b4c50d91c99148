//! Finding long runs of one byte class quickly: sample every `min/2`-th byte, since any run of
//! `min` bytes covers two consecutive samples, and measure a run only where both samples are
//! in the class. Used by DLP (long token runs) and decoding (long base64 runs).

/// Is there a run of at least `min` consecutive bytes for which `in_class` holds?
#[must_use]
pub fn has_run(bytes: &[u8], min: usize, in_class: impl Fn(u8) -> bool) -> bool {
    if min <= 1 {
        return min == 0 || bytes.iter().any(|b| in_class(*b));
    }
    let stride = min / 2;
    let len = bytes.len();
    let mut k = 0; // the sample at k·stride is paired with the one at (k+1)·stride
    while k * stride < len {
        let here = k * stride;
        let there = here + stride;
        if there < len && !in_class(bytes[there]) {
            // Neither pair (k, k+1) nor (k+1, k+2) can lie inside one run.
            k += 2;
            continue;
        }
        let upto = there.min(len - 1);
        if (here..=upto).rev().all(|i| in_class(bytes[i])) {
            let mut start = here;
            while start > 0 && in_class(bytes[start - 1]) {
                start -= 1;
            }
            let mut end = upto + 1;
            while end < len && in_class(bytes[end]) {
                end += 1;
            }
            if end - start >= min {
                return true;
            }
        }
        k += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::has_run;

    #[test]
    fn finds_runs_at_every_offset_and_length() {
        for min in [2usize, 3, 16, 24, 25] {
            for len in min.saturating_sub(2)..min + 3 {
                for offset in 0..(2 * min) {
                    let text = format!("{}{} tail", " ".repeat(offset), "a".repeat(len));
                    assert_eq!(
                        has_run(text.as_bytes(), min, |b| b == b'a'),
                        len >= min,
                        "min {min} len {len} offset {offset}"
                    );
                    let text = format!("{}{}", ". ".repeat(offset), "a".repeat(len));
                    assert_eq!(has_run(text.as_bytes(), min, |b| b == b'a'), len >= min);
                }
            }
        }
        assert!(!has_run(b"", 4, |_| true));
    }
}
