//! XML Schema `dateTime` (the form RFC 4745 §7.3 validity uses, e.g.
//! `2024-06-01T08:00:00+02:00`) to Unix seconds, without a date library.

/// Unix seconds of an `xs:dateTime`; fractions are dropped, a missing zone is UTC.
/// `None` for anything malformed or before 1970.
pub fn parse_date_time(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't'])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = num(d.next()?, 4)?;
    let month: i64 = num(d.next()?, 2)?;
    let day: i64 = num(d.next()?, 2)?;
    let time_len = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(time_len);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':');
    let hour: i64 = num(t.next()?, 2)?;
    let minute: i64 = num(t.next()?, 2)?;
    let second: i64 = num(t.next()?, 2)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 24
        || minute > 59
        || second > 60
    {
        return None;
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z.get(1..)?.split_once(':')?;
            sign * (num::<i64>(h, 2)? * 3600 + num::<i64>(m, 2)? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs).ok()
}

fn num<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_offset_date_times_give_unix_seconds() {
        assert_eq!(parse_date_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date_time("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            parse_date_time("2024-06-01T10:00:00+02:00"),
            parse_date_time("2024-06-01T08:00:00Z")
        );
        assert_eq!(
            parse_date_time("2024-06-01T08:00:00.250-01:30"),
            parse_date_time("2024-06-01T09:30:00Z")
        );
    }

    #[test]
    fn malformed_date_times_are_none() {
        for bad in [
            "",
            "2024-06-01",
            "2024-13-01T00:00:00Z",
            "24-06-01T00:00:00Z",
            "2024-06-01T00:00Z",
            "1969-12-31T23:59:59Z",
            "2024-06-01T00:00:00+0200",
        ] {
            assert_eq!(parse_date_time(bad), None, "{bad}");
        }
    }
}
