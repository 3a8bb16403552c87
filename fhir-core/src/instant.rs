//! FHIR dates and instants: parsing a (possibly partial) date into the time range it covers,
//! and formatting the instants the server writes (`meta.lastUpdated`).

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The current time, truncated to the millisecond precision the server stores.
pub fn now() -> OffsetDateTime {
    truncate_to_millis(OffsetDateTime::now_utc())
}

pub fn truncate_to_millis(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_nanosecond(t.millisecond() as u32 * 1_000_000).unwrap_or(t)
}

/// Formats an instant as FHIR `instant` text in UTC with milliseconds: `2024-01-02T03:04:05.678Z`.
pub fn format_instant(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Milliseconds since the Unix epoch, the integer form the projections store and compare.
pub fn unix_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_unix_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(millis as i128 * 1_000_000).ok()
}

/// An RFC 7231 HTTP-date (`Last-Modified`), always in GMT.
pub fn http_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month() as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses an IMF-fixdate HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`), the form clients must send.
pub fn parse_http_date(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    PrimitiveDateTime::parse(text.trim(), &format).ok().map(PrimitiveDateTime::assume_utc)
}

/// The half-open range `[start, end)` covered by a FHIR date, dateTime or instant at its precision:
/// `2020` covers the whole year, `2020-03-04T10:00` the minute. A missing time zone means UTC.
pub fn parse_range(text: &str) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let (date_part, time_part) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut fields = date_part.split('-');
    let year: i32 = parse_digits(fields.next()?, 4)?;
    let month = match fields.next() {
        Some(text) => Some(parse_digits::<u8>(text, 2)?),
        None => None,
    };
    let day = match fields.next() {
        Some(text) => Some(parse_digits::<u8>(text, 2)?),
        None => None,
    };
    if fields.next().is_some() || (day.is_some() && month.is_none()) {
        return None;
    }
    let month_value = Month::try_from(month.unwrap_or(1)).ok()?;
    let date = Date::from_calendar_date(year, month_value, day.unwrap_or(1)).ok()?;
    let Some(time_part) = time_part else {
        let start = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc();
        let end = match (month, day) {
            (None, _) => PrimitiveDateTime::new(Date::from_calendar_date(year + 1, Month::January, 1).ok()?, Time::MIDNIGHT).assume_utc(),
            (Some(_), None) => {
                let (next_year, next_month) = if month_value == Month::December { (year + 1, Month::January) } else { (year, month_value.next()) };
                PrimitiveDateTime::new(Date::from_calendar_date(next_year, next_month, 1).ok()?, Time::MIDNIGHT).assume_utc()
            }
            (Some(_), Some(_)) => start + Duration::days(1),
        };
        return Some((start, end));
    };
    day?;
    let (clock, offset) = split_offset(time_part)?;
    let mut clock_fields = clock.split(':');
    let hour: u8 = parse_digits(clock_fields.next()?, 2)?;
    let minute: u8 = parse_digits(clock_fields.next()?, 2)?;
    let (second, fraction, precision) = match clock_fields.next() {
        None => (0u8, 0u32, Duration::minutes(1)),
        Some(seconds) => {
            let (whole, fraction) = match seconds.split_once('.') {
                Some((whole, fraction)) => (whole, Some(fraction)),
                None => (seconds, None),
            };
            let second: u8 = parse_digits(whole, 2)?;
            match fraction {
                None => (second, 0, Duration::seconds(1)),
                Some(fraction) => {
                    if fraction.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
                    (second, nanos, Duration::nanoseconds(10i64.pow(9 - fraction.len() as u32)))
                }
            }
        }
    };
    if clock_fields.next().is_some() {
        return None;
    }
    let time = Time::from_hms_nano(hour, minute, second, fraction).ok()?;
    let start = PrimitiveDateTime::new(date, time).assume_offset(offset).to_offset(UtcOffset::UTC);
    Some((start, start + precision))
}

fn split_offset(time_part: &str) -> Option<(&str, UtcOffset)> {
    if let Some(clock) = time_part.strip_suffix('Z') {
        return Some((clock, UtcOffset::UTC));
    }
    let sign_at = time_part.rfind(['+', '-']);
    let Some(sign_at) = sign_at else {
        return Some((time_part, UtcOffset::UTC));
    };
    let (clock, zone) = time_part.split_at(sign_at);
    let sign: i8 = if zone.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = zone[1..].split_once(':')?;
    let hours: i8 = parse_digits(hours, 2)?;
    let minutes: i8 = parse_digits(minutes, 2)?;
    let offset = UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?;
    Some((clock, offset))
}

fn parse_digits<T: std::str::FromStr>(text: &str, width: usize) -> Option<T> {
    if text.len() != width || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn year_covers_the_whole_year() {
        let (start, end) = parse_range("2020").unwrap();
        assert_eq!(start, datetime!(2020-01-01 0:00 UTC));
        assert_eq!(end, datetime!(2021-01-01 0:00 UTC));
    }

    #[test]
    fn month_and_day_precision() {
        assert_eq!(parse_range("2020-12").unwrap(), (datetime!(2020-12-01 0:00 UTC), datetime!(2021-01-01 0:00 UTC)));
        assert_eq!(parse_range("2020-02-28").unwrap(), (datetime!(2020-02-28 0:00 UTC), datetime!(2020-02-29 0:00 UTC)));
    }

    #[test]
    fn instants_with_offsets_and_fractions() {
        let (start, end) = parse_range("2020-03-04T10:00:00.5+02:00").unwrap();
        assert_eq!(start, datetime!(2020-03-04 8:00:00.5 UTC));
        assert_eq!(end - start, Duration::milliseconds(100));
        let (start, end) = parse_range("2020-03-04T10:00Z").unwrap();
        assert_eq!(end - start, Duration::minutes(1));
        assert_eq!(start, datetime!(2020-03-04 10:00 UTC));
    }

    #[test]
    fn rejects_malformed_dates() {
        for bad in ["", "20", "2020-13", "2020-02-30", "2020-1-01", "2020-01-01T", "2020-01-01T25:00Z", "2020--01", "abcd", "2020-01-01T10:00:00.Z"] {
            assert!(parse_range(bad).is_none(), "{bad} should be rejected");
        }
    }

    #[test]
    fn formats_round_trip() {
        let t = datetime!(2024-01-02 03:04:05.678 UTC);
        assert_eq!(format_instant(t), "2024-01-02T03:04:05.678Z");
        assert_eq!(parse_range(&format_instant(t)).unwrap().0, t);
        assert_eq!(http_date(t), "Tue, 02 Jan 2024 03:04:05 GMT");
        assert_eq!(parse_http_date("Tue, 02 Jan 2024 03:04:05 GMT").unwrap(), datetime!(2024-01-02 03:04:05 UTC));
        assert_eq!(from_unix_millis(unix_millis(t)).unwrap(), t);
    }
}
