import Foundation

/// Minimal SVG charts for `coppice compare`: a line chart (one series per method) and a grouped
/// bar chart (one group per layer, one bar per method). Self-contained files, no scripts.
struct SVGChart {
  struct Series {
    let name: String
    let points: [(x: Double, y: Double)]
  }

  static let palette = [
    "#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#00798c", "#8d6a9f", "#3d3d3d",
  ]

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

  static func lineChart(
    title: String, xLabel: String, yLabel: String, series: [Series], width: Double = 760,
    height: Double = 460
  ) -> String {
    let all = series.flatMap(\.points)
    let xs = all.map(\.x)
    let ys = all.map(\.y)
    let xMin = xs.min() ?? 0
    let xMax = max(xs.max() ?? 1, xMin + 1)
    var yMin = ys.min() ?? 0
    var yMax = ys.max() ?? 1
    let pad = max((yMax - yMin) * 0.08, 0.1)
    yMin -= pad
    yMax += pad
    let (left, right, top, bottom) = (70.0, 170.0, 40.0, 55.0)
    let plotW = width - left - right
    let plotH = height - top - bottom
    func px(_ x: Double) -> Double { left + (x - xMin) / (xMax - xMin) * plotW }
    func py(_ y: Double) -> Double { top + (1 - (y - yMin) / (yMax - yMin)) * plotH }
    var svg = header(width: width, height: height, title: title)
    for t in niceTicks(yMin, yMax) {
      svg += String(
        format: "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#e3e3e3'/>\n", left, py(t),
        left + plotW, py(t))
      svg += String(
        format: "<text x='%.1f' y='%.1f' text-anchor='end' font-size='12'>%@</text>\n", left - 6,
        py(t) + 4, format(t))
    }
    for t in niceTicks(xMin, xMax, count: min(10, Int(xMax - xMin) + 1)) {
      svg += String(
        format: "<text x='%.1f' y='%.1f' text-anchor='middle' font-size='12'>%@</text>\n", px(t),
        top + plotH + 18, format(t))
    }
    svg += axes(left: left, top: top, plotW: plotW, plotH: plotH, xLabel: xLabel, yLabel: yLabel)
    for (i, s) in series.enumerated() {
      let color = palette[i % palette.count]
      let path = s.points.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(
        separator: " ")
      svg += "<polyline fill='none' stroke='\(color)' stroke-width='2' points='\(path)'/>\n"
      for p in s.points {
        svg += String(
          format: "<circle cx='%.1f' cy='%.1f' r='3' fill='%@'/>\n", px(p.x), py(p.y), color)
      }
      svg += legend(index: i, name: s.name, color: color, x: left + plotW + 15, top: top)
    }
    return svg + "</svg>\n"
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
          palette[i % palette.count])
      }
      svg += String(
        format:
          "<text transform='translate(%.1f,%.1f) rotate(-35)' text-anchor='end' font-size='11'>%@</text>\n",
        gx + groupW * 0.4, top + plotH + 14, escape(name))
    }
    svg += axes(left: left, top: top, plotW: plotW, plotH: plotH, xLabel: "", yLabel: yLabel)
    for (i, s) in series.enumerated() {
      svg += legend(
        index: i, name: s.name, color: palette[i % palette.count], x: left + plotW + 15, top: top)
    }
    return svg + "</svg>\n"
  }

  private static func header(width: Double, height: Double, title: String) -> String {
    String(
      format:
        "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' viewBox='0 0 %.0f %.0f' font-family='sans-serif'>\n<rect width='100%%' height='100%%' fill='white'/>\n<text x='%.1f' y='24' text-anchor='middle' font-size='16' font-weight='bold'>%@</text>\n",
      width, height, width, height, width / 2, escape(title))
  }

  private static func axes(
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

  private static func legend(index: Int, name: String, color: String, x: Double, top: Double)
    -> String
  {
    let y = top + 10 + Double(index) * 22
    return String(
      format:
        "<rect x='%.1f' y='%.1f' width='14' height='14' fill='%@'/><text x='%.1f' y='%.1f' font-size='13'>%@</text>\n",
      x, y - 11, color, x + 20, y, escape(name))
  }
}
