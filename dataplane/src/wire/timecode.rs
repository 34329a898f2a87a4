//! The floating-point encodings of IGMPv3's Max Resp Code (RFC 3376 §4.1.1) and QQIC
//! (§4.1.7): below 128 the code is the value; from 128 up it is `1 exp(3) mant(4)` meaning
//! `(mant | 0x10) << (exp + 3)`, up to 31744.
//!
//! Decoding is exact. Encoding cannot always be: values in the float range fall between codes.
//! Every code decodes to a strictly larger value than the one before, so both roundings are
//! well defined; [`encode_floor`] (largest code ≤ value) and [`encode_ceil`] (smallest code ≥
//! value, 0xff if above 31744) are both offered. The builders use floor for Max Resp (hosts then
//! answer no later than our own timers assume) and ceil for QQI (other queriers then wait at least
//! our real interval before declaring us gone).

use core::time::Duration;

/// Largest value a code can carry: code 0xff.
pub const MAX_VALUE: u32 = 31744;

/// The value of a code (RFC 3376 §4.1.1 / §4.1.7).
pub const fn decode(code: u8) -> u32 {
    if code < 128 {
        code as u32
    } else {
        let exp = (code >> 4) & 0x07;
        let mant = code & 0x0f;
        ((mant as u32) | 0x10) << (exp + 3)
    }
}

/// The largest code whose value is ≤ `value` (values above 31744 give 0xff).
pub const fn encode_floor(value: u32) -> u8 {
    if value < 128 {
        return value as u8;
    }
    if value >= MAX_VALUE {
        return 0xff;
    }
    // value in [128 << e, 256 << e): bit length is 8 + e.
    let bits = 32 - value.leading_zeros();
    let exp = bits - 8;
    let mant = (value >> (exp + 3)) - 16;
    0x80 | ((exp as u8) << 4) | (mant as u8)
}

/// The smallest code whose value is ≥ `value` (values above 31744 saturate at 0xff).
pub const fn encode_ceil(value: u32) -> u8 {
    let c = encode_floor(value);
    if decode(c) < value && c < 0xff {
        c + 1
    } else {
        c
    }
}

/// Max response time of a query of the given generation from its code: v1 queries carry 0 and
/// mean 10 s (RFC 2236 §4 / RFC 3376 §7.3.1), v2 codes are linear tenths, v3 codes are floats.
pub fn max_resp_time(version: super::IgmpVersion, code: u8) -> Duration {
    let tenths = match version {
        super::IgmpVersion::V1 => 100,
        super::IgmpVersion::V2 => u64::from(code),
        super::IgmpVersion::V3 => u64::from(decode(code)),
    };
    Duration::from_millis(tenths * 100)
}

/// Max Resp Code for a duration, rounded down to a representable value (see module doc).
pub fn max_resp_code(version: super::IgmpVersion, d: Duration) -> u8 {
    let tenths = u32::try_from(d.as_millis() / 100).unwrap_or(u32::MAX);
    match version {
        super::IgmpVersion::V1 => 0,
        super::IgmpVersion::V2 => u8::try_from(tenths).unwrap_or(u8::MAX),
        super::IgmpVersion::V3 => encode_floor(tenths),
    }
}

/// Querier's query interval from QQIC; `None` for 0 (RFC 3376 §4.1.7 leaves 0 meaningless).
pub fn qqi_from_code(code: u8) -> Option<Duration> {
    match decode(code) {
        0 => None,
        s => Some(Duration::from_secs(u64::from(s))),
    }
}

/// QQIC for an interval, rounded up (whole seconds first, then to a representable value).
pub fn qqi_code(d: Duration) -> u8 {
    let mut secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        secs += 1;
    }
    encode_ceil(u32::try_from(secs).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::super::IgmpVersion;
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(decode(0), 0);
        assert_eq!(decode(100), 100);
        assert_eq!(decode(127), 127);
        assert_eq!(decode(0x80), 128);
        assert_eq!(decode(0x8f), 248);
        assert_eq!(decode(0x90), 256);
        assert_eq!(decode(0xff), MAX_VALUE);
        // 125 s QQI as Linux sends it is linear.
        assert_eq!(encode_floor(125), 125);
    }

    #[test]
    fn monotonic_and_round_trips() {
        for c in 0..255u8 {
            assert!(decode(c) < decode(c + 1), "code {c}");
        }
        for c in 0..=255u8 {
            assert_eq!(encode_floor(decode(c)), c);
            assert_eq!(encode_ceil(decode(c)), c);
        }
    }

    #[test]
    fn rounding_brackets_every_value() {
        for v in 0..=MAX_VALUE + 10 {
            let f = encode_floor(v);
            let c = encode_ceil(v);
            assert!(decode(f) <= v || v < decode(0));
            if f < 0xff {
                assert!(decode(f + 1) > v);
            }
            if v <= MAX_VALUE {
                assert!(decode(c) >= v);
                if c > 0 {
                    assert!(decode(c - 1) < v);
                }
            } else {
                assert_eq!(c, 0xff);
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(max_resp_time(IgmpVersion::V1, 0), Duration::from_secs(10));
        assert_eq!(max_resp_time(IgmpVersion::V2, 100), Duration::from_secs(10));
        assert_eq!(
            max_resp_time(IgmpVersion::V3, 0x8f),
            Duration::from_millis(24800)
        );
        assert_eq!(max_resp_code(IgmpVersion::V3, Duration::from_secs(10)), 100);
        assert_eq!(
            max_resp_code(IgmpVersion::V3, Duration::from_millis(25500)),
            0x8f
        );
        assert_eq!(max_resp_code(IgmpVersion::V2, Duration::from_secs(60)), 255);
        assert_eq!(qqi_from_code(125), Some(Duration::from_secs(125)));
        assert_eq!(qqi_from_code(0), None);
        assert_eq!(qqi_code(Duration::from_secs(130)), 0x81); // 130 → 136
        assert_eq!(qqi_code(Duration::from_millis(124_100)), 125);
    }
}
