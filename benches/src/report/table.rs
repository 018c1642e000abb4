//! Markdown tables padded for reading as plain text, and number formatting.

/// A markdown table: the first column is left-aligned (row names), the others right-aligned
/// (numbers), unless [`left_columns`](Self::left_columns) says otherwise. A `|` inside a cell
/// (in a code span, say) is escaped, so it does not split the cell in GitHub's renderer.
#[derive(Clone, Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    left: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            header: Vec::new(),
            rows: Vec::new(),
            left: 1,
        }
    }
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Left-aligns the first `columns` columns (text), instead of only the first.
    pub fn left_columns(&mut self, columns: usize) -> &mut Self {
        self.left = columns;
        self
    }

    /// Appends a row; missing cells are left empty, extra cells are dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        let mut cells: Vec<String> = cells
            .into_iter()
            .map(|cell| cell.into().replace('|', "\\|"))
            .collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
        self
    }

    /// The table as markdown, every column padded to its widest cell.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|column| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(3)
            })
            .collect();
        let line = |cells: &[String]| -> String {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(column, (cell, &width))| {
                    if column < self.left {
                        format!("{cell:<width$}")
                    } else {
                        format!("{cell:>width$}")
                    }
                })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(column, &width)| {
                if column < self.left {
                    "-".repeat(width + 2)
                } else {
                    format!("{}:", "-".repeat(width + 1))
                }
            })
            .collect();
        let mut out = line(&self.header);
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// Nanoseconds with three significant digits: `1.85`, `40.2`, `1166`, `169k`, `6.10M`.
pub fn format_ns(ns: f64) -> String {
    match ns {
        _ if !ns.is_finite() => "–".to_owned(),
        _ if ns < 10.0 => format!("{ns:.2}"),
        _ if ns < 100.0 => format!("{ns:.1}"),
        _ if ns < 10_000.0 => format!("{ns:.0}"),
        _ if ns < 100_000.0 => format!("{:.1}k", ns / 1e3),
        _ if ns < 1e6 => format!("{:.0}k", ns / 1e3),
        _ if ns < 1e7 => format!("{:.2}M", ns / 1e6),
        _ => format!("{:.1}M", ns / 1e6),
    }
}

/// A ratio with two decimals, or two significant digits below 0.1 (so a 200x win does not
/// read `0.00`).
pub fn format_ratio(ratio: f64) -> String {
    match ratio {
        _ if ratio > 0.0 && ratio < 0.01 => format!("{ratio:.4}"),
        _ if ratio > 0.0 && ratio < 0.1 => format!("{ratio:.3}"),
        _ => format!("{ratio:.2}"),
    }
}

/// A byte or allocation count: one decimal below 100, integers up to 100k, then `k`/`M`.
pub fn format_amount(amount: f64) -> String {
    match amount {
        _ if !amount.is_finite() => "–".to_owned(),
        _ if amount.abs() < 100.0 => format!("{amount:.1}"),
        _ if amount.abs() < 100_000.0 => format!("{amount:.0}"),
        _ if amount.abs() < 1e7 => format!("{:.0}k", amount / 1e3),
        _ => format!("{:.1}M", amount / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_digits() {
        let shown: Vec<String> = [1.851, 40.23, 1166.4, 12_345.0, 169_000.0, 6_100_000.0, 26e6]
            .into_iter()
            .map(format_ns)
            .collect();
        assert_eq!(
            shown,
            ["1.85", "40.2", "1166", "12.3k", "169k", "6.10M", "26.0M"]
        );
        assert_eq!(format_amount(35.71), "35.7");
        assert_eq!(
            [0.0048, 0.093, 0.56, 58.5].map(format_ratio),
            ["0.0048", "0.093", "0.56", "58.50"]
        );
        assert_eq!(format_amount(35_700_000.0), "35.7M");
    }

    #[test]
    fn tables_pad_and_align() {
        let mut table = Table::new(["map", "10"]);
        table.row(["hamt", "1.5"]).row(["std HashMap", "22"]);
        let text = table.render();
        assert_eq!(
            text,
            "| map         |  10 |\n|-------------|----:|\n| hamt        | 1.5 |\n| std HashMap |  22 |\n"
        );
        let mut table = Table::new(["who", "code", "ns"]);
        table.left_columns(2).row(["ours", "`f(|| 1)`", "2"]);
        assert_eq!(
            table.render(),
            "| who  | code        |  ns |\n|------|-------------|----:|\n| ours | `f(\\|\\| 1)` |   2 |\n"
        );
    }
}
