//! `Range: bytes=…` for a single range (RFC 9110 §14). Several ranges are answered with the
//! whole file, which the RFC allows and no phone needs more than.

/// What to send for a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole body (no header, a header we ignore, or several ranges).
    Full,
    /// Bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416: the range starts past the end.
    Unsatisfiable,
}

/// Interprets a `Range` header value for a body of `len` bytes.
pub fn interpret(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        (false, Some(start), end) if b.trim().is_empty() || end.is_some() => {
            if start >= len {
                return RangeAnswer::Unsatisfiable;
            }
            let end = end.map_or(len - 1, |e| e.min(len - 1));
            if end < start {
                RangeAnswer::Full
            } else {
                RangeAnswer::Partial { start, end }
            }
        }
        _ => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;
    use proptest::prelude::*;

    #[test]
    fn single_ranges() {
        assert_eq!(interpret(None, 10), Full);
        assert_eq!(
            interpret(Some("bytes=0-3"), 10),
            Partial { start: 0, end: 3 }
        );
        assert_eq!(
            interpret(Some("bytes=5-"), 10),
            Partial { start: 5, end: 9 }
        );
        assert_eq!(
            interpret(Some("bytes=-4"), 10),
            Partial { start: 6, end: 9 }
        );
        assert_eq!(
            interpret(Some("bytes=-40"), 10),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(
            interpret(Some("bytes=8-100"), 10),
            Partial { start: 8, end: 9 }
        );
        assert_eq!(interpret(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(interpret(Some("bytes=-0"), 10), Unsatisfiable);
    }

    #[test]
    fn what_we_ignore() {
        for h in [
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=5-2",
            "bytes=x-1",
            "bytes=",
            "bytes=1",
            "bytes=+1-2",
        ] {
            assert_eq!(interpret(Some(h), 10), Full, "{h}");
        }
    }

    proptest! {
        #[test]
        fn partial_ranges_are_inside_the_body(h in "bytes=[0-9 -]{0,12}", len in 0u64..100) {
            if let Partial { start, end } = interpret(Some(&h), len) {
                prop_assert!(start <= end && end < len);
            }
        }
    }
}
