//! Scoring, ranking and the Pareto front: what the table prints and the winner is
//! chosen by.
//!
//! The cost of a config on a key is `cost_failed × failed calls let through +
//! cost_rejected × false rejections`, both 1 by default: each is one request the user saw
//! fail, one because the breaker let it reach a dependency that was down, the other
//! because the breaker refused it while the dependency would have served it. Raise
//! `--cost-failed` when a failing call costs more than a refused one (it holds a Lambda
//! for a timeout, it adds load to a struggling dependency, it is retried); raise
//! `--cost-rejected` when a refusal costs more (a lost write with no retry). Ties go to
//! fewer false opens, then fewer opens, then the config in force, then the key's seed
//! preset (a change must earn its place), then the earlier candidate.

use std::fmt::Write as _;

/// What one config did on one key over the whole trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Score {
    /// Failing calls the breaker let through inside incidents.
    pub failed_let_through: u64,
    /// Failing calls the breaker let through outside incidents (isolated errors: no
    /// breaker should stop those).
    pub failed_outside: u64,
    /// Calls rejected that would have succeeded.
    pub false_rejections: u64,
    /// Failing calls rejected: what the breaker saved.
    pub saved: u64,
    /// Transitions to Open.
    pub opens: u64,
    /// Openings outside every incident.
    pub false_opens: u64,
    /// Incidents of at least [`CATCH_MIN_MS`] on this key.
    pub incidents: u32,
    /// Of those, how many saw the circuit open.
    pub caught: u32,
    /// Mean time from incident start to open, over the incidents caught, ms.
    pub mean_time_to_open_ms: Option<u64>,
    /// Mean time from incident end (recovery) to close, ms.
    pub mean_time_to_close_ms: Option<u64>,
    /// Probes admitted in HalfOpen.
    pub probes: u64,
}

/// Incidents shorter than this (10 s) are not expected to be caught.
pub const CATCH_MIN_MS: u64 = 10_000;

/// The user's weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Costs {
    /// Cost of a failing call let through (default 1).
    pub failed: f64,
    /// Cost of a false rejection (default 1).
    pub rejected: f64,
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            failed: 1.0,
            rejected: 1.0,
        }
    }
}

impl Costs {
    /// The cost of `score`. Failing calls outside incidents count too: they are let
    /// through by every config that does not open, and the one that opens on them pays
    /// in false rejections instead.
    pub fn of(&self, score: &Score) -> f64 {
        self.failed * (score.failed_let_through + score.failed_outside) as f64
            + self.rejected * score.false_rejections as f64
    }
}

/// Indices of `scores`, best first: by cost, then false opens, then opens, then
/// `priority` (lower first: the config in force, the key's seed preset), then index.
pub fn rank(scores: &[Score], priority: &[u8], costs: Costs) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let prio = |i: usize| priority.get(i).copied().unwrap_or(u8::MAX);
    order.sort_by(|&a, &b| {
        let (sa, sb) = (&scores[a], &scores[b]);
        costs
            .of(sa)
            .total_cmp(&costs.of(sb))
            .then(sa.false_opens.cmp(&sb.false_opens))
            .then(sa.opens.cmp(&sb.opens))
            .then(prio(a).cmp(&prio(b)))
            .then(a.cmp(&b))
    });
    order
}

/// The Pareto front of failing calls let through (all of them) against false
/// rejections: the configs no other config beats on both. One per point (the best
/// ranked), in `order`'s order.
pub fn pareto_front(scores: &[Score], order: &[usize]) -> Vec<usize> {
    let point = |i: usize| {
        let s = &scores[i];
        (s.failed_let_through + s.failed_outside, s.false_rejections)
    };
    let mut front: Vec<usize> = Vec::new();
    for &i in order {
        let (f, r) = point(i);
        let dominated_or_same = order.iter().any(|&j| {
            let (fj, rj) = point(j);
            fj <= f && rj <= r && (fj < f || rj < r)
        }) || front.iter().any(|&j| point(j) == (f, r));
        if !dominated_or_same {
            front.push(i);
        }
    }
    front
}

/// One row of the printed table.
#[derive(Clone, Debug)]
pub struct Row<'a> {
    /// `winner`, `front`, `seed`, `current`.
    pub role: &'a str,
    /// The config's name.
    pub name: &'a str,
    /// Its score.
    pub score: &'a Score,
}

fn ms(v: Option<u64>) -> String {
    match v {
        Some(ms) if ms >= 10_000 => format!("{:.0}s", ms as f64 / 1_000.0),
        Some(ms) => format!("{:.1}s", ms as f64 / 1_000.0),
        None => "-".to_owned(),
    }
}

/// The rows as a Markdown table with aligned columns.
pub fn table(rows: &[Row<'_>], costs: Costs) -> String {
    let header = [
        "",
        "config",
        "cost",
        "failed let through",
        "false rejections",
        "saved",
        "opens",
        "false opens",
        "caught ≥10s",
        "to open",
        "to close",
        "probes",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let s = r.score;
            vec![
                r.role.to_owned(),
                r.name.to_owned(),
                format!("{}", costs.of(s)),
                format!("{}", s.failed_let_through + s.failed_outside),
                s.false_rejections.to_string(),
                s.saved.to_string(),
                s.opens.to_string(),
                s.false_opens.to_string(),
                format!("{}/{}", s.caught, s.incidents),
                ms(s.mean_time_to_open_ms),
                ms(s.mean_time_to_close_ms),
                s.probes.to_string(),
            ]
        })
        .collect();
    let width = |c: usize| {
        cells
            .iter()
            .map(|row| row[c].chars().count())
            .chain([header[c].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let mut out = String::new();
    let mut line = |row: &[String]| {
        out.push('|');
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            // Text left, numbers right.
            if c < 2 {
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{cell} |", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(c, w)| {
            if c < 2 {
                "-".repeat(*w)
            } else {
                format!("{}:", "-".repeat(w - 1))
            }
        })
        .collect();
    line(&rule);
    for row in &cells {
        line(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(f: u64, r: u64) -> Score {
        Score {
            failed_let_through: f,
            false_rejections: r,
            ..Score::default()
        }
    }

    #[test]
    fn front_keeps_the_undominated() {
        let scores = [
            score(10, 0),
            score(5, 5),
            score(6, 6),
            score(0, 20),
            score(5, 5),
        ];
        let order = rank(&scores, &[], Costs::default());
        assert_eq!(order, vec![0, 1, 4, 2, 3]);
        assert_eq!(rank(&scores, &[9, 9, 9, 9, 0], Costs::default())[0], 4);
        assert_eq!(pareto_front(&scores, &order), vec![0, 1, 3]);
        let heavy = Costs {
            failed: 10.0,
            rejected: 1.0,
        };
        assert_eq!(rank(&scores, &[], heavy)[0], 3);
    }

    #[test]
    fn table_is_aligned() {
        let s = score(3, 1);
        let t = table(
            &[Row {
                role: "winner",
                name: "t30s f3",
                score: &s,
            }],
            Costs::default(),
        );
        let widths: Vec<usize> = t.lines().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{t}");
        assert!(t.contains("| winner | t30s f3 |"), "{t}");
    }
}
