//! What `advise` shows: the table per key, the text it prints, and the HTML report's
//! sections built from an [`Advice`].

use crate::advise::{Advice, KeyAdvice, distinct_best};
use crate::rank::{self, Costs, Row};
use crate::report::{self, Band, Section};

/// The rows printed for a key: the front (at most `top`, the winner first), then the
/// seed preset and the current config when they are not on it.
pub fn rows(k: &KeyAdvice, top: usize) -> Vec<(String, usize)> {
    let mut rows: Vec<(String, usize)> = Vec::new();
    let winner = k.order[0];
    rows.push(("winner".to_owned(), winner));
    for &i in k
        .front
        .iter()
        .filter(|&&i| i != winner)
        .take(top.saturating_sub(1))
    {
        rows.push(("front".to_owned(), i));
    }
    let mut extra = |role: &str, name: &str| {
        if let Some(i) = k.candidates.iter().position(|c| c.name == name) {
            match rows.iter_mut().find(|(_, j)| *j == i) {
                Some(row) => row.0 = format!("{}, {role}", row.0),
                None => rows.push((role.to_owned(), i)),
            }
        }
    };
    if let Some(seed) = k.seed_name() {
        extra("seed", seed);
    }
    extra("current", "current");
    rows
}

/// The table printed for a key.
pub fn key_table(k: &KeyAdvice, top: usize, costs: Costs) -> String {
    let rows = rows(k, top);
    let rows: Vec<Row<'_>> = rows
        .iter()
        .map(|(role, i)| Row {
            role,
            name: &k.candidates[*i].name,
            score: &k.scores[*i],
        })
        .collect();
    rank::table(&rows, costs)
}

/// One sentence on the winner against the seed preset (or the runner-up).
fn verdict(k: &KeyAdvice, costs: Costs) -> String {
    let w = &k.scores[k.order[0]];
    let name = &k.winner().name;
    let against = k
        .seed_name()
        .and_then(|s| Some((s, k.score_of(s)?)))
        .or_else(|| {
            k.order
                .get(1)
                .map(|&i| (k.candidates[i].name.as_str(), &k.scores[i]))
        });
    match against {
        Some((other, o)) => format!(
            "Winner {name}: cost {} against {} for {other}: it lets {} failing calls through ({} for {other}) and rejects {} good calls ({}).",
            costs.of(w),
            costs.of(o),
            w.failed_let_through + w.failed_outside,
            o.failed_let_through + o.failed_outside,
            w.false_rejections,
            o.false_rejections
        ),
        None => format!("Winner {name}: cost {}.", costs.of(w)),
    }
}

/// The HTML report of `advice`.
pub fn html(advice: &Advice, trace_name: &str, top: usize) -> String {
    let sections: Vec<Section<'_>> = advice
        .keys
        .iter()
        .map(|k| {
            // The winner and the next two that behaved differently.
            let mut picks: Vec<(String, usize)> = distinct_best(k, 3)
                .into_iter()
                .enumerate()
                .map(|(n, i)| {
                    let role = match n {
                        0 => "winner".to_owned(),
                        n => format!("#{}", n + 1),
                    };
                    (role, i)
                })
                .collect();
            for (role, i) in rows(k, top) {
                if (role.contains("seed") || role.contains("current"))
                    && !picks.iter().any(|(_, j)| *j == i)
                {
                    picks.push((role, i));
                }
            }
            let bands = picks
                .into_iter()
                .map(|(role, i)| Band {
                    role,
                    name: k.candidates[i].name.clone(),
                    segments: k.results[i].segments.clone(),
                    lost: k.results[i].lost.clone(),
                    saved: k.results[i].saved.clone(),
                    score: k.scores[i].clone(),
                })
                .collect();
            Section {
                key: &k.key,
                traffic: &advice.traffic.keys[&k.key],
                bands,
                table: key_table(k, top, advice.costs),
                verdict: verdict(k, advice.costs),
            }
        })
        .collect();
    report::render(trace_name, advice.costs, &advice.traffic, &sections)
}

/// The text printed by `advise`: one table per key.
pub fn printed(advice: &Advice, top: usize) -> String {
    let mut out = String::new();
    for k in &advice.keys {
        out.push_str(&format!(
            "\n{} / {}: {} configs replayed; winner {}\n\n",
            k.key.0,
            k.key.1,
            k.candidates.len(),
            k.winner().name
        ));
        out.push_str(&key_table(k, top, advice.costs));
    }
    out
}
