import Foundation

/// Colours and marker shapes of the `coppice compare` plots: the Okabe–Ito palette (told apart
/// with every common form of colour blindness; its yellow last, it is faint on white) and one
/// marker shape per series, so that series stay distinct in grey print too.
enum SVGStyle {
  static let palette = [
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442",
  ]

  enum Marker: CaseIterable {
    case circle, square, triangle, diamond, triangleDown, cross, plus, star
  }

  static func color(_ index: Int) -> String { palette[index % palette.count] }

  static func marker(_ index: Int) -> Marker { Marker.allCases[index % Marker.allCases.count] }

  /// The dash pattern of series `index`'s line ("" solid): every other cycle of the palette
  /// dashed, so that a ninth series differs from the first.
  static func dash(_ index: Int) -> String {
    (index / palette.count) % 2 == 1 ? " stroke-dasharray='6 3'" : ""
  }

  /// The SVG element of `marker` centred on (x, y), about 2·r across.
  static func shape(_ marker: Marker, x: Double, y: Double, r: Double, color: String) -> String {
    func polygon(_ points: [(Double, Double)]) -> String {
      let list = points.map { String(format: "%.1f,%.1f", x + $0.0 * r, y + $0.1 * r) }
      return "<polygon points='\(list.joined(separator: " "))' fill='\(color)'/>"
    }
    func strokes(_ lines: [(Double, Double, Double, Double)]) -> String {
      lines.map {
        String(
          format: "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%@' stroke-width='2.2'/>",
          x + $0.0 * r, y + $0.1 * r, x + $0.2 * r, y + $0.3 * r, color)
      }.joined()
    }
    switch marker {
    case .circle:
      return String(format: "<circle cx='%.1f' cy='%.1f' r='%.1f' fill='%@'/>", x, y, r, color)
    case .square: return polygon([(-0.9, -0.9), (0.9, -0.9), (0.9, 0.9), (-0.9, 0.9)])
    case .triangle: return polygon([(0, -1.2), (1.1, 0.8), (-1.1, 0.8)])
    case .diamond: return polygon([(0, -1.25), (1.1, 0), (0, 1.25), (-1.1, 0)])
    case .triangleDown: return polygon([(0, 1.2), (1.1, -0.8), (-1.1, -0.8)])
    case .cross: return strokes([(-1, -1, 1, 1), (-1, 1, 1, -1)])
    case .plus: return strokes([(-1.2, 0, 1.2, 0), (0, -1.2, 0, 1.2)])
    case .star:
      let points = (0..<10).map { k -> (Double, Double) in
        let angle = Double.pi * Double(k) / 5 - Double.pi / 2
        let radius = k % 2 == 0 ? 1.3 : 0.55
        return (radius * cos(angle), radius * sin(angle))
      }
      return polygon(points)
    }
  }
}
