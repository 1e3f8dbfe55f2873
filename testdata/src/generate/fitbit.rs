//! Fitbit data for the participants who shared it (~15%): daily activity, heart-rate zones and
//! sleep over a few weeks, sleep levels for the last nights, and minute-level heart rate and
//! steps for one sampled day (whose daily step total is the sum of its minutes). About 30% wear
//! a device without a heart-rate sensor: no heart-rate rows, and "classic" sleep levels
//! (asleep/restless/awake) instead of stages (deep/light/rem/wake).
//!
//! Activity follows the participant's activity trait, age, BMI and chronic conditions, so that
//! steps relate to health outcomes the way they do in real cohorts.

use super::ehr::{Health, Physiology, Traits};
use super::ids::*;
use super::people::Demographics;
use super::rng::{Rand, at, chance, int_in, normal, normal_clamped, poisson, uniform, weekday};
use super::tables::ChunkTables;

struct Night {
    day: i32,
    stages: bool,
    /// Start of the main sleep, seconds relative to midnight of `day` (negative: the evening
    /// before).
    bedtime: i64,
    segments: Vec<(&'static str, i64)>,
    in_bed: i64,
}

impl Night {
    fn minutes(&self, level: &str) -> i64 {
        self.segments
            .iter()
            .filter(|s| s.0 == level)
            .map(|s| s.1)
            .sum()
    }

    /// Minutes in bed not asleep.
    fn awake(&self) -> i64 {
        if self.stages {
            self.minutes("wake")
        } else {
            self.minutes("awake") + self.minutes("restless")
        }
    }
}

/// Sleep levels of one night: stages in ~90-minute cycles (deep sleep early, REM late), or
/// the classic asleep/restless/awake levels of devices without a heart-rate sensor.
fn sleep_segments(rng: &mut Rand, in_bed: i64, stages: bool) -> Vec<(&'static str, i64)> {
    let mut out: Vec<(&'static str, i64)> = Vec::new();
    let mut left = in_bed;
    let mut elapsed = 0i64;
    let mut push = |level: &'static str, minutes: i64, left: &mut i64, elapsed: &mut i64| {
        let m = minutes.clamp(1, (*left).max(1));
        if *left <= 0 {
            return;
        }
        out.push((level, m));
        *left -= m;
        *elapsed += m;
    };
    if !stages {
        push("awake", int_in(rng, 2, 12), &mut left, &mut elapsed);
        while left > 0 {
            push("asleep", int_in(rng, 20, 120), &mut left, &mut elapsed);
            if chance(rng, 0.7) {
                push("restless", int_in(rng, 1, 6), &mut left, &mut elapsed);
            } else {
                push("awake", int_in(rng, 1, 8), &mut left, &mut elapsed);
            }
        }
        return out;
    }
    push("wake", int_in(rng, 2, 12), &mut left, &mut elapsed);
    while left > 0 {
        let early = elapsed < in_bed / 2;
        push("light", int_in(rng, 15, 40), &mut left, &mut elapsed);
        push(
            "deep",
            if early {
                int_in(rng, 15, 35)
            } else {
                int_in(rng, 3, 12)
            },
            &mut left,
            &mut elapsed,
        );
        push("light", int_in(rng, 8, 20), &mut left, &mut elapsed);
        push(
            "rem",
            if early {
                int_in(rng, 6, 15)
            } else {
                int_in(rng, 15, 35)
            },
            &mut left,
            &mut elapsed,
        );
        if chance(rng, 0.5) {
            push("wake", int_in(rng, 1, 6), &mut left, &mut elapsed);
        }
    }
    out
}

/// What holds for every day of one participant's wear period.
struct Wearer {
    pid: i64,
    start: i32,
    end: i32,
    age: f64,
    male: bool,
    steps_mean: f64,
    max_hr: f64,
    sleep_mean: f64,
    wears_at_night: bool,
    heart_rate: bool,
    intraday_day: i32,
}

impl Wearer {
    fn draw(rng: &mut Rand, d: &Demographics, t: &Traits, h: &Health) -> Wearer {
        let last = d.last_day();
        let days = int_in(rng, 14, 60) as i32;
        let end = int_in(rng, (d.enroll - 365).min(last) as i64, last as i64) as i32;
        let age = d.age_on(end) as f64;
        let sick = h.chronic_count_by(end) as f64;
        let limiting = [COPD, EMPHYSEMA, CONGESTIVE_HEART_FAILURE, OSTEOARTHRITIS]
            .iter()
            .filter(|c| h.has_by(**c, end))
            .count() as f64;
        let steps_mean = ((8.95 + 0.3 * t.activity - 0.01 * (age - 45.0).max(0.0)).exp()
            * (1.0 - 0.05 * sick).max(0.5)
            * (1.0 - 0.15 * limiting).max(0.4))
        .clamp(800.0, 22_000.0);
        let start = end - days + 1;
        let sleep_mean = normal_clamped(rng, 445.0, 35.0, 330.0, 560.0);
        let wears_at_night = chance(rng, 0.8);
        let heart_rate = chance(rng, 0.7);
        let intraday_day = int_in(rng, start as i64, end as i64) as i32;
        Wearer {
            pid: d.pid,
            start,
            end,
            age,
            male: !d.female,
            steps_mean,
            max_hr: (220.0 - age).max(120.0),
            sleep_mean,
            wears_at_night,
            heart_rate,
            intraday_day,
        }
    }

    /// The main sleep ending on the morning of `day`.
    fn draw_night(&self, rng: &mut Rand, day: i32) -> Night {
        let in_bed = normal_clamped(rng, self.sleep_mean, 45.0, 180.0, 720.0).round() as i64;
        let bedtime = int_in(rng, -105 * 60, 30 * 60) - 60 * 60;
        let segments = sleep_segments(rng, in_bed, self.heart_rate);
        Night {
            day,
            stages: self.heart_rate,
            bedtime,
            segments,
            in_bed,
        }
    }

    /// The day's step count: the sampled day is built minute by minute (writing its intraday
    /// rows), so that its total is the sum of its minutes; other days come from the daily model.
    fn steps(
        &self,
        rng: &mut Rand,
        t: &Traits,
        day: i32,
        wake_secs: i64,
        out: &mut ChunkTables,
    ) -> i64 {
        let weekend = if weekday(day) >= 5 { 0.85 } else { 1.0 };
        let steps = (self.steps_mean * weekend * normal(rng, 0.0, 0.3).exp()).round() as i64;
        if day != self.intraday_day {
            return steps;
        }
        let hr = self.heart_rate.then_some((t.resting_hr, self.max_hr));
        intraday(rng, self.pid, day, wake_secs.max(4 * 3600), hr, steps, out)
    }
}

/// Minutes of each activity level in one day, following its step count.
struct Active {
    steps: i64,
    very: i64,
    fairly: i64,
    lightly: i64,
    sedentary: i64,
    floors: i64,
}

fn draw_active(rng: &mut Rand, steps: i64, asleep: i64) -> Active {
    let s = steps as f64;
    let very = ((s - 6_500.0) / 320.0 + normal(rng, 0.0, 5.0))
        .round()
        .clamp(0.0, 240.0) as i64;
    let fairly = ((s - 3_000.0) / 550.0 + normal(rng, 0.0, 4.0))
        .round()
        .clamp(0.0, 180.0) as i64;
    let lightly = (110.0 + s / 55.0 + normal(rng, 0.0, 35.0))
        .round()
        .clamp(20.0, 500.0) as i64;
    Active {
        steps,
        very,
        fairly,
        lightly,
        sedentary: (1_440 - very - fairly - lightly - asleep).max(0),
        floors: poisson(rng, s / 1_500.0) as i64,
    }
}

/// Appends the participant's wearable rows.
pub fn generate(rng: &mut Rand, d: &Demographics, t: &Traits, h: &Health, out: &mut ChunkTables) {
    let w = Wearer::draw(rng, d, t, h);
    let p = Physiology { d, t, h };
    let mut nights: Vec<Night> = Vec::new();
    let mut naps: Vec<(i32, i64, i64, i64)> = Vec::new();
    for day in w.start..=w.end {
        if !chance(rng, 0.93) {
            continue;
        }
        let bmi = p.bmi(rng, day);
        let weight = p.weight(bmi);
        let sex = if w.male { 5.0 } else { -161.0 };
        let bmr = 10.0 * weight + 6.25 * t.height_cm - 5.0 * w.age + sex;

        let night = (w.wears_at_night && chance(rng, 0.9)).then(|| w.draw_night(rng, day));
        let asleep = night.as_ref().map(|n| n.in_bed - n.awake()).unwrap_or(0);
        // The fallback is drawn whether or not it is used, which keeps the random stream (and
        // so the generated bytes) as they were.
        let wake_secs = night
            .as_ref()
            .map(|n| n.bedtime + n.in_bed * 60)
            .unwrap_or(int_in(rng, 6 * 3600, 8 * 3600));

        let steps = w.steps(rng, t, day, wake_secs, out);
        let active = draw_active(rng, steps, asleep);
        let scale = weight / 70.0;
        append_activity_summary(rng, out, w.pid, day, &active, scale, bmr);
        // Zone minutes are drawn for every device, so the stream does not depend on the sensor.
        let zone_minutes = draw_zone_minutes(rng, w.wears_at_night, &active);
        if w.heart_rate {
            append_heart_rate_zones(out, w.pid, day, w.max_hr, zone_minutes, scale);
        }
        nights.extend(night);
        // An afternoon nap now and then (recorded only by devices with a heart-rate sensor).
        if w.heart_rate && chance(rng, 0.06) {
            let in_bed = int_in(rng, 20, 90);
            let asleep = (in_bed as f64 * uniform(rng).mul_add(0.1, 0.82)).round() as i64;
            naps.push((day, in_bed, asleep, int_in(rng, 0, 5)));
        }
    }
    append_sleep(out, w.pid, &nights, naps);
}

fn append_activity_summary(
    rng: &mut Rand,
    out: &mut ChunkTables,
    pid: i64,
    day: i32,
    m: &Active,
    scale: f64,
    bmr: f64,
) {
    let activity_calories =
        ((m.very as f64 * 9.5 + m.fairly as f64 * 6.0 + m.lightly as f64 * 3.2) * scale).round();
    let a = &mut out.activity_summary;
    a.person_id.append_value(pid);
    a.date.append_value(day);
    a.activity_calories.append_value(activity_calories);
    a.calories_bmr.append_value(bmr.round());
    a.calories_out
        .append_value((bmr + activity_calories + normal(rng, 60.0, 25.0)).round());
    a.elevation
        .append_value((m.floors as f64 * 3.048 * 100.0).round() / 100.0);
    a.fairly_active_minutes.append_value(m.fairly);
    a.floors.append_value(m.floors);
    a.lightly_active_minutes.append_value(m.lightly);
    a.marginal_calories
        .append_value((activity_calories * 0.56).round());
    a.sedentary_minutes.append_value(m.sedentary);
    a.steps.append_value(m.steps);
    a.very_active_minutes.append_value(m.very);
}

/// Minutes in the out-of-range, fat-burn, cardio and peak zones.
fn draw_zone_minutes(rng: &mut Rand, wears_at_night: bool, m: &Active) -> [i64; 4] {
    let worn = if wears_at_night { 1_380 } else { 960 } + int_in(rng, -60, 40);
    let (very, fairly, lightly) = (m.very as f64, m.fairly as f64, m.lightly as f64);
    let peak = (very / 7.0 + normal(rng, 0.0, 1.5))
        .round()
        .clamp(0.0, 90.0) as i64;
    let cardio = (very * 0.55 + fairly * 0.25 + normal(rng, 0.0, 3.0))
        .round()
        .clamp(0.0, 200.0) as i64;
    let fat_burn = (fairly * 0.8 + lightly * 0.2 + normal(rng, 0.0, 8.0))
        .round()
        .clamp(0.0, 400.0) as i64;
    let out_of_range = (worn - peak - cardio - fat_burn).max(0);
    [out_of_range, fat_burn, cardio, peak]
}

/// Heart-rate zones with Fitbit's default bounds from the age-predicted maximum.
fn append_heart_rate_zones(
    out: &mut ChunkTables,
    pid: i64,
    day: i32,
    max_hr: f64,
    [out_of_range, fat_burn, cardio, peak]: [i64; 4],
    scale: f64,
) {
    let zone = |f: f64| (f * max_hr).round() as i64;
    let zones = [
        ("Out of Range", 30, zone(0.5) - 1, out_of_range, 1.25),
        ("Fat Burn", zone(0.5), zone(0.7) - 1, fat_burn, 5.5),
        ("Cardio", zone(0.7), zone(0.85) - 1, cardio, 8.6),
        ("Peak", zone(0.85), max_hr.round() as i64 + 10, peak, 11.2),
    ];
    let hr = &mut out.heart_rate_summary;
    for (name, lo, hi, minutes, per_minute) in zones {
        hr.person_id.append_value(pid);
        hr.date.append_value(day);
        hr.zone_name.append_value(name);
        hr.min_heart_rate.append_value(lo);
        hr.max_heart_rate.append_value(hi);
        hr.minute_count.append_value(minutes);
        hr.calorie_count
            .append_value((minutes as f64 * per_minute * scale * 100.0).round() / 100.0);
    }
}

/// Main sleeps: daily summaries from the stages; stage-level rows for the last three nights.
/// Naps (not main sleeps) are merged in by date.
fn append_sleep(
    out: &mut ChunkTables,
    pid: i64,
    nights: &[Night],
    naps: Vec<(i32, i64, i64, i64)>,
) {
    let detailed_from = nights.len().saturating_sub(3);
    let mut naps = naps.into_iter().peekable();
    for (i, n) in nights.iter().enumerate() {
        while let Some(nap) = naps.next_if(|nap| nap.0 < n.day) {
            append_nap(out, pid, nap);
        }
        append_main_sleep(out, pid, n);
        if i >= detailed_from {
            append_sleep_levels(out, pid, n);
        }
    }
    for nap in naps {
        append_nap(out, pid, nap);
    }
}

fn append_main_sleep(out: &mut ChunkTables, pid: i64, n: &Night) {
    let awake = n.awake();
    let after_wakeup = n
        .segments
        .last()
        .filter(|s| s.0 == "wake" || s.0 == "awake")
        .map(|s| s.1)
        .unwrap_or(0);
    let s = &mut out.sleep_daily_summary;
    s.person_id.append_value(pid);
    s.sleep_date.append_value(n.day);
    s.is_main_sleep.append_value(true);
    s.minute_in_bed.append_value(n.in_bed);
    s.minute_asleep.append_value(n.in_bed - awake);
    s.minute_after_wakeup.append_value(after_wakeup);
    if n.stages {
        let wake = n.minutes("wake");
        s.minute_awake.append_value(wake);
        s.minute_restless.append_value(0);
        s.minute_deep.append_value(n.minutes("deep"));
        s.minute_light.append_value(n.minutes("light"));
        s.minute_rem.append_value(n.minutes("rem"));
        s.minute_wake.append_value(wake);
    } else {
        s.minute_awake.append_value(n.minutes("awake"));
        s.minute_restless.append_value(n.minutes("restless"));
        s.minute_deep.append_null();
        s.minute_light.append_null();
        s.minute_rem.append_null();
        s.minute_wake.append_null();
    }
}

fn append_sleep_levels(out: &mut ChunkTables, pid: i64, n: &Night) {
    let mut clock = n.bedtime;
    let l = &mut out.sleep_level;
    for &(level, minutes) in &n.segments {
        l.person_id.append_value(pid);
        l.sleep_date.append_value(n.day);
        l.is_main_sleep.append_value(true);
        l.level.append_value(level);
        l.start_datetime.append_value(at(n.day, clock));
        l.duration_in_min.append_value(minutes);
        clock += minutes * 60;
    }
}

fn append_nap(
    out: &mut ChunkTables,
    pid: i64,
    (day, in_bed, asleep, restless): (i32, i64, i64, i64),
) {
    let s = &mut out.sleep_daily_summary;
    s.person_id.append_value(pid);
    s.sleep_date.append_value(day);
    s.is_main_sleep.append_value(false);
    s.minute_in_bed.append_value(in_bed);
    s.minute_asleep.append_value(asleep);
    s.minute_after_wakeup.append_value(0);
    s.minute_awake.append_value(in_bed - asleep);
    s.minute_restless.append_value(restless);
    s.minute_deep.append_null();
    s.minute_light.append_null();
    s.minute_rem.append_null();
    s.minute_wake.append_null();
}

/// Minute-level steps and heart rate (`(resting, maximum)` when the device measures it) of one
/// day, from waking until bedtime. Returns the day's step count.
fn intraday(
    rng: &mut Rand,
    pid: i64,
    day: i32,
    wake_secs: i64,
    heart_rate: Option<(f64, f64)>,
    target_steps: i64,
    out: &mut ChunkTables,
) -> i64 {
    let first = (wake_secs / 60).clamp(4 * 60, 10 * 60);
    let last = int_in(rng, 21 * 60 + 30, 23 * 60 + 45);
    let n = (last - first + 1) as usize;
    let mut steps = vec![0i64; n];
    // Background shuffling.
    for s in steps.iter_mut() {
        if chance(rng, 0.22) {
            *s = int_in(rng, 1, 28);
        }
    }
    let background: i64 = steps.iter().sum();
    // Walks and runs until the day's target is reached.
    let mut total = background;
    let mut guard = 0;
    while total < target_steps && guard < 200 {
        guard += 1;
        let len = int_in(rng, 3, 25) as usize;
        let begin = int_in(rng, 0, n as i64 - 1) as usize;
        let cadence = if chance(rng, 0.08) {
            int_in(rng, 140, 175)
        } else {
            int_in(rng, 85, 122)
        };
        for s in steps.iter_mut().skip(begin).take(len) {
            let add = cadence + int_in(rng, -8, 8) - *s;
            if add > 0 {
                *s += add;
                total += add;
            }
        }
    }
    // Off the wrist for a shower and for charging.
    let gap_start = int_in(rng, 0, n as i64 - 1) as usize;
    let gap_len = int_in(rng, 15, 45) as usize;
    let charge_start = int_in(rng, 0, n as i64 - 1) as usize;
    let charge_len = int_in(rng, 45, 120) as usize;
    let (resting_hr, max_hr) = heart_rate.unwrap_or((60.0, 180.0));
    let mut hr = resting_hr + 6.0;
    for (i, s) in steps.iter().enumerate() {
        let minute = first + i as i64;
        let secs = minute * 60;
        if *s > 0 {
            out.steps_intraday.person_id.append_value(pid);
            out.steps_intraday.datetime.append_value(at(day, secs));
            out.steps_intraday.steps.append_value(*s);
        }
        let target = resting_hr + 6.0 + (*s as f64 - 20.0).max(0.0) * 0.45;
        hr = 0.72 * hr + 0.28 * target.min(max_hr) + normal(rng, 0.0, 2.0);
        if heart_rate.is_none()
            || (gap_start..gap_start + gap_len).contains(&i)
            || (charge_start..charge_start + charge_len).contains(&i)
        {
            continue;
        }
        out.heart_rate_minute_level.person_id.append_value(pid);
        out.heart_rate_minute_level
            .datetime
            .append_value(at(day, secs));
        out.heart_rate_minute_level
            .heart_rate_value
            .append_value(hr.round().clamp(35.0, 220.0) as i64);
    }
    steps.iter().sum()
}
