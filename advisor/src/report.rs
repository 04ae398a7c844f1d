//! The HTML report: one self-contained file (inline SVG and CSS, no script, nothing
//! fetched). Per key: the trace's request rate, error rate and latency over time with the
//! incidents shaded, then for the winner, the runners-up, the seed preset and the config
//! in force a band of Closed / Open / HalfOpen over the same time axis and bars of the
//! calls each saved (failing calls it rejected, up) and lost (good calls it rejected,
//! down).

use crate::rank::{Costs, Score};
use crate::svg::{Svg, esc};
use crate::traffic::{KeyTraffic, Traffic};
use std::fmt::Write as _;
use tower_circuit_breaker::CircuitState;

/// A stretch of time a circuit spent in one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Start, ms since the epoch.
    pub start_ms: u64,
    /// End, ms since the epoch.
    pub end_ms: u64,
    /// The state.
    pub state: CircuitState,
}

/// One config's row of the report.
#[derive(Clone, Debug)]
pub struct Band {
    /// `winner`, `#2`, `seed`, `current`, ...
    pub role: String,
    /// The config's name.
    pub name: String,
    /// Its states over time.
    pub segments: Vec<Segment>,
    /// Good calls rejected, per traffic bucket.
    pub lost: Vec<u64>,
    /// Failing calls rejected, per traffic bucket.
    pub saved: Vec<u64>,
    /// Its score.
    pub score: Score,
}

/// One key's part of the report.
#[derive(Clone, Debug)]
pub struct Section<'a> {
    /// `(service, operation)`.
    pub key: &'a (String, String),
    /// What the trace shows for it.
    pub traffic: &'a KeyTraffic,
    /// The configs to draw, winner first.
    pub bands: Vec<Band>,
    /// The table as printed.
    pub table: String,
    /// A sentence on why the winner wins.
    pub verdict: String,
}

const WIDTH: f64 = 1340.0;
const LEFT: f64 = 290.0;
const RIGHT: f64 = 20.0;
const CLOSED: &str = "#cfe8d3";
const OPEN: &str = "#d9534f";
const HALF_OPEN: &str = "#f0ad4e";
const SAVED: &str = "#2e7d32";
const LOST: &str = "#c62828";
const INCIDENT: &str = "#fbe3e3";

/// `HH:MM` (UTC) of a time in ms since the epoch.
fn clock(ms: u64) -> String {
    let minutes = ms / 60_000 % 1_440;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

struct Axis {
    start_ms: u64,
    span_ms: u64,
}

impl Axis {
    fn x(&self, t_ms: u64) -> f64 {
        let f = t_ms.saturating_sub(self.start_ms) as f64 / self.span_ms as f64;
        LEFT + f.min(1.0) * (WIDTH - LEFT - RIGHT)
    }
}

/// The whole page.
pub fn render(trace: &str, costs: Costs, traffic: &Traffic, sections: &[Section<'_>]) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tcb-advisor: {trace}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px 24px; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} h2 {{ font-size: 17px; margin: 22px 0 4px; }}
p {{ margin: 4px 0; font-size: 14px; }} pre {{ font-size: 11.5px; background: #f6f6f6; padding: 6px; overflow-x: auto; }}
.key {{ display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin: 0 4px 0 12px; }}
</style></head><body>
<h1>tcb-advisor: which breaker config would have served <code>{trace}</code> best</h1>
<p>Cost = {cf} × failing calls let through + {cr} × good calls rejected. Shaded: incidents.
<span class="key" style="background:{CLOSED}"></span>Closed<span class="key" style="background:{OPEN}"></span>Open<span class="key" style="background:{HALF_OPEN}"></span>HalfOpen<span class="key" style="background:{SAVED}"></span>saved (failing call rejected)<span class="key" style="background:{LOST}"></span>lost (good call rejected)</p>
"#,
        trace = esc(trace),
        cf = costs.failed,
        cr = costs.rejected,
    );
    let axis = Axis {
        start_ms: traffic.start_ms,
        span_ms: traffic.bucket_ms.saturating_mul(traffic.buckets as u64),
    };
    for s in sections {
        let _ = write!(
            html,
            "<h2>{} / {}</h2>\n<p>{}</p>\n{}\n<pre>{}</pre>\n",
            esc(&s.key.0),
            esc(&s.key.1),
            esc(&s.verdict),
            section_svg(traffic, &axis, s),
            esc(&s.table)
        );
    }
    html.push_str("</body></html>\n");
    html
}

/// One key's plots.
fn section_svg(traffic: &Traffic, axis: &Axis, s: &Section<'_>) -> String {
    let mut svg = Svg::default();
    let t = s.traffic;
    let secs = traffic.bucket_ms as f64 / 1_000.0;
    let mid = |b: usize| {
        let offset = traffic.bucket_ms.saturating_mul(b as u64) + traffic.bucket_ms / 2;
        axis.x(traffic.start_ms.saturating_add(offset))
    };
    let bar_w = (WIDTH - LEFT - RIGHT) / traffic.buckets as f64;
    let (rate_y, rate_h) = (30.0, 56.0);
    let (err_y, err_h) = (rate_y + rate_h + 14.0, 44.0);
    let (lat_y, lat_h) = (err_y + err_h + 14.0, 56.0);
    let traffic_bottom = lat_y + lat_h;
    let band_top = traffic_bottom + 16.0;
    let band_h = 62.0;
    let height = band_top + band_h * s.bands.len() as f64 + 24.0;
    // Incidents behind everything.
    // Labels in two rows, so neighbours do not write over each other.
    for (n, inc) in t.incidents.iter().enumerate() {
        let (x0, x1) = (axis.x(inc.start_ms), axis.x(inc.end_ms));
        svg.rect(
            x0,
            rate_y - 28.0,
            (x1 - x0).max(2.0),
            height - rate_y + 4.0,
            INCIDENT,
            Some(&inc.label),
        );
        let label_y = if n % 2 == 0 {
            rate_y - 4.0
        } else {
            rate_y - 16.0
        };
        // Near the right edge the label ends at the incident's end instead.
        if x0 + 240.0 > WIDTH {
            svg.text(x1 - 2.0, label_y, &inc.label, "end", 10, "#a33");
        } else {
            svg.text(x0 + 2.0, label_y, &inc.label, "start", 10, "#a33");
        }
    }
    // Request rate.
    let max_rate = t
        .buckets
        .iter()
        .map(|b| f64::from(b.calls) / secs)
        .fold(0.1, f64::max);
    svg.text(LEFT - 8.0, rate_y + 12.0, "requests/s", "end", 12, "#333");
    svg.text(
        LEFT - 8.0,
        rate_y + 26.0,
        &format!("max {max_rate:.1}"),
        "end",
        10,
        "#777",
    );
    for (b, bucket) in t.buckets.iter().enumerate() {
        let h = f64::from(bucket.calls) / secs / max_rate * rate_h;
        svg.rect(
            LEFT + bar_w * b as f64,
            rate_y + rate_h - h,
            bar_w.max(1.0) * 0.9,
            h,
            "#8a9bb0",
            None,
        );
    }
    svg.line(
        LEFT,
        rate_y + rate_h,
        WIDTH - RIGHT,
        rate_y + rate_h,
        "#999",
    );
    // Error rate.
    svg.text(LEFT - 8.0, err_y + 12.0, "error rate", "end", 12, "#333");
    svg.text(LEFT - 8.0, err_y + 26.0, "0–100 %", "end", 10, "#777");
    let err: Vec<_> = t
        .buckets
        .iter()
        .enumerate()
        .map(|(b, bucket)| {
            (bucket.calls > 0).then(|| {
                let r = f64::from(bucket.failed) / f64::from(bucket.calls);
                (mid(b), err_y + err_h - r * err_h)
            })
        })
        .collect();
    svg.line(LEFT, err_y + err_h, WIDTH - RIGHT, err_y + err_h, "#999");
    svg.polyline(&err, "#c62828", 1.5);
    // Latency, log scale.
    let p99: Vec<Option<f64>> = t.buckets.iter().map(|b| b.quantile_ms(0.99)).collect();
    let p50: Vec<Option<f64>> = t.buckets.iter().map(|b| b.quantile_ms(0.5)).collect();
    let top = p99
        .iter()
        .flatten()
        .fold(10.0f64, |a, &b| a.max(b))
        .log10()
        .ceil();
    let bottom = p50
        .iter()
        .flatten()
        .fold(1e9f64, |a, &b| a.min(b))
        .log10()
        .floor()
        .min(top - 1.0);
    let ly = |ms: f64| lat_y + lat_h - (ms.log10() - bottom) / (top - bottom) * lat_h;
    svg.text(
        LEFT - 8.0,
        lat_y + 12.0,
        "latency p50 / p99",
        "end",
        12,
        "#333",
    );
    svg.text(LEFT - 8.0, lat_y + 26.0, "ms, log scale", "end", 10, "#777");
    let mut decade = bottom;
    while decade <= top {
        let ms = 10f64.powf(decade);
        let y = ly(ms);
        svg.line(LEFT, y, WIDTH - RIGHT, y, "#e4e4e4");
        svg.text(LEFT + 2.0, y - 2.0, &format!("{ms} ms"), "start", 9, "#888");
        decade += 1.0;
    }
    let pts = |v: &[Option<f64>]| -> Vec<Option<(f64, f64)>> {
        v.iter()
            .enumerate()
            .map(|(b, q)| q.map(|ms| (mid(b), ly(ms))))
            .collect()
    };
    svg.polyline(&pts(&p50), "#1565c0", 1.5);
    svg.polyline(&pts(&p99), "#7b1fa2", 1.5);
    // One band per config.
    let max_bar = s
        .bands
        .iter()
        .flat_map(|b| b.lost.iter().chain(&b.saved))
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    for (i, band) in s.bands.iter().enumerate() {
        let y = band_top + band_h * i as f64;
        let sc = &band.score;
        svg.text(
            LEFT - 8.0,
            y + 12.0,
            &format!("{}: {}", band.role, band.name),
            "end",
            12,
            "#111",
        );
        svg.text(
            LEFT - 8.0,
            y + 27.0,
            &format!(
                "let through {} · rejected good {} · saved {}",
                sc.failed_let_through + sc.failed_outside,
                sc.false_rejections,
                sc.saved
            ),
            "end",
            10,
            "#555",
        );
        svg.text(
            LEFT - 8.0,
            y + 40.0,
            &format!(
                "opens {} (false {}) · caught {}/{}",
                sc.opens, sc.false_opens, sc.caught, sc.incidents
            ),
            "end",
            10,
            "#555",
        );
        svg.rect(LEFT, y + 2.0, WIDTH - LEFT - RIGHT, 14.0, CLOSED, None);
        for seg in &band.segments {
            let fill = match seg.state {
                CircuitState::Open => OPEN,
                CircuitState::HalfOpen => HALF_OPEN,
                _ => continue,
            };
            let (x0, x1) = (axis.x(seg.start_ms), axis.x(seg.end_ms));
            let title = format!(
                "{:?} {}–{}",
                seg.state,
                clock(seg.start_ms),
                clock(seg.end_ms)
            );
            svg.rect(x0, y + 2.0, (x1 - x0).max(1.0), 14.0, fill, Some(&title));
        }
        let base = y + 38.0;
        svg.line(LEFT, base, WIDTH - RIGHT, base, "#bbb");
        for b in 0..traffic.buckets {
            let x = LEFT + bar_w * b as f64;
            let up = band.saved.get(b).copied().unwrap_or(0) as f64 / max_bar * 20.0;
            let down = band.lost.get(b).copied().unwrap_or(0) as f64 / max_bar * 20.0;
            svg.rect(x, base - up, bar_w.max(1.0) * 0.9, up, SAVED, None);
            svg.rect(x, base, bar_w.max(1.0) * 0.9, down, LOST, None);
        }
    }
    // Time axis.
    let axis_y = height - 18.0;
    let span_min = axis.span_ms / 60_000;
    // At most about 12 ticks, whatever the span (days for a long trace).
    let step = match [1, 2, 5, 10, 15, 30, 60, 120, 360, 720]
        .into_iter()
        .find(|m| span_min / m <= 12)
    {
        Some(m) => m * 60_000,
        None => (axis.span_ms / 12).div_ceil(86_400_000).max(1) * 86_400_000,
    };
    let end = axis.start_ms.saturating_add(axis.span_ms);
    let mut tick = axis.start_ms.div_ceil(step).saturating_mul(step);
    while tick <= end {
        let x = axis.x(tick);
        svg.line(x, axis_y - 4.0, x, axis_y, "#666");
        let label = if step >= 86_400_000 {
            format!("+{}d", (tick - axis.start_ms) / 86_400_000)
        } else {
            clock(tick)
        };
        svg.text(x, axis_y + 12.0, &label, "middle", 10, "#444");
        tick = match tick.checked_add(step) {
            Some(t) => t,
            None => break,
        };
    }
    svg.text(LEFT - 24.0, axis_y + 12.0, "UTC", "end", 10, "#444");
    svg.finish(WIDTH, height)
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn clock_is_utc() {
        assert_eq!(clock(1_796_115_600_000), "09:00");
    }
}
