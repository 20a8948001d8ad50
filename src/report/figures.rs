//! The run's figures as SVG: alignment rate (F1) by country and by topic with 95 % intervals,
//! alignment-distance heatmaps value × country and value × topic (short names as in the paper's
//! figures) with their colour scale, per country the ten values with the largest and the ten
//! with the smallest value–action gap (the paper's Figure 5), and the share of Task-2 answers
//! "Option 1" per prompt variant. Countries, topics and values a filtered run did not cover are
//! left out.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::MetricsReport;
use crate::metrics;
use crate::metrics::bias::VariantShare;
use crate::output::write_atomically;
use crate::via::vocabulary::{COUNTRIES, COUNTRY_ABBREVIATIONS, TOPIC_SHORT_NAMES, VALUES};

/// Writes every figure into `dir` (created if needed) and returns the files written.
pub fn write_figures(dir: &Path, report: &MetricsReport) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the figures folder {}", dir.display()))?;
    let mut written = Vec::new();
    let mut save = |name: String, svg: String| -> Result<()> {
        let path = dir.join(name);
        write_atomically(&path, |w| Ok(w.write_all(svg.as_bytes())?))?;
        written.push(path);
        Ok(())
    };
    let model = &report.model;
    save(
        "f1_by_country.svg".into(),
        bars(
            &format!("Alignment rate (F1) by country, with 95 % CIs — {model}"),
            &covered(
                &report.alignment_rate.by_country,
                &report.f1_ci95_by_country,
            ),
        )?,
    )?;
    save(
        "f1_by_topic.svg".into(),
        bars(
            &format!("Alignment rate (F1) by topic, with 95 % CIs — {model}"),
            &covered(&report.alignment_rate.by_topic, &report.f1_ci95_by_topic),
        )?,
    )?;
    if let Some(positions) = &report.bias.task2 {
        save(
            "task2_positions.svg".into(),
            position_chart(
                &format!("Task 2: share of questions answered \"Option 1\", by variant — {model}"),
                &positions.by_variant,
            )?,
        )?;
    }
    save(
        "distance_country_value.svg".into(),
        heatmap(
            &format!("Alignment distance |v − a|, value × country — {model}"),
            &COUNTRY_ABBREVIATIONS,
            &report.distances.by_country,
        )?,
    )?;
    save(
        "distance_topic_value.svg".into(),
        heatmap(
            &format!("Alignment distance |v − a|, value × topic — {model}"),
            &TOPIC_SHORT_NAMES,
            &report.distances.by_topic,
        )?,
    )?;
    for (country, row) in COUNTRIES.iter().zip(&report.distances.by_country) {
        let ranked = metrics::ranking(row);
        if ranked.is_empty() {
            continue;
        }
        save(
            format!("gaps_{}.svg", slug(country)),
            gaps(
                &format!("Largest and smallest value–action gaps — {country} — {model}"),
                &ranked,
            )?,
        )?;
    }
    Ok(written)
}

/// The groups a run covered, with their intervals.
fn covered(
    rows: &[(String, f64)],
    cis: &[Option<[f64; 2]>],
) -> Vec<(String, f64, Option<[f64; 2]>)> {
    rows.iter()
        .zip(cis)
        .filter(|((_, x), _)| !x.is_nan())
        .map(|((name, x), ci)| (name.clone(), *x, *ci))
        .collect()
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a figure: {e:?}")
}

/// Category names beside an axis, centred on their rows (or columns): drawn by hand because
/// plotters' discrete axes add an empty segment and its labels cannot be placed freely.
fn category_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    names: &[String],
    anchor: impl Fn(usize) -> (i32, i32),
    pos: Pos,
) -> Result<()> {
    for (i, name) in names.iter().enumerate() {
        let style = ("sans-serif", 12).into_font().color(&BLACK).pos(pos);
        root.draw(&Text::new(name.clone(), anchor(i), style))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// One horizontal bar: its label, length and colour, and an interval drawn as a whisker.
pub(crate) struct Bar {
    pub name: String,
    pub length: f64,
    pub colour: RGBAColor,
    pub ci: Option<[f64; 2]>,
}

/// Horizontal bars, the first at the top, each with its value printed after it (and after its
/// whisker, where it has one), and a dashed vertical line at `reference` where given. Labels
/// stay horizontal: long category names need no rotation.
pub(crate) fn horizontal_bars(
    title: &str,
    bars: &[Bar],
    x_max: f64,
    x_desc: &str,
    reference: Option<f64>,
) -> Result<String> {
    let n = bars.len();
    // Row i (from the top) spans y ∈ [n − i − 1, n − i].
    let row = |i: usize| (n - i - 1) as f64;
    let mut svg = String::new();
    {
        let height = (140 + 28 * n) as u32;
        let root = SVGBackend::with_string(&mut svg, (820, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(200)
            .build_cartesian_2d(0.0..x_max, 0.0..n as f64)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .y_labels(0)
            .x_desc(x_desc)
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, bar)| {
                let mut rectangle = Rectangle::new(
                    [(0.0, row(i)), (bar.length, row(i) + 1.0)],
                    bar.colour.filled(),
                );
                rectangle.set_margin(4, 4, 0, 0);
                rectangle
            }))
            .map_err(plot_error)?;
        let whiskers = bars.iter().enumerate().filter_map(|(i, bar)| {
            let [lo, hi] = bar.ci?;
            let y = row(i) + 0.5;
            let cap = 0.18;
            Some(
                [
                    vec![(lo, y), (hi, y)],
                    vec![(lo, y - cap), (lo, y + cap)],
                    vec![(hi, y - cap), (hi, y + cap)],
                ]
                .into_iter()
                .map(|points| PathElement::new(points, BLACK.stroke_width(1))),
            )
        });
        chart.draw_series(whiskers.flatten()).map_err(plot_error)?;
        if let Some(x) = reference {
            let dashes = (0..2 * n).map(|i| {
                let y = i as f64 / 2.0;
                PathElement::new(
                    vec![(x, y + 0.1), (x, y + 0.35)],
                    BLACK.mix(0.5).stroke_width(1),
                )
            });
            chart.draw_series(dashes).map_err(plot_error)?;
        }
        chart
            .draw_series(bars.iter().enumerate().map(|(i, bar)| {
                let end = bar.ci.map_or(bar.length, |[_, hi]| hi.max(bar.length));
                Text::new(
                    format!(" {:.3}", bar.length),
                    (end, row(i) + 0.5),
                    ("sans-serif", 12)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )
            }))
            .map_err(plot_error)?;
        let names: Vec<String> = bars.iter().map(|b| b.name.clone()).collect();
        category_labels(
            &root,
            &names,
            |i| {
                let (x, y) = chart.backend_coord(&(0.0, row(i) + 0.5));
                (x - 8, y)
            },
            Pos::new(HPos::Right, VPos::Center),
        )?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// F1 per country or topic, with its interval.
fn bars(title: &str, rows: &[(String, f64, Option<[f64; 2]>)]) -> Result<String> {
    let bars: Vec<Bar> = rows
        .iter()
        .map(|(name, f1, ci)| Bar {
            name: name.clone(),
            length: *f1,
            colour: BLUE.mix(0.6),
            ci: *ci,
        })
        .collect();
    horizontal_bars(
        title,
        &bars,
        1.15,
        "alignment rate (F1, positive class = Disagree); whiskers: 95 % bootstrap interval",
        None,
    )
}

/// The share of Task-2 questions answered "Option 1" per variant, coloured by which action
/// Option 1 offered; a model without a position preference sits at the dashed line (0.5).
fn position_chart(title: &str, variants: &[VariantShare]) -> Result<String> {
    let bars: Vec<Bar> = variants
        .iter()
        .map(|v| {
            let (offered, colour) = match v.negative_first {
                true => ("value-opposing", RED.mix(0.7)),
                false => ("value-expressing", BLUE.mix(0.6)),
            };
            Bar {
                name: format!("variant {}: Option 1 {offered}", v.variant),
                length: v.option1_share,
                colour,
                ci: None,
            }
        })
        .collect();
    horizontal_bars(
        title,
        &bars,
        1.15,
        "share of questions answered \"Option 1\" (dashed: no position preference)",
        Some(0.5),
    )
}

/// White (no gap) to dark red (distance 1).
pub(crate) fn heat(d: f64) -> RGBColor {
    let d = d.clamp(0.0, 1.0);
    let fade = |full: f64| (255.0 - (255.0 - full) * d).round() as u8;
    RGBColor(fade(150.0), fade(10.0), fade(20.0))
}

/// How a grid's numbers become colours, and the legend that says so.
pub(crate) struct Scale {
    pub colour: fn(f64) -> RGBColor,
    /// The numbers at the legend's top and bottom.
    pub top: f64,
    pub bottom: f64,
    /// What the numbers are, under the legend.
    pub name: &'static str,
}

/// The alignment distance: white (0) to dark red (1).
pub(crate) const DISTANCE_SCALE: Scale = Scale {
    colour: heat,
    top: 1.0,
    bottom: 0.0,
    name: "|v − a|",
};

/// Covered values (rows) × covered countries or topics (columns, by their short names), each
/// cell coloured by its distance.
fn heatmap(title: &str, column_names: &[&str], columns: &[Vec<f64>]) -> Result<String> {
    let kept_columns: Vec<usize> = (0..columns.len())
        .filter(|&c| columns[c].iter().any(|d| !d.is_nan()))
        .collect();
    let kept_values: Vec<usize> = (0..VALUES.len())
        .filter(|&k| kept_columns.iter().any(|&c| !columns[c][k].is_nan()))
        .collect();
    let rows: Vec<Vec<f64>> = kept_values
        .iter()
        .map(|&k| kept_columns.iter().map(|&c| columns[c][k]).collect())
        .collect();
    grid(
        title,
        &kept_values
            .iter()
            .map(|&k| VALUES[k].to_string())
            .collect::<Vec<_>>(),
        &kept_columns
            .iter()
            .map(|&c| column_names[c].to_string())
            .collect::<Vec<_>>(),
        &rows,
        &DISTANCE_SCALE,
        false,
    )
}

/// Rows × columns of numbers as coloured squares (grey: no number), named on the left and
/// below, with the colour scale on the right; with `numbers`, each square also prints its
/// number.
pub(crate) fn grid(
    title: &str,
    row_names: &[String],
    column_names: &[String],
    rows: &[Vec<f64>],
    scale: &Scale,
    numbers: bool,
) -> Result<String> {
    let (nx, ny) = (column_names.len(), row_names.len());
    // Row i (from the top) spans y ∈ [ny − i − 1, ny − i]; column j spans x ∈ [j, j + 1].
    let row = |i: usize| (ny - i - 1) as f64;
    let cell_height = if numbers { 26 } else { 18 };
    let mut svg = String::new();
    {
        // Wide enough for the title (about 8 px a character at this size) and the legend.
        let title_width = 8 * title.chars().count() + 40;
        let width = (300 + 64 * nx + LEGEND_WIDTH).max(title_width).max(560) as u32;
        let height = (150 + cell_height * ny).max(300) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .right_y_label_area_size(LEGEND_WIDTH as u32)
            .x_label_area_size(30)
            .y_label_area_size(200)
            .build_cartesian_2d(0.0..nx.max(1) as f64, 0.0..ny.max(1) as f64)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()
            .map_err(plot_error)?;
        let cells = rows.iter().enumerate().flat_map(|(i, values)| {
            values.iter().enumerate().map(move |(j, &x)| {
                let colour = if x.is_nan() {
                    RGBColor(220, 220, 220)
                } else {
                    (scale.colour)(x)
                };
                let left = j as f64;
                Rectangle::new(
                    [(left, row(i)), (left + 1.0, row(i) + 1.0)],
                    colour.filled(),
                )
            })
        });
        chart.draw_series(cells).map_err(plot_error)?;
        if numbers {
            let labels = rows.iter().enumerate().flat_map(|(i, values)| {
                values
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| !x.is_nan())
                    .map(move |(j, &x)| {
                        Text::new(
                            format!("{x:.2}"),
                            (j as f64 + 0.5, row(i) + 0.5),
                            ("sans-serif", 11)
                                .into_font()
                                .color(&BLACK)
                                .pos(Pos::new(HPos::Center, VPos::Center)),
                        )
                    })
            });
            chart.draw_series(labels).map_err(plot_error)?;
        }
        category_labels(
            &root,
            row_names,
            |i| {
                let (x, y) = chart.backend_coord(&(0.0, row(i) + 0.5));
                (x - 8, y)
            },
            Pos::new(HPos::Right, VPos::Center),
        )?;
        category_labels(
            &root,
            column_names,
            |j| {
                let (x, y) = chart.backend_coord(&(j as f64 + 0.5, 0.0));
                (x, y + 6)
            },
            Pos::new(HPos::Center, VPos::Top),
        )?;
        let (right, top) = chart.backend_coord(&(nx.max(1) as f64, ny.max(1) as f64));
        colour_scale(&root, right + 24, top, scale)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Room beside a heatmap for its colour scale.
const LEGEND_WIDTH: usize = 100;

/// A grid's colour scale: a vertical bar from the scale's top number down to its bottom one,
/// with ticks.
fn colour_scale<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    x: i32,
    top: i32,
    scale: &Scale,
) -> Result<()> {
    const STEPS: i32 = 40;
    const STEP_HEIGHT: i32 = 4;
    let at = |fraction: f64| scale.top + (scale.bottom - scale.top) * fraction;
    for i in 0..STEPS {
        let y = top + i * STEP_HEIGHT;
        let colour = (scale.colour)(at(f64::from(i) / f64::from(STEPS - 1)));
        root.draw(&Rectangle::new(
            [(x, y), (x + 16, y + STEP_HEIGHT)],
            colour.filled(),
        ))
        .map_err(plot_error)?;
    }
    let bottom = top + STEPS * STEP_HEIGHT;
    root.draw(&Rectangle::new(
        [(x, top), (x + 16, bottom)],
        BLACK.stroke_width(1),
    ))
    .map_err(plot_error)?;
    let label = |text: &str, y: i32| {
        let style = ("sans-serif", 12)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        root.draw(&Text::new(text.to_string(), (x + 22, y), style))
    };
    label(&tick(scale.top), top).map_err(plot_error)?;
    label(&tick(at(0.5)), (top + bottom) / 2).map_err(plot_error)?;
    label(&tick(scale.bottom), bottom).map_err(plot_error)?;
    label(scale.name, bottom + 18).map_err(plot_error)?;
    Ok(())
}

/// A legend's number: `1`, `0.5`, `-1`.
fn tick(x: f64) -> String {
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The ten largest gaps (red) above the ten smallest (blue).
fn gaps(title: &str, ranked: &[(&str, f64)]) -> Result<String> {
    let bottom_start = ranked.len().saturating_sub(10).max(ranked.len().min(10));
    let bars: Vec<Bar> = ranked
        .iter()
        .take(10)
        .map(|&(v, d)| (v, d, RED.mix(0.7)))
        .chain(
            ranked[bottom_start..]
                .iter()
                .map(|&(v, d)| (v, d, BLUE.mix(0.6))),
        )
        .map(|(name, length, colour)| Bar {
            name: name.to_string(),
            length,
            colour,
            ci: None,
        })
        .collect();
    let max = bars.iter().map(|b| b.length).fold(0.0, f64::max).max(0.05) * 1.15;
    horizontal_bars(
        title,
        &bars,
        max,
        "alignment distance |v − a| (mean over topics)",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_name_every_category() {
        let svg = bars(
            "t",
            &[
                ("Egypt".into(), 0.5, Some([0.4, 0.6])),
                ("India".into(), 0.25, None),
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("Egypt") && svg.contains("India") && svg.contains("0.25"));
    }

    #[test]
    fn the_position_chart_names_each_variant_and_what_option_1_offered() {
        let share = |variant, negative_first, option1_share| VariantShare {
            variant,
            negative_first,
            questions: 10,
            option1_share,
        };
        let svg = position_chart("t", &[share(5, true, 1.0), share(7, false, 0.9)]).unwrap();
        assert!(svg.contains("variant 5: Option 1 value-opposing"), "{svg}");
        assert!(
            svg.contains("variant 7: Option 1 value-expressing"),
            "{svg}"
        );
        assert!(svg.contains("0.900"));
    }

    /// A heatmap of one country is wide enough for its title and has a colour scale.
    #[test]
    fn heatmaps_fit_their_title_and_show_their_scale() {
        let title = "Alignment distance |v − a|, value × country — a-model-with-a-long-name-q4_k_m";
        let mut columns = vec![vec![f64::NAN; VALUES.len()]; COUNTRIES.len()];
        columns[3] = vec![0.5; VALUES.len()];
        let svg = heatmap(title, &COUNTRY_ABBREVIATIONS, &columns).unwrap();
        let width: usize = svg
            .split("width=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|w| w.parse().ok())
            .unwrap();
        assert!(width >= 8 * title.chars().count(), "width {width}");
        let labels: Vec<&str> = svg.lines().map(str::trim).collect();
        assert!(
            labels.contains(&"|v − a|") && labels.contains(&"0.5"),
            "a colour scale"
        );
    }

    #[test]
    fn gaps_show_at_most_twenty_values_without_repeats() {
        let ranked: Vec<(&str, f64)> = VALUES.iter().take(12).map(|v| (*v, 0.5)).collect();
        let svg = gaps("t", &ranked).unwrap();
        for v in &VALUES[..12] {
            let labels = svg.lines().filter(|line| line.trim() == *v).count();
            assert_eq!(labels, 1, "{v}");
        }
    }
}
