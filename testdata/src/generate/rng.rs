//! Seeded random streams, the few distributions the generator needs, and civil-date arithmetic.
//!
//! Every random draw comes from a ChaCha8 stream keyed by `(seed, stream, key)`: one stream per
//! participant and purpose (demographics, clinical history, surveys, wearables, genome), one per
//! variant, one per planted group. Nothing depends on thread scheduling or chunk boundaries, so
//! the same seed and arguments give the same bytes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Independent purposes of randomness; each participant gets one stream per purpose, so one
/// purpose (say demographics) can be recomputed without replaying the others.
pub mod stream {
    pub const DEMOGRAPHICS: u64 = 1;
    pub const CLINICAL: u64 = 2;
    pub const SURVEY: u64 = 3;
    pub const FITBIT: u64 = 4;
    pub const GENOME: u64 = 5;
    pub const VARIANT_CATALOG: u64 = 6;
    pub const VARIANT_CALLS: u64 = 7;
    pub const PLANTED: u64 = 8;
}

/// The SplitMix64 finalizer: a cheap, well-mixing 64-bit hash.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random stream for `(seed, stream, key)`.
pub fn rng_for(seed: u64, stream: u64, key: u64) -> ChaCha8Rng {
    let a = mix64(seed ^ mix64(stream));
    let b = mix64(a ^ key);
    let c = mix64(b.rotate_left(17) ^ stream);
    let d = mix64(c ^ key.rotate_left(29));
    let mut bytes = [0u8; 32];
    for (i, w) in [a, b, c, d].into_iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    ChaCha8Rng::from_seed(bytes)
}

pub type Rand = ChaCha8Rng;

pub fn uniform(rng: &mut Rand) -> f64 {
    rng.random::<f64>()
}

pub fn chance(rng: &mut Rand, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// Uniform integer in `lo..=hi` (`lo` when the range is empty).
pub fn int_in(rng: &mut Rand, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

pub fn normal(rng: &mut Rand, mean: f64, sd: f64) -> f64 {
    let u1 = rng.random::<f64>().max(1e-300);
    let u2 = rng.random::<f64>();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub fn normal_clamped(rng: &mut Rand, mean: f64, sd: f64, lo: f64, hi: f64) -> f64 {
    normal(rng, mean, sd).clamp(lo, hi)
}

/// Exponential waiting time with the given rate (events per unit).
pub fn exponential(rng: &mut Rand, rate: f64) -> f64 {
    -(1.0 - rng.random::<f64>()).ln() / rate
}

pub fn poisson(rng: &mut Rand, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        return normal(rng, lambda, lambda.sqrt()).round().max(0.0) as u32;
    }
    let limit = (-lambda).exp();
    let mut k = 0u32;
    let mut p = rng.random::<f64>();
    while p > limit {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}

pub fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Index drawn with probability proportional to `weights`.
pub fn weighted_index(rng: &mut Rand, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// One of `items`, with probability proportional to the second field.
pub fn pick<'a, T>(rng: &mut Rand, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

// ------------------------------------------------------------------------------------------------
// Dates: days since 1970-01-01 (Arrow Date32) and microseconds since the epoch (Timestamp µs).
// ------------------------------------------------------------------------------------------------

pub const MICROS_PER_SEC: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub const fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

/// `(year, month, day)` of days since 1970-01-01.
pub const fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i32 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day of the week, 0 = Monday … 6 = Sunday.
pub const fn weekday(day: i32) -> u32 {
    // 1970-01-01 was a Thursday.
    ((day + 3).rem_euclid(7)) as u32
}

pub fn month_of(day: i32) -> u32 {
    civil_from_days(day).1
}

/// Timestamp (µs) of `secs` seconds after midnight of `day`.
pub fn at(day: i32, secs: i64) -> i64 {
    day as i64 * MICROS_PER_DAY + secs * MICROS_PER_SEC
}

/// Whole years between two dates (age on `on` of someone born on `born`).
pub fn years_between(born: i32, on: i32) -> i32 {
    let (by, bm, bd) = civil_from_days(born);
    let (y, m, d) = civil_from_days(on);
    let mut age = y - by;
    if (m, d) < (bm, bd) {
        age -= 1;
    }
    age
}

pub const fn years(n: f64) -> i32 {
    (n * 365.25) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in (-40_000..40_000).step_by(37) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(
            weekday(days_from_civil(2023, 7, 3)),
            0,
            "2023-07-03 is a Monday"
        );
        assert_eq!(
            years_between(days_from_civil(1950, 6, 15), days_from_civil(2023, 6, 14)),
            72
        );
        assert_eq!(
            years_between(days_from_civil(1950, 6, 15), days_from_civil(2023, 6, 15)),
            73
        );
    }

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let a: u64 = rng_for(1, 2, 3).random();
        let b: u64 = rng_for(1, 2, 3).random();
        let c: u64 = rng_for(1, 2, 4).random();
        let d: u64 = rng_for(1, 3, 3).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
