//! Small inline SVG line charts for the status page: no script, no external asset.

use std::fmt::Write;

/// Width and height of a sparkline in CSS pixels.
const W: f64 = 120.0;
const H: f64 = 24.0;

/// One SVG with a line per `(values, colour)`, all on one scale, newest at the right edge;
/// `slots` is how many samples the full width holds. `title` is the hover text.
pub fn svg(lines: &[(&[f64], &str)], slots: usize, title: &str) -> String {
    let max = lines
        .iter()
        .flat_map(|(v, _)| v.iter().copied())
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { (H - 2.0) / max } else { 0.0 };
    let step = W / (slots.max(2) - 1) as f64;
    let mut out = format!(
        "<svg class=spark width={W} height={H} viewBox=\"0 0 {W} {H}\" role=img>\
         <title>{title} (max {max:.1}/s)</title>\
         <line x1=0 y1={y} x2={W} y2={y} stroke=#ddd />",
        y = H - 0.5,
        title = super::html::esc(title),
    );
    for (values, colour) in lines {
        if values.len() < 2 {
            continue;
        }
        let start = W - step * (values.len() - 1) as f64;
        let _ = write!(
            out,
            "<polyline fill=none stroke=\"{colour}\" stroke-width=1.5 points=\""
        );
        for (i, v) in values.iter().enumerate() {
            let x = start + step * i as f64;
            let y = H - 1.0 - v * scale;
            let _ = write!(out, "{x:.1},{y:.1} ");
        }
        out.push_str("\"/>");
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_sample_is_at_the_right_edge_and_max_at_the_top() {
        let s = svg(&[(&[0.0, 4.0, 2.0], "#06c")], 3, "requests/s");
        assert!(
            s.contains("points=\"0.0,23.0 60.0,1.0 120.0,12.0 \""),
            "{s}"
        );
        assert!(s.contains("<title>requests/s (max 4.0/s)</title>"), "{s}");
        // Too few samples: the baseline only.
        assert!(!svg(&[(&[1.0], "#06c")], 3, "x").contains("polyline"));
    }
}
