//! Draws the SVG charts of coserve's measurements from the CSVs they
//! write, so that no measurement compiles a plotting library:
//!
//! ```sh
//! cargo run -p coserve-chart -- engines target/engines.csv target/engines.svg
//! cargo run -p coserve-chart -- compare target/compare/compare-STAMP.csv out.svg "title"
//! cargo run -p coserve-chart -- ws target/engines-ws.csv target/engines-ws.svg
//! ```
//!
//! - `engines`: `benches/engines.rs`'s CSV as two bar charts, throughput
//!   (log scale) and peak RSS growth, a bar per engine in each scenario.
//! - `compare`: `scripts/bench/compare.sh`'s CSV as a panel per scenario
//!   and a bar per server: coserve's bars in orange, the null peer's (a
//!   server that costs nothing) in grey, the other peers' in purple.
//! - `ws`: the WebSocket CSV of `benches/engines.rs` as four small panels,
//!   the coroutine engine's bar beside the thread engine's in each: idle
//!   KiB per connection, echo messages/s, echo p99, and the broadcast's
//!   last subscriber (median of the rounds), with the targets as dashed
//!   lines.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const USAGE: &str = "usage: chart engines ENGINES.csv OUT.svg
       chart compare COMPARE.csv OUT.svg [TITLE]
       chart ws ENGINES-WS.csv OUT.svg";

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
        ["ws", csv, svg] => read_csv(csv).and_then(|t| ws(&t, Path::new(svg))),
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
    parse_csv(&text).ok_or_else(|| format!("{path}: empty"))
}

/// A CSV's text as a table; `None` without a header line.
fn parse_csv(text: &str) -> Option<Table> {
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let header = split_csv_line(lines.next()?);
    let rows = lines
        .map(|l| header.iter().cloned().zip(split_csv_line(l)).collect())
        .collect();
    Some(Table { rows })
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

/// The colours of the series, in the CSV's order of engines: coroutine,
/// thread, may_minihttp; the `ws` chart reuses the first two so that an
/// engine has one colour in every chart.
const SERIES_COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

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
    let colors = SERIES_COLOURS;
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

// ---------------------------------------------------------------------------
// ws

/// The engines the WebSocket chart sets side by side, each in its colour
/// of the `engines` chart.
const WS_ENGINES: [(&str, RGBColor); 2] = [
    ("coroutine", SERIES_COLOURS[0]),
    ("thread", SERIES_COLOURS[1]),
];
const WS_W: u32 = 960;
const WS_HEAD: i32 = 70;
const WS_PANEL_W: i32 = 480;
const WS_PANEL_H: i32 = 290;
const WS_BAR_W: i32 = 64;
/// Between the two bars of a group: wide enough that the values written
/// above them ("108,584 msg/s") do not run into each other.
const WS_BAR_GAP: i32 = 28;
/// Right of a panel with a target line, where its label goes, so that the
/// label never sits on a bar.
const WS_TARGET_GUTTER: i32 = 90;
const WS_TEXT: RGBColor = RGBColor(0x33, 0x33, 0x33);
const WS_FAINT: RGBColor = RGBColor(0x77, 0x77, 0x77);

/// One panel of the `ws` chart: a measure, one group of bars per `kind`.
struct WsPanel {
    title: String,
    /// Which way is better, written under the title.
    better: &'static str,
    column: &'static str,
    /// Written after each value.
    unit: &'static str,
    /// Each group's `kind` and a line under its name saying what it is.
    groups: &'static [(&'static str, &'static str)],
    /// A dashed line at this value, with its label.
    target: Option<(f64, &'static str)>,
}

/// The WebSocket rows as four panels (idle memory, echo throughput, echo
/// p99, broadcast's last subscriber), the coroutine engine's bar beside
/// the thread engine's in each.
fn ws(table: &Table, path: &Path) -> Result<(), String> {
    let height = WS_HEAD + 2 * WS_PANEL_H;
    let root = SVGBackend::new(path, (WS_W, height as u32)).into_drawing_area();
    draw_ws(table, &root)?;
    root.present().map_err(|e| e.to_string())
}

/// [`ws`]'s drawing on `root`, apart from writing it out (the tests draw to
/// a string).
fn draw_ws(table: &Table, root: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String> {
    let kinds = table.distinct("kind");
    if !["idle", "echo", "broadcast"]
        .iter()
        .any(|k| kinds.contains(k))
    {
        return Err("no WebSocket rows (kind idle, echo or broadcast)".into());
    }
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let left = Pos::new(HPos::Left, VPos::Center);
    let title = "WebSocket: coroutine engine against thread engine";
    ws_text(root, title, (20, 22), font(16.0, true), WS_TEXT, left)?;
    let subtitle = format!("connections: {}", ws_counts(table));
    ws_text(root, &subtitle, (20, 46), font(12.0, false), WS_FAINT, left)?;
    for (i, (engine, colour)) in WS_ENGINES.iter().enumerate() {
        let x = WS_W as i32 - 260 + i as i32 * 135;
        root.draw(&Rectangle::new([(x, 16), (x + 12, 28)], colour.filled()))
            .map_err(|e| e.to_string())?;
        let label = format!("{engine} engine");
        ws_text(root, &label, (x + 18, 22), font(12.0, false), WS_TEXT, left)?;
    }
    for (i, panel) in ws_panels(table).iter().enumerate() {
        let origin = (
            (i as i32 % 2) * WS_PANEL_W,
            WS_HEAD + (i as i32 / 2) * WS_PANEL_H,
        );
        ws_panel(table, root, panel, origin)?;
    }
    Ok(())
}

/// The four panels; the echo's title takes its client count from the CSV.
fn ws_panels(table: &Table) -> [WsPanel; 4] {
    const BLOCKING: &str = "blocking WebSocket";
    let echo = match WS_ENGINES
        .iter()
        .find_map(|(e, _)| ws_connections(table, e, "echo"))
    {
        Some(n) => format!("Echo, messages/s at {} clients", thousands(n)),
        None => "Echo, messages/s".to_string(),
    };
    [
        WsPanel {
            title: "Idle memory, KiB per connection".into(),
            better: "lower is better",
            column: "kib_per_conn",
            unit: "KiB",
            groups: &[("idle", BLOCKING), ("idle events", "ws::WsEvents")],
            target: Some((8.0, "target 8 KiB")),
        },
        WsPanel {
            title: echo,
            better: "higher is better",
            column: "msg_per_s",
            unit: "msg/s",
            groups: &[("echo", BLOCKING)],
            target: None,
        },
        WsPanel {
            title: "Echo, p99 round trip, ms".into(),
            better: "lower is better",
            column: "p99_ms",
            unit: "ms",
            groups: &[("echo", BLOCKING)],
            target: None,
        },
        WsPanel {
            title: "Broadcast: last subscriber, median of rounds, ms".into(),
            better: "lower is better",
            column: "last_median_ms",
            unit: "ms",
            groups: &[
                ("broadcast", BLOCKING),
                ("broadcast events", "ws::WsEvents"),
            ],
            target: Some((100.0, "target 100 ms")),
        },
    ]
}

/// One panel with its top left corner at `(x0, y0)`: the title, then a
/// group of bars per kind over a baseline, each bar's value written above
/// it, or "–" where the row or its value is missing.
fn ws_panel(
    table: &Table,
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &WsPanel,
    (x0, y0): (i32, i32),
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let left = Pos::new(HPos::Left, VPos::Center);
    let centre = Pos::new(HPos::Center, VPos::Center);
    let above = Pos::new(HPos::Center, VPos::Bottom);
    ws_text(
        root,
        &panel.title,
        (x0 + 20, y0 + 14),
        font(13.0, true),
        WS_TEXT,
        left,
    )?;
    ws_text(
        root,
        panel.better,
        (x0 + 20, y0 + 32),
        font(12.0, false),
        WS_FAINT,
        left,
    )?;

    let gutter = if panel.target.is_some() {
        WS_TARGET_GUTTER
    } else {
        0
    };
    let (plot_l, plot_r) = (x0 + 30, x0 + WS_PANEL_W - 20 - gutter);
    let (plot_t, base) = (y0 + 60, y0 + WS_PANEL_H - 50);
    let value = |kind: &str, engine: &str| {
        let row = table.rows.iter().find(|r| {
            r.get("engine").is_some_and(|v| v == engine) && r.get("kind").is_some_and(|v| v == kind)
        })?;
        number(row, panel.column).filter(|v| *v >= 0.0)
    };
    // The tallest bar (or the target) at 9/10 of the height: room above it
    // for its value.
    let top = panel
        .groups
        .iter()
        .flat_map(|(kind, _)| WS_ENGINES.iter().filter_map(move |(en, _)| value(kind, en)))
        .chain(panel.target.map(|(t, _)| t))
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top / 0.9 } else { 1.0 };
    let y_of = |v: f64| base - (f64::from(base - plot_t) * v / top).round() as i32;

    let slot = (plot_r - plot_l) / panel.groups.len() as i32;
    for (gi, (kind, what)) in panel.groups.iter().enumerate() {
        let cx = plot_l + slot * gi as i32 + slot / 2;
        for (ei, (engine, colour)) in WS_ENGINES.iter().enumerate() {
            let bx = cx - WS_BAR_GAP / 2 - WS_BAR_W + ei as i32 * (WS_BAR_W + WS_BAR_GAP);
            let mid = bx + WS_BAR_W / 2;
            let shown = match value(kind, engine) {
                Some(v) => {
                    let y = y_of(v);
                    root.draw(&Rectangle::new(
                        [(bx, y), (bx + WS_BAR_W, base)],
                        colour.filled(),
                    ))
                    .map_err(e)?;
                    ws_text(
                        root,
                        &ws_shown(v, panel.unit),
                        (mid, y - 4),
                        font(12.0, false),
                        WS_TEXT,
                        above,
                    )?;
                    continue;
                }
                None => "–",
            };
            ws_text(
                root,
                shown,
                (mid, base - 4),
                font(14.0, false),
                WS_FAINT,
                above,
            )?;
        }
        ws_text(
            root,
            kind,
            (cx, base + 14),
            font(12.0, false),
            WS_TEXT,
            centre,
        )?;
        ws_text(
            root,
            what,
            (cx, base + 30),
            font(11.0, false),
            WS_FAINT,
            centre,
        )?;
    }
    let axis = ShapeStyle::from(&WS_FAINT).stroke_width(1);
    root.draw(&PathElement::new(
        vec![(plot_l, base), (plot_r, base)],
        axis,
    ))
    .map_err(e)?;
    if let Some((target, label)) = panel.target {
        // Drawn after the bars, so that it shows across them.
        let y = y_of(target);
        let dashed = ShapeStyle::from(&BLACK).stroke_width(1);
        root.draw(&DashedPathElement::new(
            vec![(plot_l, y), (plot_r, y)],
            6,
            4,
            dashed,
        ))
        .map_err(e)?;
        ws_text(
            root,
            label,
            (plot_r + 6, y),
            font(11.0, false),
            WS_TEXT,
            left,
        )?;
    }
    Ok(())
}

/// Writes `s` at `at`, placed by `pos`, in `colour`.
fn ws_text(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    s: &str,
    at: (i32, i32),
    font: FontDesc<'static>,
    colour: RGBColor,
    pos: Pos,
) -> Result<(), String> {
    let style = TextStyle::from(font).color(&colour).pos(pos);
    root.draw(&Text::new(s.to_string(), at, style))
        .map_err(|e| e.to_string())
}

/// A value with its unit: thousands separated from 1,000 up, one decimal
/// below.
fn ws_shown(v: f64, unit: &str) -> String {
    if v >= 1000.0 {
        format!("{} {unit}", thousands(v.round() as u64))
    } else {
        format!("{v:.1} {unit}")
    }
}

/// The connection count of an engine's rows of `kind`, or of `kind events`
/// when the plain kind is missing.
fn ws_connections(table: &Table, engine: &str, kind: &str) -> Option<u64> {
    let events = format!("{kind} events");
    [kind, events.as_str()].iter().find_map(|k| {
        let row = table.rows.iter().find(|r| {
            r.get("engine").is_some_and(|v| v == engine) && r.get("kind").is_some_and(|v| v == k)
        })?;
        number(row, "connections").map(|n| n as u64)
    })
}

/// The connection counts, such as `idle 10,000 · echo 1,000 · broadcast
/// 10,000 (thread 9,750)`: the coroutine engine's, and the thread engine's
/// where it differs (the bench caps it lower, its broadcast subscribers
/// holding two descriptors each).
fn ws_counts(table: &Table) -> String {
    let counts: Vec<String> = ["idle", "echo", "broadcast"]
        .iter()
        .filter_map(|kind| {
            let mut counts = WS_ENGINES
                .iter()
                .filter_map(|(e, _)| Some((*e, ws_connections(table, e, kind)?)));
            let (_, first) = counts.next()?;
            let others: String = counts
                .filter(|(_, n)| *n != first)
                .map(|(e, n)| format!(" ({e} {})", thousands(n)))
                .collect();
            Some(format!("{kind} {}{others}", thousands(first)))
        })
        .collect();
    counts.join(" · ")
}

// ---------------------------------------------------------------------------
// text

/// A sans-serif font of `px` pixels. plotters divides a font's size by
/// 1.24 in SVG, so the size asked for is `px` times that.
fn font(px: f64, bold: bool) -> FontDesc<'static> {
    let f = ("sans-serif", px * 1.24).into_font();
    if bold { f.style(FontStyle::Bold) } else { f }
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

    /// The thread engine's `idle events` row is missing and its echo p99
    /// is `NaN`: their bars are "–", the others are drawn with their values.
    #[test]
    fn ws_draws_around_missing_rows() {
        let csv = "engine,kind,connections,msg_per_s,p99_ms,last_median_ms,kib_per_conn
coroutine,idle,10000,NaN,NaN,NaN,13.88
coroutine,idle events,10000,NaN,NaN,NaN,3.49
coroutine,echo,1000,108584.0,13.408,NaN,
coroutine,broadcast,10000,NaN,259.3,124.664,NaN
coroutine,broadcast events,10000,NaN,255.8,115.780,NaN
thread,idle,10000,NaN,NaN,NaN,16.94
thread,echo,1000,55102.7,NaN,NaN,NaN
thread,broadcast,9750,NaN,740.4,223.034,NaN
thread,broadcast events,9750,NaN,900.3,212.270,NaN
";
        let table = parse_csv(csv).expect("a header");
        let mut svg = String::new();
        {
            let size = (WS_W, (WS_HEAD + 2 * WS_PANEL_H) as u32);
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            draw_ws(&table, &root).expect("drawn");
            root.present().expect("written");
        }
        for shown in [
            "13.9 KiB",
            "3.5 KiB",
            "16.9 KiB",
            "108,584 msg/s",
            "55,103 msg/s",
            "13.4 ms",
            "124.7 ms",
            "212.3 ms",
            "target 8 KiB",
            "broadcast 10,000 (thread 9,750)",
        ] {
            assert!(svg.contains(shown), "{shown} missing");
        }
        assert_eq!(svg.matches("\n–\n").count(), 2, "a dash per missing bar");
    }

    #[test]
    fn ws_wants_websocket_rows() {
        let table = parse_csv("engine,kind\ncoroutine,load\n").expect("a header");
        let mut svg = String::new();
        let root = SVGBackend::with_string(&mut svg, (10, 10)).into_drawing_area();
        assert!(draw_ws(&table, &root).is_err());
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(221_064), "221,064");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
