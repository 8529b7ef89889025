import Foundation

/// Minimal SVG charts for `coppice compare`: a line chart (one series per method, a zoomed
/// panel and a full-range panel) and a grouped bar chart (one group per layer, one bar per
/// method). Self-contained files, no scripts; colours and markers from `SVGStyle`.
struct SVGChart {
  struct Series {
    let name: String
    let points: [(x: Double, y: Double)]
  }

  static func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;")
  }

  /// Rounds the span to 1, 2 or 5 × 10^k steps.
  static func niceTicks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
    let span = max(hi - lo, 1e-9)
    let raw = span / Double(count)
    let magnitude = pow(10, floor(log10(raw)))
    let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
    var ticks: [Double] = []
    var t = ceil(lo / step) * step
    while t <= hi + step * 1e-6 {
      ticks.append(t)
      t += step
    }
    return ticks
  }

  static func format(_ v: Double) -> String {
    v == v.rounded() ? String(Int(v)) : String(format: "%.4g", v)
  }

  /// A horizontal reference line across a plot (e.g. the target sparsity).
  struct Reference {
    let y: Double
    let label: String
  }

  /// The y-range that shows where the series end up: the points of the second half of the
  /// x-range (and every later maximum), padded; at least `minimumSpan` high. Early points below
  /// it are clipped in this view; the full-range panel shows them.
  static func zoomedRange(_ series: [Series], minimumSpan: Double = 1) -> ClosedRange<Double> {
    let all = series.flatMap(\.points)
    guard let xMin = all.map(\.x).min(), let xMax = all.map(\.x).max() else { return 0...1 }
    let late = all.filter { $0.x >= xMin + (xMax - xMin) / 2 }.map(\.y)
    var lo = late.min() ?? 0
    var hi = all.map(\.y).max() ?? 1
    let pad = max((hi - lo) * 0.12, (minimumSpan - (hi - lo)) / 2, 0)
    lo -= pad
    hi += pad
    return lo...hi
  }

  /// A line chart of `series` over their x values: one panel with `yRange` (default: the
  /// data's range) and, when `fullRange` is given, a narrower second panel with that range
  /// (e.g. 0–100%), marked as the region the first panel shows. Each series has its own
  /// colour and marker; `reference` draws a dashed horizontal line in every panel. `dodge`
  /// shifts series i by (i − (n−1)/2)·dodge along x, so that equal values stay visible side by
  /// side (0: none).
  static func lineChart(
    title: String, xLabel: String, yLabel: String, series: [Series],
    yRange: ClosedRange<Double>? = nil, fullRange: ClosedRange<Double>? = nil,
    mainCaption: String = "", fullCaption: String = "full range", reference: Reference? = nil,
    dodge: Double = 0, width: Double = 960, height: Double = 500
  ) -> String {
    let all = series.flatMap(\.points)
    // The x-range padded so that edge markers (and dodged series) stay inside the panel.
    let spread = dodge * Double(max(0, series.count - 1))
    let dataMin = all.map(\.x).min() ?? 0
    let dataMax = max(all.map(\.x).max() ?? 1, dataMin + 1)
    let xPad = spread / 2 + 0.02 * (dataMax - dataMin)
    let (xMin, xMax) = (dataMin - xPad, dataMax + xPad)
    var range = yRange ?? zoomedRange(series, minimumSpan: 0.2)
    if yRange == nil, let r = reference {
      range = min(range.lowerBound, r.y - 1)...max(range.upperBound, r.y + 1)
    }
    let legendWidth = 130.0
    let top = 48.0
    let plotH = height - top - 60
    let left = 72.0
    let secondW = fullRange == nil ? 0 : (width - left - legendWidth) * 0.28
    let mainW = width - left - legendWidth - (fullRange == nil ? 10 : secondW + 75)
    var svg = header(width: width, height: height, title: title)
    let main = Panel(
      left: left, top: top, width: mainW, height: plotH, x: xMin...xMax, y: range, id: "main")
    svg += main.draw(
      series: series, xLabel: xLabel, yLabel: yLabel, caption: mainCaption, reference: reference,
      markerSize: 4.5, dodge: dodge)
    if let full = fullRange {
      let second = Panel(
        left: left + mainW + 65, top: top, width: secondW, height: plotH, x: xMin...xMax, y: full,
        id: "full")
      // The first panel's window, shaded in the second.
      let lo = min(max(range.lowerBound, full.lowerBound), full.upperBound)
      let hi = min(max(range.upperBound, full.lowerBound), full.upperBound)
      svg += String(
        format: "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='#f1ecd9'/>\n",
        second.left, second.py(hi), second.width, max(second.py(lo) - second.py(hi), 1))
      svg += second.draw(
        series: series, xLabel: xLabel, yLabel: "", caption: fullCaption, reference: reference,
        markerSize: 2.8, dodge: dodge)
    }
    let legendX = width - legendWidth + 10
    for (i, s) in series.enumerated() {
      svg += legend(index: i, name: s.name, x: legendX, top: top)
    }
    return svg + "</svg>\n"
  }

  /// One plot area with its axes, grid, clipped series and optional reference line.
  struct Panel {
    let left: Double
    let top: Double
    let width: Double
    let height: Double
    let x: ClosedRange<Double>
    let y: ClosedRange<Double>
    let id: String

    func px(_ v: Double) -> Double {
      left + (v - x.lowerBound) / max(x.upperBound - x.lowerBound, 1e-9) * width
    }
    func py(_ v: Double) -> Double {
      top + (1 - (v - y.lowerBound) / max(y.upperBound - y.lowerBound, 1e-9)) * height
    }

    func draw(
      series: [Series], xLabel: String, yLabel: String, caption: String, reference: Reference?,
      markerSize: Double, dodge: Double
    ) -> String {
      var svg = String(
        format:
          "<clipPath id='clip-%@'><rect x='%.1f' y='%.1f' width='%.1f' height='%.1f'/></clipPath>\n",
        id, left - markerSize, top, width + 2 * markerSize, height)
      let yTicks = SVGChart.niceTicks(y.lowerBound, y.upperBound, count: height > 250 ? 8 : 5)
      for t in yTicks {
        svg += String(
          format: "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#e3e3e3'/>\n", left,
          py(t), left + width, py(t))
        svg += String(
          format: "<text x='%.1f' y='%.1f' text-anchor='end' font-size='12'>%@</text>\n",
          left - 6, py(t) + 4, SVGChart.format(t))
      }
      let span = x.upperBound - x.lowerBound
      let xCount = min(width > 300 ? 10 : 4, Int(span) + 1)
      for t in SVGChart.niceTicks(x.lowerBound, x.upperBound, count: xCount) {
        svg += String(
          format: "<text x='%.1f' y='%.1f' text-anchor='middle' font-size='12'>%@</text>\n",
          px(t), top + height + 18, SVGChart.format(t))
      }
      svg += SVGChart.axes(
        left: left, top: top, plotW: width, plotH: height, xLabel: xLabel, yLabel: yLabel)
      if !caption.isEmpty {
        svg += String(
          format:
            "<text x='%.1f' y='%.1f' text-anchor='middle' font-size='12' fill='#555'>%@</text>\n",
          left + width / 2, top - 8, SVGChart.escape(caption))
      }
      if let r = reference, y.contains(r.y) {
        svg += String(
          format:
            "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#555' stroke-width='1.5' stroke-dasharray='7 4'/>\n",
          left, py(r.y), left + width, py(r.y))
        svg += String(
          format:
            "<text x='%.1f' y='%.1f' text-anchor='end' font-size='12' fill='#333'>%@</text>\n",
          left + width - 4, py(r.y) + 16, SVGChart.escape(r.label))
      }
      svg += "<g clip-path='url(#clip-\(id))'>\n"
      for (i, s) in series.enumerated() {
        let color = SVGStyle.color(i)
        let shift = (Double(i) - Double(series.count - 1) / 2) * dodge
        let path = s.points.map { String(format: "%.1f,%.1f", px($0.x + shift), py($0.y)) }
          .joined(separator: " ")
        svg +=
          "<polyline fill='none' stroke='\(color)' stroke-width='2'\(SVGStyle.dash(i)) points='\(path)'/>\n"
        for p in s.points {
          svg +=
            SVGStyle.shape(
              SVGStyle.marker(i), x: px(p.x + shift), y: py(p.y), r: markerSize, color: color)
            + "\n"
        }
      }
      return svg + "</g>\n"
    }
  }

  /// Grouped bars: `groups` along x (e.g. layers), one bar per series value in each group.
  static func barChart(
    title: String, yLabel: String, groups: [String], series: [(name: String, values: [Double])],
    yMax: Double = 100, width: Double = 760, height: Double = 460
  ) -> String {
    let (left, right, top, bottom) = (70.0, 170.0, 40.0, 90.0)
    let plotW = width - left - right
    let plotH = height - top - bottom
    func py(_ y: Double) -> Double { top + (1 - y / yMax) * plotH }
    var svg = header(width: width, height: height, title: title)
    for t in niceTicks(0, yMax) {
      svg += String(
        format: "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#e3e3e3'/>\n", left, py(t),
        left + plotW, py(t))
      svg += String(
        format: "<text x='%.1f' y='%.1f' text-anchor='end' font-size='12'>%@</text>\n", left - 6,
        py(t) + 4, format(t))
    }
    let groupW = plotW / Double(max(groups.count, 1))
    let barW = groupW * 0.8 / Double(max(series.count, 1))
    for (g, name) in groups.enumerated() {
      let gx = left + Double(g) * groupW + groupW * 0.1
      for (i, s) in series.enumerated() where g < s.values.count {
        let v = min(max(s.values[g], 0), yMax)
        svg += String(
          format: "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%@'/>\n",
          gx + Double(i) * barW, py(v), max(barW - 1, 1), top + plotH - py(v),
          SVGStyle.color(i))
      }
      svg += String(
        format:
          "<text transform='translate(%.1f,%.1f) rotate(-35)' text-anchor='end' font-size='11'>%@</text>\n",
        gx + groupW * 0.4, top + plotH + 14, escape(name))
    }
    svg += axes(left: left, top: top, plotW: plotW, plotH: plotH, xLabel: "", yLabel: yLabel)
    for (i, s) in series.enumerated() {
      svg += legend(index: i, name: s.name, x: left + plotW + 15, top: top, marker: false)
    }
    return svg + "</svg>\n"
  }

  static func header(width: Double, height: Double, title: String) -> String {
    String(
      format:
        "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' viewBox='0 0 %.0f %.0f' font-family='sans-serif'>\n<rect width='100%%' height='100%%' fill='white'/>\n<text x='%.1f' y='24' text-anchor='middle' font-size='16' font-weight='bold'>%@</text>\n",
      width, height, width, height, width / 2, escape(title))
  }

  static func axes(
    left: Double, top: Double, plotW: Double, plotH: Double, xLabel: String, yLabel: String
  ) -> String {
    var s = String(
      format: "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#444'/>\n",
      left, top, plotW, plotH)
    if !xLabel.isEmpty {
      s += String(
        format: "<text x='%.1f' y='%.1f' text-anchor='middle' font-size='13'>%@</text>\n",
        left + plotW / 2, top + plotH + 40, escape(xLabel))
    }
    s += String(
      format:
        "<text transform='translate(%.1f,%.1f) rotate(-90)' text-anchor='middle' font-size='13'>%@</text>\n",
      left - 48, top + plotH / 2, escape(yLabel))
    return s
  }

  /// Legend entry `index`: its line and marker (or a colour swatch for bars) and its name.
  static func legend(index: Int, name: String, x: Double, top: Double, marker: Bool = true)
    -> String
  {
    let y = top + 10 + Double(index) * 24
    let color = SVGStyle.color(index)
    let key =
      marker
      ? String(
        format: "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%@' stroke-width='2'%@/>",
        x, y - 4, x + 24, y - 4, color, SVGStyle.dash(index))
        + SVGStyle.shape(SVGStyle.marker(index), x: x + 12, y: y - 4, r: 4.5, color: color)
      : String(
        format: "<rect x='%.1f' y='%.1f' width='14' height='14' fill='%@'/>", x, y - 11, color)
    return key
      + String(
        format: "<text x='%.1f' y='%.1f' font-size='13'>%@</text>\n", x + 30, y, escape(name))
  }
}
