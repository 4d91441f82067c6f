//! Budget periods in a time zone, as [start, end) in Unix milliseconds.

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    /// A fixed window [window_start_ms, window_end_ms).
    Fixed,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Fixed => "fixed",
        }
    }
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "daily" => Some(Period::Daily),
            "weekly" => Some(Period::Weekly),
            "monthly" => Some(Period::Monthly),
            "fixed" => Some(Period::Fixed),
            _ => None,
        }
    }
}

pub fn parse_tz(tz: &str) -> Option<Tz> {
    tz.parse::<Tz>().ok()
}

fn local_midnight_ms(tz: Tz, d: NaiveDate) -> Option<u64> {
    let naive = d.and_hms_opt(0, 0, 0)?;
    // A DST gap at midnight: take the first instant that exists.
    let dt = tz.from_local_datetime(&naive).earliest().or_else(|| {
        tz.from_local_datetime(&(naive + Duration::hours(1))).earliest()
    })?;
    u64::try_from(dt.timestamp_millis()).ok()
}

/// The period containing `at_ms`. For `Fixed`, the window itself, or `None`
/// when `at_ms` is outside it.
pub fn bounds(period: Period, tz: Tz, window: Option<(u64, u64)>, at_ms: u64) -> Option<(u64, u64)> {
    if period == Period::Fixed {
        let (s, e) = window?;
        return (s <= at_ms && at_ms < e).then_some((s, e));
    }
    let utc = chrono::DateTime::from_timestamp_millis(i64::try_from(at_ms).ok()?)?;
    let local = utc.with_timezone(&tz).date_naive();
    let (start, next) = match period {
        Period::Daily => (local, local.succ_opt()?),
        Period::Weekly => {
            let monday = local - Duration::days(i64::from(local.weekday().num_days_from_monday()));
            (monday, monday + Duration::days(7))
        }
        Period::Monthly => {
            let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1)?;
            let next = if local.month() == 12 {
                NaiveDate::from_ymd_opt(local.year() + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(local.year(), local.month() + 1, 1)?
            };
            (first, next)
        }
        Period::Fixed => return None,
    };
    Some((local_midnight_ms(tz, start)?, local_midnight_ms(tz, next)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis() as u64
    }

    #[test]
    fn monthly_in_a_time_zone() {
        let tz = parse_tz("Europe/Paris").unwrap();
        // 2026-11-30 23:30 UTC is already December 1st in Paris.
        let (s, e) = bounds(Period::Monthly, tz, None, ms("2026-11-30T23:30:00Z")).unwrap();
        assert_eq!(s, ms("2026-11-30T23:00:00Z"));
        assert_eq!(e, ms("2026-12-31T23:00:00Z"));
    }

    #[test]
    fn daily_weekly_utc_and_dst() {
        let utc = parse_tz("UTC").unwrap();
        assert_eq!(
            bounds(Period::Daily, utc, None, ms("2026-11-28T17:00:00Z")),
            Some((ms("2026-11-28T00:00:00Z"), ms("2026-11-29T00:00:00Z")))
        );
        // Saturday 2026-11-28 -> week from Monday 2026-11-23
        assert_eq!(
            bounds(Period::Weekly, utc, None, ms("2026-11-28T17:00:00Z")),
            Some((ms("2026-11-23T00:00:00Z"), ms("2026-11-30T00:00:00Z")))
        );
        // The day DST starts in New York is 23 hours long.
        let ny = parse_tz("America/New_York").unwrap();
        let (s, e) = bounds(Period::Daily, ny, None, ms("2026-03-08T12:00:00Z")).unwrap();
        assert_eq!(e - s, 23 * 3600 * 1000);
    }

    #[test]
    fn fixed_window() {
        let utc = parse_tz("UTC").unwrap();
        assert_eq!(bounds(Period::Fixed, utc, Some((10, 20)), 15), Some((10, 20)));
        assert_eq!(bounds(Period::Fixed, utc, Some((10, 20)), 20), None);
        assert!(parse_tz("Mars/Olympus").is_none());
    }
}
