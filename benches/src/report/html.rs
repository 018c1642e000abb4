//! `index.html`: the markdown report rendered as one self-contained page, the SVG figures
//! inlined (no network access, no CDN).
//!
//! The converter handles exactly the markdown subset the report emits: `#` headings, pipe
//! tables (with `\|` escapes and `---:` alignment), `![alt](file.svg)` figures, `- ` lists,
//! paragraphs, and inline `**bold**` and `` `code` ``.

use std::io;
use std::path::Path;

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.8rem 0 1.4rem;font-size:0.9rem}
th,td{border:1px solid #ccc;padding:0.25rem 0.55rem}
th{background:#f2f2f2}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa}
code{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace;font-size:0.85em;background:#f4f4f4;padding:0 0.2em}
figure{margin:1rem 0}
figure svg{max-width:100%;height:auto}
figcaption{font-size:0.85rem;color:#555}
";

/// Escapes text for HTML content and attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inline markdown: escapes the text, then turns `` `code` `` and `**bold**` into tags.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (index, piece) in text.split('`').enumerate() {
        // Odd pieces are inside a code span (an unmatched backtick leaves a literal tail).
        if index % 2 == 1 {
            out.push_str("<code>");
            out.push_str(&escape(piece));
            out.push_str("</code>");
        } else {
            let mut bold = false;
            for (part, chunk) in escape(piece).split("**").enumerate() {
                if part > 0 {
                    out.push_str(if bold { "</strong>" } else { "<strong>" });
                    bold = !bold;
                }
                out.push_str(chunk);
            }
            if bold {
                out.push_str("</strong>");
            }
        }
    }
    out
}

/// The cells of a table row, splitting on `|` but not on `\|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                if let Some(cell) = cells.last_mut() {
                    cell.push('|');
                }
            }
            '|' => cells.push(String::new()),
            other => {
                if let Some(cell) = cells.last_mut() {
                    cell.push(other);
                }
            }
        }
    }
    cells
        .into_iter()
        .map(|cell| cell.trim().to_owned())
        .collect()
}

fn table(lines: &[&str]) -> String {
    let header = cells(lines[0]);
    let rule: Vec<String> = lines.get(1).map(|line| cells(line)).unwrap_or_default();
    let right: Vec<bool> = (0..header.len())
        .map(|column| rule.get(column).is_some_and(|cell| cell.ends_with(':')))
        .collect();
    let class = |column: usize| {
        if right.get(column).copied().unwrap_or(false) {
            " class=\"num\""
        } else {
            ""
        }
    };
    let mut out = String::from("<table>\n<thead><tr>");
    for (column, cell) in header.iter().enumerate() {
        out.push_str(&format!("<th{}>{}</th>", class(column), inline(cell)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for line in lines.iter().skip(2) {
        out.push_str("<tr>");
        for (column, cell) in cells(line).iter().enumerate() {
            out.push_str(&format!("<td{}>{}</td>", class(column), inline(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// `![alt](file)` as `(alt, file)`.
fn image(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim().strip_prefix("![")?;
    let (alt, rest) = rest.split_once("](")?;
    let file = rest.strip_suffix(')')?;
    Some((alt, file))
}

/// A figure: the SVG file in `dir` inlined, with a caption linking to the file.
fn figure(alt: &str, file: &str, dir: &Path) -> io::Result<String> {
    let name = Path::new(file)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let body = match std::fs::read_to_string(dir.join(&name)) {
        Ok(svg) => {
            // Drop an XML prolog, which is not allowed inside HTML.
            let start = svg.find("<svg").unwrap_or(0);
            svg[start..].to_owned()
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            format!("<p>(missing: {})</p>", escape(&name))
        }
        Err(error) => return Err(error),
    };
    Ok(format!(
        "<figure id=\"{file}\" data-src=\"{file}\">\n{body}\n<figcaption>{alt} \
         (<a href=\"{file}\">{file}</a>)</figcaption>\n</figure>\n",
        file = escape(&name),
        alt = inline(alt),
    ))
}

/// The report page: `markdown` converted, with the figures it references read from `dir`.
pub fn page(markdown: &str, dir: &Path) -> io::Result<String> {
    let mut body = String::new();
    let lines: Vec<&str> = markdown.lines().collect();
    let mut index = 0;
    let mut title = "Benchmark report".to_owned();
    while index < lines.len() {
        let line = lines[index].trim_end();
        if line.trim().is_empty() {
            index += 1;
        } else if line.starts_with('|') {
            let start = index;
            while index < lines.len() && lines[index].starts_with('|') {
                index += 1;
            }
            body.push_str(&table(&lines[start..index]));
        } else if let Some((alt, file)) = image(line) {
            body.push_str(&figure(alt, file, dir)?);
            index += 1;
        } else if line.starts_with('#') {
            let level = line.chars().take_while(|&c| c == '#').count().min(6);
            let text = line[level..].trim();
            if level == 1 {
                title = text.to_owned();
            }
            body.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text)));
            index += 1;
        } else if line.starts_with("- ") {
            body.push_str("<ul>\n");
            while index < lines.len() && lines[index].starts_with("- ") {
                body.push_str(&format!("<li>{}</li>\n", inline(&lines[index][2..])));
                index += 1;
            }
            body.push_str("</ul>\n");
        } else {
            let mut paragraph = Vec::new();
            while index < lines.len() {
                let next = lines[index].trim_end();
                if next.trim().is_empty()
                    || next.starts_with('|')
                    || next.starts_with('#')
                    || next.starts_with("- ")
                    || image(next).is_some()
                {
                    break;
                }
                paragraph.push(inline(next.trim()));
                index += 1;
            }
            body.push_str(&format!("<p>{}</p>\n", paragraph.join("\n")));
        }
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        title = escape(&title),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_subset() {
        let markdown = "# Report\n\nSome `a|b` and **bold** text.\n\n\
                        | map | 10 |\n|-----|---:|\n| `f(\\|\\| 1)` | **1.5** |\n\n\
                        - one\n- two\n";
        let html = page(markdown, Path::new("/nonexistent")).unwrap();
        assert!(html.contains("<h1>Report</h1>"));
        assert!(html.contains("<code>a|b</code>"));
        assert!(html.contains("<strong>bold</strong>"));
        assert!(
            html.contains(
                "<td><code>f(|| 1)</code></td><td class=\"num\"><strong>1.5</strong></td>"
            )
        );
        assert!(html.contains("<li>two</li>"));
    }

    #[test]
    fn inlines_figures() {
        let dir = std::env::temp_dir().join(format!("report-html-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("f.svg"),
            "<?xml version=\"1.0\"?>\n<svg><title>t</title></svg>",
        )
        .unwrap();
        let html = page("![Figure <1>](f.svg)\n", &dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(html.contains("<svg><title>t</title></svg>"));
        assert!(!html.contains("<?xml"));
        assert!(html.contains("href=\"f.svg\""));
        assert!(html.contains("Figure &lt;1&gt;"));
    }
}
