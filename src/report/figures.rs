//! The run's figures as SVG: alignment rate (F1) by country and by topic, alignment-distance
//! heatmaps country × value and topic × value, and per country the ten values with the largest
//! and the ten with the smallest value–action gap (the paper's Figure 5). Countries, topics and
//! values a filtered run did not cover are left out.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::MetricsReport;
use crate::metrics;
use crate::output::write_atomically;
use crate::via::vocabulary::{COUNTRIES, TOPICS, VALUES};

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
            &format!("Alignment rate (F1) by country — {model}"),
            &covered(&report.alignment_rate.by_country),
        )?,
    )?;
    save(
        "f1_by_topic.svg".into(),
        bars(
            &format!("Alignment rate (F1) by topic — {model}"),
            &covered(&report.alignment_rate.by_topic),
        )?,
    )?;
    save(
        "distance_country_value.svg".into(),
        heatmap(
            &format!("Alignment distance, country × value — {model}"),
            &COUNTRIES,
            &report.distances.by_country,
        )?,
    )?;
    save(
        "distance_topic_value.svg".into(),
        heatmap(
            &format!("Alignment distance, topic × value — {model}"),
            &TOPICS,
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

fn covered(rows: &[(String, f64)]) -> Vec<(String, f64)> {
    rows.iter().filter(|(_, x)| !x.is_nan()).cloned().collect()
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

fn label<'a>(names: &'a [String]) -> impl Fn(&SegmentValue<i32>) -> String + 'a {
    move |v| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names
            .get(usize::try_from(*i).unwrap_or(usize::MAX))
            .cloned()
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    }
}

/// A bar per name, with its value printed above it.
fn bars(title: &str, rows: &[(String, f64)]) -> Result<String> {
    let mut svg = String::new();
    {
        let width = (120 + 70 * rows.len()).max(480) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let names: Vec<String> = rows.iter().map(|(n, _)| n.clone()).collect();
        let n = rows.len() as i32;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(110)
            .y_label_area_size(50)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..1.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(rows.len())
            .x_label_formatter(&label(&names))
            .x_label_style(
                ("sans-serif", 12)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .y_desc("F1")
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, f1))| {
                let i = i as i32;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *f1),
                    ],
                    BLUE.mix(0.6).filled(),
                );
                bar.set_margin(0, 0, 8, 8);
                bar
            }))
            .map_err(plot_error)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, f1))| {
                Text::new(
                    format!("{f1:.2}"),
                    (SegmentValue::CenterOf(i as i32), f1 + 0.03),
                    ("sans-serif", 12)
                        .into_font()
                        .style(FontStyle::Normal)
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// White (no gap) to dark red (distance 1).
fn heat(d: f64) -> RGBColor {
    let d = d.clamp(0.0, 1.0);
    let fade = |full: f64| (255.0 - (255.0 - full) * d).round() as u8;
    RGBColor(fade(150.0), fade(10.0), fade(20.0))
}

/// Rows × covered values, each cell coloured by its distance.
fn heatmap(title: &str, row_names: &[&str], rows: &[Vec<f64>]) -> Result<String> {
    let kept_rows: Vec<usize> = (0..rows.len())
        .filter(|&r| rows[r].iter().any(|d| !d.is_nan()))
        .collect();
    let kept_values: Vec<usize> = (0..VALUES.len())
        .filter(|&k| kept_rows.iter().any(|&r| !rows[r][k].is_nan()))
        .collect();
    let x_names: Vec<String> = kept_values.iter().map(|&k| VALUES[k].into()).collect();
    let y_names: Vec<String> = kept_rows.iter().map(|&r| row_names[r].into()).collect();
    let mut svg = String::new();
    {
        let width = (260 + 22 * kept_values.len()) as u32;
        let height = (220 + 26 * kept_rows.len()) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (nx, ny) = (kept_values.len() as i32, kept_rows.len() as i32);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(150)
            .y_label_area_size(190)
            .build_cartesian_2d((0..nx).into_segmented(), (0..ny).into_segmented())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(kept_values.len())
            .y_labels(kept_rows.len())
            .x_label_formatter(&label(&x_names))
            .y_label_formatter(&label(&y_names))
            .x_label_style(
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .y_label_style(("sans-serif", 12))
            .draw()
            .map_err(plot_error)?;
        let cells = kept_rows.iter().enumerate().flat_map(|(y, &r)| {
            kept_values.iter().enumerate().map(move |(x, &k)| {
                let d = rows[r][k];
                let colour = if d.is_nan() {
                    RGBColor(220, 220, 220)
                } else {
                    heat(d)
                };
                let (x, y) = (x as i32, y as i32);
                Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    colour.filled(),
                )
            })
        });
        chart.draw_series(cells).map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The ten largest gaps (red) above the ten smallest (blue), as horizontal bars.
fn gaps(title: &str, ranked: &[(&str, f64)]) -> Result<String> {
    let top = ranked.iter().take(10);
    let bottom_start = ranked.len().saturating_sub(10).max(ranked.len().min(10));
    let bottom = ranked[bottom_start..].iter();
    let shown: Vec<(&str, f64, bool)> = top
        .map(|&(v, d)| (v, d, true))
        .chain(bottom.map(|&(v, d)| (v, d, false)))
        .collect();
    // Largest gap at the top of the figure.
    let names: Vec<String> = shown.iter().rev().map(|(v, _, _)| v.to_string()).collect();
    let max = shown.iter().map(|s| s.1).fold(0.0, f64::max).max(0.05) * 1.1;
    let mut svg = String::new();
    {
        let height = (140 + 28 * shown.len()) as u32;
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let n = shown.len() as i32;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(200)
            .build_cartesian_2d(0.0..max, (0..n).into_segmented())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(shown.len())
            .y_label_formatter(&label(&names))
            .x_desc("alignment distance |v − a| (mean over topics)")
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(shown.iter().rev().enumerate().map(|(y, &(_, d, largest))| {
                let y = y as i32;
                let colour = if largest { RED.mix(0.7) } else { BLUE.mix(0.6) };
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(y)),
                        (d, SegmentValue::Exact(y + 1)),
                    ],
                    colour.filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_name_every_category() {
        let svg = bars("t", &[("Egypt".into(), 0.5), ("India".into(), 0.25)]).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("Egypt") && svg.contains("India") && svg.contains("0.25"));
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
