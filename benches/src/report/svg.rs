//! A minimal log-log line plot written as SVG text (no plotting crate).

use std::fmt::Write as _;

/// One line of a plot.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Any SVG colour.
    pub color: &'static str,
    /// Whether to draw the line dashed (used for baselines).
    pub dashed: bool,
    /// Whether to draw the line thicker (used for our own map).
    pub emphasised: bool,
    /// `(x, y)` points; non-positive coordinates cannot be placed on log axes and are skipped.
    pub points: Vec<(f64, f64)>,
}

/// A plot with logarithmic x and y axes, one decade per grid line.
#[derive(Clone, Debug)]
pub struct LogLogPlot {
    /// Title above the plot.
    pub title: String,
    /// Caption of the x axis.
    pub x_label: String,
    /// Caption of the y axis.
    pub y_label: String,
    /// Formats an x tick (a power of ten).
    pub x_tick: fn(f64) -> String,
    /// Formats a y tick (a power of ten).
    pub y_tick: fn(f64) -> String,
    /// The lines.
    pub series: Vec<Series>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 210.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// The decade exponents `[lo, hi]` covering every value (at least one decade wide).
fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (min, max) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !min.is_finite() {
        return (0, 1);
    }
    let lo = min.log10().floor() as i32;
    let hi = (max.log10().ceil() as i32).max(lo + 1);
    (lo, hi)
}

/// Escapes text for SVG content and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl LogLogPlot {
    /// The plot as a standalone SVG document.
    pub fn render(&self) -> String {
        let points = || self.series.iter().flat_map(|s| s.points.iter().copied());
        let (x_lo, x_hi) = decades(points().map(|(x, _)| x));
        let (y_lo, y_hi) = decades(points().map(|(_, y)| y));
        let plot_width = WIDTH - LEFT - RIGHT;
        let plot_height = HEIGHT - TOP - BOTTOM;
        let to_x =
            |x: f64| LEFT + (x.log10() - f64::from(x_lo)) / f64::from(x_hi - x_lo) * plot_width;
        let to_y = |y: f64| {
            TOP + plot_height - (y.log10() - f64::from(y_lo)) / f64::from(y_hi - y_lo) * plot_height
        };

        let mut svg = String::new();
        // `write!` into a String cannot fail.
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        // The accessible name, shown as a tooltip too.
        let _ = writeln!(svg, "<title>{}</title>", escape(&self.title));
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="28" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
            LEFT + plot_width / 2.0,
            escape(&self.title)
        );

        // Grid: a solid line per decade, faint lines at 2..9 times it.
        for exponent in x_lo..=x_hi {
            let decade = 10f64.powi(exponent);
            let x = to_x(decade);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ccc"/>"##,
                TOP + plot_height
            );
            let _ = writeln!(
                svg,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + plot_height + 18.0,
                escape(&(self.x_tick)(decade))
            );
            if exponent < x_hi {
                for factor in 2..10 {
                    let x = to_x(decade * f64::from(factor));
                    let _ = writeln!(
                        svg,
                        r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/>"##,
                        TOP + plot_height
                    );
                }
            }
        }
        for exponent in y_lo..=y_hi {
            let decade = 10f64.powi(exponent);
            let y = to_y(decade);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ccc"/>"##,
                LEFT + plot_width
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 8.0,
                y + 4.0,
                escape(&(self.y_tick)(decade))
            );
            if exponent < y_hi {
                for factor in 2..10 {
                    let y = to_y(decade * f64::from(factor));
                    let _ = writeln!(
                        svg,
                        r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##,
                        LEFT + plot_width
                    );
                }
            }
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_width / 2.0,
            HEIGHT - 15.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">{}</text>"#,
            TOP + plot_height / 2.0,
            TOP + plot_height / 2.0,
            escape(&self.y_label)
        );

        for (index, series) in self.series.iter().enumerate() {
            let placed: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
                .map(|&(x, y)| (to_x(x), to_y(y)))
                .collect();
            let width = if series.emphasised { 3.0 } else { 1.8 };
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let path: Vec<String> = placed
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="{width}"{dash}/>"#,
                path.join(" "),
                series.color
            );
            for (x, y) in &placed {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.2" fill="{}"/>"#,
                    series.color
                );
            }
            let legend_y = TOP + 12.0 + 22.0 * index as f64;
            let legend_x = LEFT + plot_width + 16.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{}" stroke-width="{width}"{dash}/>"#,
                legend_x + 26.0,
                series.color
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}">{}</text>"#,
                legend_x + 32.0,
                legend_y + 4.0,
                escape(&series.label)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_and_decade() {
        let plot = LogLogPlot {
            title: "t <1>".into(),
            x_label: "N".into(),
            y_label: "ns".into(),
            x_tick: |x| format!("{x}"),
            y_tick: |y| format!("{y}"),
            series: vec![
                Series {
                    label: "a".into(),
                    color: "red",
                    dashed: false,
                    emphasised: true,
                    points: vec![(10.0, 2.0), (1000.0, 30.0)],
                },
                Series {
                    label: "b".into(),
                    color: "blue",
                    dashed: true,
                    emphasised: false,
                    points: vec![(10.0, 0.0), (100.0, 5.0)],
                },
            ],
        };
        let svg = plot.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(
            svg.matches("<circle").count(),
            3,
            "the zero point is skipped"
        );
        assert!(svg.contains("t &lt;1&gt;"));
        assert_eq!(decades([2.0, 30.0].into_iter()), (0, 2));
    }
}
