//! `index.html`: the whole leaderboard on one self-contained page — the table (sortable by
//! clicking a column header: a few lines of inline script), the paired-difference matrix, the
//! figures as inline SVG and each run's settings. Nothing is fetched: no script, font, style or
//! image comes from elsewhere, so the page reads the same offline and leaks nothing.

use std::fmt::Write as _;

use super::table::{cells_of, difference, is_text_column, number, Document, COLUMNS};

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escaped text whose `backticked` spans become `<code>`.
fn with_code(text: &str) -> String {
    escape(text)
        .split('`')
        .enumerate()
        .map(|(i, part)| match i % 2 {
            1 => format!("<code>{part}</code>"),
            _ => part.to_string(),
        })
        .collect()
}

/// An SVG figure made to scale with the page: its fixed size becomes a viewBox.
fn scalable(svg: &str) -> String {
    let attribute = |name: &str| -> Option<String> {
        let head = &svg[..svg.find('>')?];
        let start = head.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = start + head[start..].find('"')?;
        Some(head[start..end].to_string())
    };
    let body = svg.trim_start_matches(|c| c != '<');
    let body = match body.starts_with("<?xml") {
        true => &body[body.find("?>").map_or(0, |i| i + 2)..],
        false => body,
    }
    .trim_start();
    match (
        attribute("width"),
        attribute("height"),
        attribute("viewBox"),
    ) {
        (Some(w), Some(h), None) => body.replacen(
            "<svg ",
            &format!("<svg viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"xMinYMin meet\" "),
            1,
        ),
        _ => body.to_string(),
    }
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1240px;padding:16px;color:#1b1b1b;line-height:1.45}
h1{font-size:1.5rem;margin:.2rem 0 .6rem}h2{font-size:1.15rem;margin-top:1.8rem}
.caption{max-width:70ch}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;border:1px solid #ddd;border-radius:6px}
table{border-collapse:collapse;font-size:.85rem;width:max-content;min-width:100%}
th,td{padding:.35rem .55rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f4f6f8;position:sticky;top:0;cursor:pointer;user-select:none}
th.text,td.text{text-align:left}
th[aria-sort=descending]::after{content:' \\25BE'}th[aria-sort=ascending]::after{content:' \\25B4'}
tr.paper td{color:#555;background:#fafafa}
.sig{font-weight:600}
figure{margin:1.2rem 0}figure svg{max-width:100%;height:auto;display:block}
figcaption{font-size:.85rem;color:#444}
details{margin:.4rem 0}summary{cursor:pointer}
code{font-size:.85em}
@media (max-width:600px){body{padding:8px}h1{font-size:1.2rem}table{font-size:.78rem}}
";

/// Sorts the table by the clicked header: numbers by their data-value, text by its words;
/// a second click reverses the order.
const SCRIPT: &str = "
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, column) {
    th.addEventListener('click', function () {
      var descending = th.getAttribute('aria-sort') !== 'descending';
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column], y = b.cells[column];
        var nx = parseFloat(x.getAttribute('data-value')), ny = parseFloat(y.getAttribute('data-value'));
        var order = (isNaN(nx) || isNaN(ny)) ? x.textContent.localeCompare(y.textContent) : nx - ny;
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
";

/// The class attribute that left-aligns a column of words (numbers stay right-aligned).
fn alignment_class(column: &str) -> &'static str {
    match is_text_column(column) {
        true => " class=\"text\"",
        false => "",
    }
}

/// The page, from the document and the figures (file name, what it shows, SVG).
pub fn render(document: &Document, figures: &[(String, String, String)]) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <title>valuelens leaderboard</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Leaderboard: the value–action gap</h1>\n<p class=\"caption\">{}</p>\n",
        with_code(&document.caption)
    );
    // The table: numeric columns carry their number for sorting.
    let _ = writeln!(
        html,
        "<div class=\"scroll\"><table class=\"sortable\" id=\"leaderboard\">\n<thead><tr>"
    );
    for column in COLUMNS {
        let class = alignment_class(column);
        // The rows arrive sorted by F1, highest first: the header says so, and a click on it
        // reverses them.
        let sorted = match column {
            "F1" => " aria-sort=\"descending\"",
            _ => "",
        };
        let _ = write!(
            html,
            "<th scope=\"col\"{class}{sorted} data-column=\"{}\">{}</th>",
            escape(column),
            escape(column)
        );
    }
    let _ = writeln!(html, "</tr></thead>\n<tbody>");
    for row in &document.rows {
        let class = match row.source {
            "paper" => " class=\"paper\"",
            _ => "",
        };
        let _ = write!(html, "<tr{class}>");
        for (column, (text, value)) in COLUMNS.iter().zip(cells_of(row)) {
            let class = alignment_class(column);
            let data = value.map_or(String::new(), |v| format!(" data-value=\"{v}\""));
            let _ = write!(html, "<td{class}{data}>{}</td>", escape(&text));
        }
        let _ = writeln!(html, "</tr>");
    }
    let _ = writeln!(html, "</tbody></table></div>");
    if document.rows.len() > 1 {
        let _ = writeln!(
            html,
            "<h2>Paired differences in F1 (row − column)</h2>\n<p class=\"caption\">Over the \
             cells both cover, with 95 % paired bootstrap intervals over scenarios (the same \
             resamples for both models); <span class=\"sig\">bold</span>: the interval leaves 0 \
             out.</p>\n<div class=\"scroll\"><table id=\"pairs\">\n<thead><tr><th class=\"text\">\
             </th>"
        );
        for row in &document.rows {
            let _ = write!(html, "<th>{}</th>", escape(&row.label));
        }
        let _ = writeln!(html, "</tr></thead><tbody>");
        for (row, cells) in document.rows.iter().zip(document.pair_matrix()) {
            let _ = write!(html, "<tr><th class=\"text\">{}</th>", escape(&row.label));
            for cell in cells {
                let (class, text) = match cell.strip_suffix(" *") {
                    Some(text) => (" class=\"sig\"", text.to_string()),
                    None => ("", cell),
                };
                let _ = write!(html, "<td{class}>{}</td>", escape(&text));
            }
            let _ = writeln!(html, "</tr>");
        }
        let _ = writeln!(html, "</tbody></table></div>");
        let _ = writeln!(
            html,
            "<details><summary>Every pair: distance and rank agreement of the per-value gaps\
             </summary><div class=\"scroll\"><table>\n<thead><tr><th class=\"text\">a</th>\
             <th class=\"text\">b</th><th>cells</th><th>F1 a − b</th><th>distance a − b</th>\
             <th>gap ranks (Spearman)</th></tr></thead><tbody>"
        );
        for p in &document.pairs {
            let _ =
                writeln!(
                html,
                "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                escape(&p.a),
                escape(&p.b),
                p.cells,
                escape(&difference(&p.f1_difference, p.f1_excludes_zero)),
                escape(&difference(&p.distance_difference, p.distance_excludes_zero)),
                number(p.gap_rank_agreement, 3)
            );
        }
        let _ = writeln!(html, "</tbody></table></div></details>");
    }
    let _ = writeln!(html, "<h2>Figures</h2>");
    for (_, what, svg) in figures {
        let _ = writeln!(
            html,
            "<figure>{}<figcaption>{}</figcaption></figure>",
            scalable(svg),
            escape(what)
        );
    }
    let _ = writeln!(html, "<h2>Settings of each row</h2>");
    for row in &document.rows {
        let _ = writeln!(
            html,
            "<details><summary>{}</summary><ul><li>source: {}</li><li>model: {}{}</li>\
             <li>protocol {}, debias {}, scoring {}</li><li>selection: {}</li><li>{} cells</li>\
             </ul></details>",
            escape(&row.label),
            escape(&row.path),
            escape(&row.model.name),
            escape(
                &match (&row.model.file, &row.model.sha256, &row.model.dtype) {
                    (Some(file), Some(sha), Some(dtype)) => format!(
                        " — {file}, sha256 {sha}, {dtype} on {}",
                        row.model.device.clone().unwrap_or_default()
                    ),
                    _ => format!(" — {}", row.model.device.clone().unwrap_or_default()),
                }
            ),
            escape(&row.protocol),
            escape(&row.debias),
            escape(&row.scoring),
            escape(&row.selection),
            row.cells
        );
    }
    let _ = write!(html, "<script>{SCRIPT}</script>\n</body>\n</html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_scale_and_text_is_escaped() {
        let svg = "<svg width=\"820\" height=\"300\" xmlns=\"http://www.w3.org/2000/svg\"></svg>";
        assert!(scalable(svg).starts_with("<svg viewBox=\"0 0 820 300\""));
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(with_code("run `a<b` now"), "run <code>a&lt;b</code> now");
    }
}
