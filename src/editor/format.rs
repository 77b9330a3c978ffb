//! Numbers as the editors write them: milliseconds with one decimal, percentages, ages, and
//! "—" for anything not known yet. Plain functions, shared by both editors' view models.

/// What the editors show for a value that is not known (yet).
pub const UNKNOWN: &str = "—";

/// Nanoseconds as milliseconds with one decimal, without a unit: `12.3`.
pub fn ms(ns: i64) -> String {
    let v = ns as f64 / 1e6;
    // Avoid "-0.0" for tiny negative values.
    if v.abs() < 0.05 {
        return "0.0".into();
    }
    format!("{v:.1}")
}

/// Nanoseconds as milliseconds with one decimal and the unit: `12.3 ms`.
pub fn ms_unit(ns: i64) -> String {
    format!("{} ms", ms(ns))
}

/// An optional duration, or [`UNKNOWN`].
pub fn opt_ms(ns: Option<i64>) -> String {
    ns.map_or_else(|| UNKNOWN.into(), ms)
}

/// A clock offset: always signed, in ms below 10 s and in seconds above (offsets between two
/// machines' session clocks can be anything): `+3.2 ms`, `-0.4 ms`, `+3612.35 s`.
pub fn offset(ns: i64) -> String {
    let v = ns as f64;
    if v.abs() >= 10e9 {
        format!("{:+.2} s", v / 1e9)
    } else if (v / 1e6).abs() < 0.05 {
        "±0.0 ms".into()
    } else {
        format!("{:+.1} ms", v / 1e6)
    }
}

/// An error bound: `±0.4 ms`.
pub fn bound(ns: u64) -> String {
    format!("±{} ms", ms(ns.min(i64::MAX as u64) as i64))
}

/// A percentage with one decimal, without the sign: `1.5`.
pub fn pct(p: f64) -> String {
    if !p.is_finite() {
        return UNKNOWN.into();
    }
    format!("{:.1}", p.clamp(0.0, 100.0))
}

/// A rate with no decimals above 10 and one below: `120`, `4.5`.
pub fn rate(r: f64) -> String {
    if !r.is_finite() || r < 0.0 {
        return UNKNOWN.into();
    }
    if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// Time since something happened: `0.2 s`, `14 s`, `3 min`, `2 h`.
pub fn age(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.0} h", s / 3600.0)
    }
}

/// How often something repeats, in words: `every second`, `every 2 s`, `every 0.5 s`.
pub fn every(period_ns: u64) -> String {
    let s = period_ns as f64 / 1e9;
    if period_ns == 1_000_000_000 {
        "every second".into()
    } else if (s - s.round()).abs() < 1e-9 {
        format!("every {s:.0} s")
    } else {
        format!("every {s} s")
    }
}

/// A count with thin groups of thousands: `1 234 567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

/// Drift in parts per million, signed: `+1.2 ppm`.
pub fn ppm(p: f64) -> String {
    if !p.is_finite() {
        return UNKNOWN.into();
    }
    format!("{p:+.1} ppm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_have_one_decimal() {
        assert_eq!(ms(12_345_678), "12.3");
        assert_eq!(ms(12_350_001), "12.4");
        assert_eq!(ms(-20_000), "0.0", "no negative zero");
        assert_eq!(ms(-1_500_000), "-1.5");
        assert_eq!(ms_unit(5_000_000), "5.0 ms");
        assert_eq!(opt_ms(None), UNKNOWN);
        assert_eq!(opt_ms(Some(120_300_000)), "120.3");
    }

    #[test]
    fn offsets_are_signed_and_change_unit_when_huge() {
        assert_eq!(offset(3_200_000), "+3.2 ms");
        assert_eq!(offset(-400_000), "-0.4 ms");
        assert_eq!(offset(10_000), "±0.0 ms");
        assert_eq!(offset(3_612_346_000_000), "+3612.35 s");
        assert_eq!(offset(-12_000_000_000), "-12.00 s");
        assert_eq!(bound(400_000), "±0.4 ms");
        assert_eq!(bound(u64::MAX), bound(i64::MAX as u64));
    }

    #[test]
    fn percentages_rates_ages_counts() {
        assert_eq!(pct(1.25), "1.2");
        assert_eq!(pct(150.0), "100.0");
        assert_eq!(pct(f64::NAN), UNKNOWN);
        assert_eq!(rate(123.4), "123");
        assert_eq!(rate(4.46), "4.5");
        assert_eq!(rate(-1.0), UNKNOWN);
        assert_eq!(age(200_000_000), "0.2 s");
        assert_eq!(age(14_000_000_000), "14 s");
        assert_eq!(age(180_000_000_000), "3 min");
        assert_eq!(age(10_800_000_000_000), "3 h");
        assert_eq!(every(1_000_000_000), "every second");
        assert_eq!(every(2_000_000_000), "every 2 s");
        assert_eq!(every(250_000_000), "every 0.25 s");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1\u{2009}234\u{2009}567");
        assert_eq!(ppm(1.23), "+1.2 ppm");
    }
}
