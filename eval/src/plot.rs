//! Minimal SVG charts for benchmark results (no plotting dependency): grouped bar charts with an
//! optional logarithmic axis. Benchmarks write one next to their JSON/CSV.

use std::fmt::Write;

/// One group of bars (one x position), each bar a series.
pub struct BarGroup {
    /// The group's label on the x axis.
    pub label: String,
    /// (series name, value); missing series may be omitted.
    pub bars: Vec<(String, f64)>,
}

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A grouped bar chart; `log_y` uses a base-10 axis (values must be > 0).
pub fn bar_chart(title: &str, y_label: &str, groups: &[BarGroup], log_y: bool) -> String {
    let mut series: Vec<String> = Vec::new();
    for g in groups {
        for (s, _) in &g.bars {
            if !series.contains(s) {
                series.push(s.clone());
            }
        }
    }
    let (w, h, left, right, top, bottom) = (760.0, 420.0, 80.0, 170.0, 50.0, 60.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let values: Vec<f64> = groups.iter().flat_map(|g| g.bars.iter().map(|b| b.1)).filter(|v| v.is_finite()).collect();
    let vmax = values.iter().cloned().fold(f64::MIN, f64::max).max(1e-9);
    let vmin_pos = values.iter().cloned().filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
    let (lo, hi) = if log_y {
        let lo = vmin_pos.min(vmax).log10().floor();
        (lo, vmax.log10().ceil().max(lo + 1.0))
    } else {
        (0.0, vmax * 1.1)
    };
    let y_of = |v: f64| -> f64 {
        let t = if log_y { (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo) } else { v / hi };
        top + plot_h * (1.0 - t.clamp(0.0, 1.0))
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="25" font-size="15" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        esc(title)
    );
    // Axis ticks.
    let ticks = y_ticks(log_y, lo, hi);
    for t in ticks {
        let y = y_of(t);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0,
            fmt_num(t)
        );
    }
    let _ = write!(
        s,
        r#"<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + plot_h / 2.0,
        esc(y_label)
    );
    let gw = plot_w / groups.len().max(1) as f64;
    let bw = (gw * 0.8) / series.len().max(1) as f64;
    for (gi, g) in groups.iter().enumerate() {
        let gx = left + gi as f64 * gw + gw * 0.1;
        for (name, v) in &g.bars {
            let si = series.iter().position(|x| x == name).unwrap_or(0);
            let x = gx + si as f64 * bw;
            let y = y_of(*v);
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                bw * 0.92,
                (top + plot_h - y).max(0.0),
                COLORS[si % COLORS.len()],
                esc(name),
                fmt_num(*v),
                x + bw * 0.46,
                y - 3.0,
                fmt_num(*v)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            gx + gw * 0.4,
            top + plot_h + 20.0,
            esc(&g.label)
        );
    }
    let _ = write!(s, r#"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="black"/>"#, top + plot_h);
    for (i, name) in series.iter().enumerate() {
        let y = top + 10.0 + i as f64 * 20.0;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            w - right + 15.0,
            y,
            COLORS[i % COLORS.len()],
            w - right + 32.0,
            y + 10.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One line of a line chart: (x, y) points in x order.
pub struct Series {
    /// The legend's name.
    pub name: String,
    /// (x, y), in x order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart with a linear x axis and a linear or base-10 log y axis (log: values must be > 0).
/// Drawn at `(ox, oy)` with size `(w, h)` so that several can share one SVG (see `svg_page`).
// One panel is its box (4), its data (2) and its labels and scale (3); its four call sites (the
// two sweeps' two panels each) name every value, which a struct literal would only repeat.
#[allow(clippy::too_many_arguments)]
pub fn line_panel(
    ox: f64,
    oy: f64,
    w: f64,
    h: f64,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> String {
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let pts: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    let xmax = pts.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9) * 1.05;
    let ymax = pts.iter().map(|p| p.1).fold(f64::MIN, f64::max).max(1e-9);
    let ymin_pos = pts.iter().map(|p| p.1).filter(|v| *v > 0.0).fold(f64::MAX, f64::min).min(ymax);
    let (lo, hi) = if log_y {
        (ymin_pos.log10().floor(), ymax.log10().ceil().max(ymin_pos.log10().floor() + 1.0))
    } else {
        (0.0, ymax * 1.1)
    };
    let x_of = |x: f64| ox + left + pw * (x / xmax);
    let y_of = |v: f64| {
        let t = if log_y { (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo) } else { v / hi };
        oy + top + ph * (1.0 - t.clamp(0.0, 1.0))
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"#,
        ox + left + pw / 2.0,
        oy + 22.0,
        esc(title)
    );
    let yt = y_ticks(log_y, lo, hi);
    for t in yt {
        let y = y_of(t);
        let _ = write!(
            s,
            r##"<line x1="{}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            ox + left,
            ox + left + pw,
            ox + left - 6.0,
            y + 4.0,
            fmt_num(t)
        );
    }
    for i in 0..=5 {
        let xv = xmax * i as f64 / 5.0;
        let x = x_of(xv);
        let _ =
            write!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#, oy + top + ph + 16.0, fmt_num(xv));
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        ox + left + pw / 2.0,
        oy + h - 8.0,
        esc(x_label)
    );
    let _ = write!(
        s,
        r#"<text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        ox + 16.0,
        oy + top + ph / 2.0,
        esc(y_label)
    );
    let _ = write!(
        s,
        r#"<line x1="{0}" x2="{0}" y1="{1}" y2="{2}" stroke="black"/><line x1="{0}" x2="{3}" y1="{2}" y2="{2}" stroke="black"/>"#,
        ox + left,
        oy + top,
        oy + top + ph,
        ox + left + pw
    );
    for (i, ser) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = ser
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", x_of(x), y_of(y)))
            .collect();
        let _ = write!(s, r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#, path.join(" "));
        for p in &path {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{c}"/>"#);
        }
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{c}"/><text x="{}" y="{}">{}</text>"#,
            ox + left + 10.0,
            oy + top + 6.0 + 18.0 * i as f64,
            ox + left + 28.0,
            oy + top + 16.0 + 18.0 * i as f64,
            esc(&ser.name)
        );
    }
    s
}

/// Wraps panels into one SVG document of size `(w, h)`.
pub fn svg_page(w: f64, h: f64, panels: &[String]) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>{}</svg>"#,
        panels.concat()
    )
}

/// The y axis's tick values: each power of ten from 10^lo to 10^hi on a log axis, else six
/// evenly spaced values from 0 to hi.
fn y_ticks(log_y: bool, lo: f64, hi: f64) -> Vec<f64> {
    if log_y {
        (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=5).map(|i| hi * i as f64 / 5.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_every_bar_and_legend_entry() {
        let groups = vec![
            BarGroup { label: "a".into(), bars: vec![("x".into(), 1.0), ("y".into(), 100.0)] },
            BarGroup { label: "b<c".into(), bars: vec![("x".into(), 10.0)] },
        ];
        let svg = bar_chart("t", "ns", &groups, true);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("b&lt;c") && svg.contains(">x</text>") && svg.contains(">y</text>"));
    }
}
