//! The parts of one presigned request: its part (key, upload id, number,
//! headers), its time stamp, and the escaping and hex the signature is made of.

use super::*;

/// A part to sign, as this module signs it.
pub(super) struct Request<'a> {
    pub(super) key: &'a str,
    pub(super) upload_id: &'a str,
    pub(super) part_number: u32,
    pub(super) content_length: Option<u64>,
    pub(super) checksum: Option<(ChecksumAlgorithm, &'a str)>,
}

impl<'a> Request<'a> {
    /// The part, unless the SDK must handle it: what it refuses (a key that is
    /// empty or all white space, as `str::trim` has it; an empty upload id), and
    /// what it would sign differently (a length past `i64`, a header value it
    /// would trim or refuse).
    pub(super) fn new(p: &PartToSign<'a>) -> Option<Self> {
        let checksum = p.checksum.map(|(alg, c)| (alg, c.as_str()));
        let plain = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic());
        if p.key.as_str().trim().is_empty()
            || p.upload_id.is_empty()
            || p.content_length.is_some_and(|n| i64::try_from(n).is_err())
            || checksum.is_some_and(|(_, v)| !plain(v))
        {
            return None;
        }
        Some(Self {
            key: p.key.as_str(),
            upload_id: p.upload_id,
            part_number: p.number.get(),
            content_length: p.content_length,
            checksum,
        })
    }

    /// The signed headers, sorted, and escaped for the query.
    pub(super) fn signed_headers(&self) -> (&'static str, &'static str) {
        use ChecksumAlgorithm::{Crc32c, Sha256};
        match (self.content_length.is_some(), self.checksum.map(|c| c.0)) {
            (false, None) => ("host", "host"),
            (true, None) => ("content-length;host", "content-length%3Bhost"),
            (false, Some(Sha256)) => ("host;x-amz-checksum-sha256", "host%3Bx-amz-checksum-sha256"),
            (true, Some(Sha256)) => (
                "content-length;host;x-amz-checksum-sha256",
                "content-length%3Bhost%3Bx-amz-checksum-sha256",
            ),
            (false, Some(Crc32c)) => ("host;x-amz-checksum-crc32c", "host%3Bx-amz-checksum-crc32c"),
            (true, Some(Crc32c)) => (
                "content-length;host;x-amz-checksum-crc32c",
                "content-length%3Bhost%3Bx-amz-checksum-crc32c",
            ),
        }
    }
}

/// The signing time, as SigV4 writes it (UTC, whole seconds).
pub(super) struct Stamp {
    pub(super) time: SystemTime,
    /// Days since 1970-01-01.
    pub(super) day: u64,
    /// `yyyymmddThhmmssZ`.
    pub(super) date_time: [u8; 16],
}

impl Stamp {
    /// `None` before 1970 or after 9999 (left to the SDK).
    pub(super) fn new(time: SystemTime) -> Option<Self> {
        let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let (day, second) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(day);
        if y > 9999 {
            return None;
        }
        let mut date_time = *b"00000000T000000Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                date_time[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y);
        put(4, 2, m);
        put(6, 2, d);
        put(9, 2, second / 3600);
        put(11, 2, second / 60 % 60);
        put(13, 2, second % 60);
        Some(Self {
            time,
            day,
            date_time,
        })
    }

    pub(super) fn date_time(&self) -> &str {
        std::str::from_utf8(&self.date_time).expect("ASCII digits")
    }

    pub(super) fn date(&self) -> &str {
        &self.date_time()[..8]
    }
}

/// The proleptic Gregorian (year, month, day) of a day since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub(super) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

pub(super) fn escape(s: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(s, set).to_string()
}

/// Appends to `s`, returning where the appended text is.
pub(super) fn push_with(
    s: &mut String,
    f: impl FnOnce(&mut String) -> fmt::Result,
) -> Range<usize> {
    let start = s.len();
    f(s).expect("writing to a String cannot fail");
    start..s.len()
}

pub(super) fn hex(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}
