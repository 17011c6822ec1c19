//! Draws the SVG charts of coserve's measurements from the CSVs they
//! write, so that no measurement compiles a plotting library:
//!
//! ```sh
//! cargo run -p coserve-chart -- engines target/engines.csv target/engines.svg
//! cargo run -p coserve-chart -- compare target/compare/compare-STAMP.csv out.svg "title"
//! ```
//!
//! - `engines`: `benches/engines.rs`'s CSV as two bar charts, throughput
//!   (log scale) and peak RSS growth, a bar per engine in each scenario.
//! - `compare`: `scripts/bench/compare.sh`'s CSV as a panel per scenario
//!   and a bar per server: coserve's bars in orange, the null peer's (a
//!   server that costs nothing) in grey, the other peers' in purple.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const USAGE: &str =
    "usage: chart engines ENGINES.csv OUT.svg\n       chart compare COMPARE.csv OUT.svg [TITLE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let drawn = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["engines", csv, svg] => read_csv(csv).and_then(|t| engines(&t, Path::new(svg))),
        ["compare", csv, svg] => {
            read_csv(csv).and_then(|t| compare(&t, Path::new(svg), "coserve and its peers"))
        }
        ["compare", csv, svg, title] => {
            read_csv(csv).and_then(|t| compare(&t, Path::new(svg), title))
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match drawn {
        Ok(()) => {
            println!("wrote {}", args[2]);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chart: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// CSV

/// A CSV file: its rows as column name to value.
struct Table {
    rows: Vec<HashMap<String, String>>,
}

impl Table {
    /// The values of `column`, in order, each once.
    fn distinct(&self, column: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for row in &self.rows {
            if let Some(v) = row.get(column).map(String::as_str)
                && !out.contains(&v)
            {
                out.push(v);
            }
        }
        out
    }
}

/// A number field; `None` when empty or not a number (`NaN` included).
fn number(row: &HashMap<String, String>, column: &str) -> Option<f64> {
    row.get(column)?.parse::<f64>().ok().filter(|v| !v.is_nan())
}

fn read_csv(path: &str) -> Result<Table, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let header = split_csv_line(lines.next().ok_or_else(|| format!("{path}: empty"))?);
    let rows = lines
        .map(|l| header.iter().cloned().zip(split_csv_line(l)).collect())
        .collect();
    Ok(Table { rows })
}

/// One line's fields; a field in double quotes may hold commas, and `""`
/// inside it is one quote.
fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("at least one field");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => field.push(c),
        }
    }
    fields
}

// ---------------------------------------------------------------------------
// engines

/// Throughput on a log scale above, peak RSS growth below; a group of bars
/// per scenario, one per engine.
fn engines(table: &Table, path: &Path) -> Result<(), String> {
    let names = table.distinct("scenario");
    let engines = table.distinct("engine");
    if names.is_empty() {
        return Err("no rows".into());
    }
    let find = |si: usize, ei: usize| {
        table.rows.iter().find(|r| {
            r.get("scenario").is_some_and(|v| v == names[si])
                && r.get("engine").is_some_and(|v| v == engines[ei])
        })
    };
    let rps = |r: &HashMap<String, String>| number(r, "req_per_s").unwrap_or(0.0);
    let grown = |r: &HashMap<String, String>| number(r, "rss_delta_mib").unwrap_or(0.0);

    let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(450);
    let max_rps = table.rows.iter().map(rps).fold(10.0, f64::max);
    grouped_bars(
        &top,
        ("Throughput (correct responses/s, log scale)", "req/s"),
        (1.0..max_rps * 2.0).log_scale(),
        (&names, &engines),
        |si, ei| {
            let r = find(si, ei)?;
            let v = rps(r);
            (r.get("kind").is_some_and(|k| k == "load") && v >= 1.0).then_some((1.0, v))
        },
    )?;
    let max_mem = table.rows.iter().map(grown).fold(1.0, f64::max);
    grouped_bars(
        &bottom,
        (
            "Peak RSS growth during the scenario (MiB, server + load generator)",
            "MiB",
        ),
        0.0..max_mem * 1.1,
        (&names, &engines),
        |si, ei| find(si, ei).map(|r| (0.0, grown(r))),
    )?;
    root.present().map_err(|e| e.to_string())
}

/// A bar chart on `area` with its caption and y axis description: a group
/// per name (scenario), a bar per series (engine) from `bar(name, series)`,
/// which gives the bar's bottom and top (none: no bar).
fn grouped_bars<Y>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    (caption, y_desc): (&str, &str),
    y: Y,
    (names, series): (&[&str], &[&str]),
    bar: impl Fn(usize, usize) -> Option<(f64, f64)>,
) -> Result<(), String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let width = 0.8 / series.len().max(1) as f64;
    let n = names.len() as f64;
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
            names[i as usize].to_string()
        } else {
            String::new()
        }
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..n - 0.5, y)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len())
        .x_label_formatter(&label)
        .y_desc(y_desc)
        .draw()
        .map_err(e)?;
    for (ei, &name) in series.iter().enumerate() {
        let color = colors[ei % colors.len()];
        let bars: Vec<_> = (0..names.len())
            .filter_map(|si| {
                let (bottom, top) = bar(si, ei)?;
                let x0 = si as f64 - 0.4 + ei as f64 * width;
                Some(Rectangle::new(
                    [(x0, bottom), (x0 + width, top)],
                    color.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// compare

/// The panels: the scenario (a prefix of the CSV's), the column, the title.
const PANELS: [(&str, &str, &str); 4] = [
    ("small", "req_per_s", "1 KiB, 64 connections (req/s)"),
    ("c1000", "req_per_s", "1 KiB, 1,000 connections (req/s)"),
    ("large", "req_per_s", "10 MiB, 16 connections (req/s)"),
    (
        "idle",
        "per_conn_kib",
        "KiB per idle connection (lower is better)",
    ),
];
const WIDTH: i32 = 760;
const LABEL_W: i32 = 130;
const BAR_H: i32 = 16;
const GAP: i32 = 4;

/// A panel per scenario, a horizontal bar per server with its value.
fn compare(table: &Table, path: &Path, title: &str) -> Result<(), String> {
    let servers = table.distinct("server");
    let panel_h = 28 + servers.len() as i32 * (BAR_H + GAP) + 10;
    let height = 40 + PANELS.len() as i32 * panel_h;
    let root = SVGBackend::new(path, (WIDTH as u32, height as u32)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    // plotters divides a font's size by 1.24 in SVG: these are 12 and 15 px.
    let font = |px: f64, bold: bool| {
        let f = ("sans-serif", px * 1.24).into_font();
        if bold { f.style(FontStyle::Bold) } else { f }
    };
    let text = |s: &str, (x, y): (i32, i32), style: TextStyle| {
        root.draw(&Text::new(s.to_string(), (x, y), style))
            .map_err(e)
    };
    let left = |f| TextStyle::from(f).pos(Pos::new(HPos::Left, VPos::Center));
    text(title, (10, 20), left(font(15.0, true)))?;
    let mut y = 40;
    for (scenario, column, label) in PANELS {
        let mut values = HashMap::new();
        for r in &table.rows {
            if r.get("scenario").is_some_and(|s| s.starts_with(scenario))
                && let (Some(server), Some(v)) = (r.get("server"), number(r, column))
            {
                values.insert(server.as_str(), v);
            }
        }
        text(label, (10, y + 13), left(font(12.0, true)))?;
        let top = values.values().copied().fold(0.0, f64::max);
        let top = if top > 0.0 { top } else { 1.0 };
        let mut by = y + 26;
        for &server in &servers {
            let middle = by + BAR_H / 2 + 1;
            let right = TextStyle::from(font(12.0, false)).pos(Pos::new(HPos::Right, VPos::Center));
            text(server, (LABEL_W - 6, middle), right)?;
            if let Some(&v) = values.get(server) {
                let width = (f64::from(WIDTH - LABEL_W - 110) * v / top).round() as i32;
                let colour = if server.starts_with("coserve") {
                    RGBColor(0xd9, 0x5f, 0x02)
                } else if server.starts_with("null") {
                    RGBColor(0x99, 0x99, 0x99)
                } else {
                    RGBColor(0x75, 0x70, 0xb3)
                };
                root.draw(&Rectangle::new(
                    [(LABEL_W, by), (LABEL_W + width, by + BAR_H)],
                    colour.filled(),
                ))
                .map_err(e)?;
                let shown = if column == "req_per_s" {
                    thousands(v.round() as u64)
                } else {
                    format!("{v:.2}")
                };
                text(
                    &shown,
                    (LABEL_W + width + 5, middle),
                    left(font(12.0, false)),
                )?;
            }
            by += BAR_H + GAP;
        }
        y += panel_h;
    }
    root.present().map_err(e)
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_may_be_quoted() {
        assert_eq!(
            split_csv_line(r#"a,"b, c",,"say ""hi""""#),
            ["a", "b, c", "", r#"say "hi""#]
        );
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(221_064), "221,064");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
