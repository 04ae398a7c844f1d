//! A few SVG primitives, written by hand: the report needs rectangles, polylines and
//! text, and a self-contained file with no script.

use std::fmt::Write as _;

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An SVG document being written.
#[derive(Debug, Default)]
pub struct Svg {
    body: String,
}

impl Svg {
    /// A filled rectangle, with an optional tooltip.
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, title: Option<&str>) {
        if w <= 0.0 || h <= 0.0 {
            return;
        }
        let _ = write!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}""#
        );
        match title {
            Some(t) => {
                let _ = write!(self.body, "><title>{}</title></rect>", esc(t));
            }
            None => self.body.push_str("/>"),
        }
    }

    /// A line between two points.
    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str) {
        let _ = write!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="1"/>"#
        );
    }

    /// A polyline through `points`; gaps (`None`) break it.
    pub fn polyline(&mut self, points: &[Option<(f64, f64)>], stroke: &str, width: f64) {
        for run in points.split(Option::is_none) {
            if run.is_empty() {
                continue;
            }
            self.body.push_str(r#"<polyline fill="none" points=""#);
            for (x, y) in run.iter().flatten() {
                let _ = write!(self.body, "{x:.1},{y:.1} ");
            }
            let _ = write!(
                self.body,
                r#"" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round"/>"#
            );
        }
    }

    /// Text; `anchor` is `start`, `middle` or `end`.
    pub fn text(&mut self, x: f64, y: f64, s: &str, anchor: &str, size: u32, fill: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{size}" fill="{fill}">{}</text>"#,
            esc(s)
        );
    }

    /// The finished `<svg>` element.
    pub fn finish(self, width: f64, height: f64) -> String {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="system-ui, sans-serif">{}</svg>"#,
            self.body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_breaks_lines() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let mut s = Svg::default();
        s.polyline(
            &[Some((0.0, 0.0)), Some((1.0, 1.0)), None, Some((2.0, 2.0))],
            "red",
            1.0,
        );
        s.rect(0.0, 0.0, 0.0, 5.0, "red", None);
        let out = s.finish(10.0, 10.0);
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(!out.contains("<rect"));
    }
}
