//! Log-log line plots as SVG text, drawn with `plotters`' SVG backend.

use plotters::prelude::*;

/// One line of a plot.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Line and point colour.
    pub color: RGBColor,
    /// Whether to draw the line dashed (used for baselines).
    pub dashed: bool,
    /// Whether to draw the line thicker (used for our own map).
    pub emphasised: bool,
    /// `(x, y)` points; non-positive coordinates cannot be placed on log axes and are skipped.
    pub points: Vec<(f64, f64)>,
}

/// A plot with logarithmic x and y axes.
#[derive(Clone, Debug)]
pub struct LogLogPlot {
    /// Title above the plot.
    pub title: String,
    /// Caption of the x axis.
    pub x_label: String,
    /// Caption of the y axis.
    pub y_label: String,
    /// Formats an x tick.
    pub x_tick: fn(f64) -> String,
    /// Formats a y tick.
    pub y_tick: fn(f64) -> String,
    /// The lines.
    pub series: Vec<Series>,
}

/// The decade bounds `[10^lo, 10^hi]` covering every value (at least one decade wide).
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !min.is_finite() {
        return (1.0, 10.0);
    }
    let lo = min.log10().floor();
    let hi = max.log10().ceil().max(lo + 1.0);
    (10f64.powf(lo), 10f64.powf(hi))
}

/// Escapes text for SVG content.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl LogLogPlot {
    /// The plot as a standalone SVG document, with the title as its accessible name.
    pub fn render(&self) -> String {
        let mut svg = String::new();
        if let Err(error) = self.draw(&mut svg) {
            // Drawing into a string fails only on a bad layout; say so in the figure.
            return format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"60\">\
                 <text x=\"10\" y=\"30\">{}</text></svg>\n",
                escape(&format!("plot failed: {error}"))
            );
        }
        // plotters writes no <title>: add one after the opening tag, for screen readers and
        // as a tooltip.
        if let Some(end) = svg
            .find("<svg")
            .and_then(|start| svg[start..].find('>').map(|end| start + end + 1))
        {
            svg.insert_str(end, &format!("\n<title>{}</title>", escape(&self.title)));
        }
        if !svg.ends_with('\n') {
            svg.push('\n');
        }
        svg
    }

    fn draw(&self, svg: &mut String) -> Result<(), Box<dyn std::error::Error + '_>> {
        let placed = |series: &Series| -> Vec<(f64, f64)> {
            series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
                .collect()
        };
        let all: Vec<(f64, f64)> = self.series.iter().flat_map(placed).collect();
        let (x_lo, x_hi) = decades(all.iter().map(|p| p.0));
        let (y_lo, y_hi) = decades(all.iter().map(|p| p.1));

        let root = SVGBackend::with_string(svg, (760, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                &self.title,
                ("sans-serif", 17).into_font().style(FontStyle::Bold),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())?;
        let (x_tick, y_tick) = (self.x_tick, self.y_tick);
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&|x| x_tick(*x))
            .y_label_formatter(&|y| y_tick(*y))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(204, 204, 204))
            .draw()?;
        for series in &self.series {
            let points = placed(series);
            let style = series
                .color
                .stroke_width(if series.emphasised { 3 } else { 2 });
            let legend_style = style;
            let drawn = if series.dashed {
                chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))?
            } else {
                chart.draw_series(LineSeries::new(points.clone(), style))?
            };
            drawn
                .label(&series.label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], legend_style));
            chart.draw_series(
                points
                    .iter()
                    .map(|&point| Circle::new(point, 3, series.color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_and_its_points() {
        let plot = LogLogPlot {
            title: "t <1>".into(),
            x_label: "N".into(),
            y_label: "ns".into(),
            x_tick: |x| format!("{x}"),
            y_tick: |y| format!("{y}"),
            series: vec![
                Series {
                    label: "first".into(),
                    color: RGBColor(200, 0, 0),
                    dashed: false,
                    emphasised: true,
                    points: vec![(10.0, 2.0), (1000.0, 30.0)],
                },
                Series {
                    label: "second".into(),
                    color: RGBColor(0, 0, 200),
                    dashed: true,
                    emphasised: false,
                    points: vec![(10.0, 0.0), (100.0, 5.0)],
                },
            ],
        };
        let svg = plot.render();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert!(svg.contains("<title>t &lt;1&gt;</title>"), "{svg}");
        assert!(svg.contains("first") && svg.contains("second"), "{svg}");
        assert_eq!(
            svg.matches("<circle").count(),
            3,
            "the zero point is skipped: {svg}"
        );
        assert_eq!(decades([2.0, 30.0].into_iter()), (1.0, 100.0));
    }
}
