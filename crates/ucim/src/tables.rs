//! The human-readable tables `ucim admin` and `ucim whoami` print (`--json` prints the data as is).

use ipc::{InstanceInfo, TicketInfo, UserInfo};

pub fn users(users: &[UserInfo]) {
    println!("{:<32} {:<16} {:>8}  {:<12} EXPIRES", "UCLOUD USER", "UNIX USER", "UID", "SOURCE");
    for u in users {
        println!("{:<32} {:<16} {:>8}  {:<12} {}", u.ucloud_user, u.unix_user, u.uid, u.source, when(u.expires_at));
    }
}

pub fn connections(users: &[UserInfo], tickets: &[TicketInfo]) {
    self::users(users);
    println!();
    if tickets.is_empty() {
        println!("No open connect tickets.");
        return;
    }
    println!("{:<32} {:<24} EXPIRES", "OPEN TICKET FOR", "ISSUED");
    for t in tickets {
        println!("{:<32} {:<24} {}", t.ucloud_user, when(Some(t.created_at)), when(Some(t.expires_at)));
    }
}

pub fn instances(list: &[InstanceInfo]) {
    println!("{:<16} {:>8} {:>6} {:>8} {:>10} {:>10}", "UNIX USER", "UID", "PORT", "PID", "UP", "IDLE");
    for i in list {
        let pid = i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<16} {:>8} {:>6} {:>8} {:>10} {:>10}",
            i.unix_user,
            i.uid,
            i.port,
            pid,
            duration(i.up_secs),
            duration(i.idle_secs)
        );
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM UTC`; `never` for none.
fn when(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "never".into() };
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(when(Some(0)), "1970-01-01 00:00 UTC");
        assert_eq!(when(Some(1_795_521_600_000)), "2026-11-24 12:00 UTC");
        assert_eq!(when(Some(951_782_400_000)), "2000-02-29 00:00 UTC");
        assert_eq!(when(None), "never");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(61), "1m01s");
        assert_eq!(duration(7322), "2h02m");
    }
}
