//! Replies and argument parsing with Redis's exact reply kinds and error
//! texts, so clients and scripts behave as they do against Redis.

use crate::wire::{redis_reply::Kind, RedisReplies, RedisReply};

pub type Reply = RedisReply;

pub fn ok() -> Reply {
    status("OK")
}

pub fn status(s: &str) -> Reply {
    RedisReply {
        kind: Some(Kind::Status(s.to_string())),
    }
}

pub fn error(s: impl Into<String>) -> Reply {
    RedisReply {
        kind: Some(Kind::Error(s.into())),
    }
}

pub fn int(n: i64) -> Reply {
    RedisReply {
        kind: Some(Kind::Integer(n)),
    }
}

pub fn bulk(b: impl Into<Vec<u8>>) -> Reply {
    RedisReply {
        kind: Some(Kind::Bulk(b.into().into())),
    }
}

pub fn nil() -> Reply {
    RedisReply {
        kind: Some(Kind::Nil(true)),
    }
}

pub fn array(items: Vec<Reply>) -> Reply {
    RedisReply {
        kind: Some(Kind::Array(RedisReplies {
            items,
            aborted: false,
        })),
    }
}

pub fn bulk_or_nil(v: Option<impl Into<Vec<u8>>>) -> Reply {
    v.map_or_else(nil, bulk)
}

pub fn is_error(r: &Reply) -> bool {
    matches!(r.kind, Some(Kind::Error(_)))
}

pub fn wrong_args(name: &str) -> Reply {
    error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

pub fn syntax() -> Reply {
    error("ERR syntax error")
}

pub fn not_integer() -> Reply {
    error("ERR value is not an integer or out of range")
}

pub fn not_float() -> Reply {
    error("ERR value is not a valid float")
}

pub fn overflow() -> Reply {
    error("ERR increment or decrement would overflow")
}

pub fn invalid_expire(name: &str) -> Reply {
    error(format!(
        "ERR invalid expire time in '{}' command",
        name.to_ascii_lowercase()
    ))
}

pub fn too_large() -> Reply {
    error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

/// A 64-bit integer as Redis reads one (`string2ll`): an optional `-`,
/// digits, no leading zeros, spaces or `+`, within range.
pub fn parse_int(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    if b == b"-0" {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A float as Redis reads one for INCRBYFLOAT (`string2ld`): no spaces,
/// not NaN.
pub fn parse_float(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.trim() != s {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    if lower.contains("nan") {
        return None;
    }
    let v: f64 = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => lower.parse().ok()?,
    };
    Some(v)
}

/// A float as INCRBYFLOAT writes it: the shortest form that reads back
/// the same, without an exponent (as Redis's `%.17Lg` trimmed, for the
/// values people add).
pub fn format_float(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e17 {
        return format!("{}", v as i128);
    }
    format!("{v}")
}

pub fn upper(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_as_redis_reads_them() {
        for (s, v) in [
            ("0", Some(0)),
            ("-12", Some(-12)),
            ("9223372036854775807", Some(i64::MAX)),
        ] {
            assert_eq!(parse_int(s.as_bytes()), v, "{s}");
        }
        for s in [
            "",
            "-",
            "+1",
            " 1",
            "1 ",
            "01",
            "-0",
            "1.5",
            "9223372036854775808",
            "abc",
        ] {
            assert_eq!(parse_int(s.as_bytes()), None, "{s}");
        }
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn floats_parse_and_print_as_incrbyfloat_does() {
        assert_eq!(parse_float(b"10.5"), Some(10.5));
        assert_eq!(parse_float(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(format_float(5000.0), "5000");
        assert_eq!(format_float(10.5), "10.5");
        assert_eq!(format_float(-0.1), "-0.1");
    }
}
