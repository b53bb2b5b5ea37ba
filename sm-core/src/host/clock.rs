//! UTC calendar time for the timestamps we write (SMlog lines, XenAPI dates), without a date
//! crate: days since the epoch to a civil date (H. Hinnant's algorithm).

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC date and time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// Year (e.g. 2026).
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of the month, 1..=31.
    pub day: u32,
    /// Hour, 0..=23.
    pub hour: u32,
    /// Minute, 0..=59.
    pub minute: u32,
    /// Second, 0..=59.
    pub second: u32,
}

impl Utc {
    /// The time `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: u64) -> Utc {
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let rem = u32::try_from(secs % 86_400).unwrap_or(0);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
        let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// Now.
    pub fn now() -> Utc {
        Utc::from_unix(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    /// XenAPI's date form, `YYYYMMDDTHH:MM:SSZ`.
    pub fn xenapi(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(Utc::from_unix(0).xenapi(), "19700101T00:00:00Z");
        assert_eq!(Utc::from_unix(951_782_400).xenapi(), "20000229T00:00:00Z");
        assert_eq!(Utc::from_unix(1_795_000_000).xenapi(), "20261118T11:06:40Z");
    }
}
