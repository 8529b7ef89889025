import Foundation

/// Sparsity and forward FLOPs per target and over all targets, at one moment.
public struct SparsityReport: Codable, Sendable, Equatable {
  public struct Layer: Codable, Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let count: Int
    public let nonzeros: Int
    public let sparsity: Double
    public let targetSparsity: Double
    /// Forward FLOPs per sample, dense and at the current mask (flopsPerWeight × weights).
    public let denseFLOPs: Double
    public let sparseFLOPs: Double

    enum CodingKeys: String, CodingKey {
      case name, shape, count, nonzeros, sparsity
      case targetSparsity = "target_sparsity"
      case denseFLOPs = "dense_flops"
      case sparseFLOPs = "sparse_flops"
    }
  }

  public let layers: [Layer]
  public let count: Int
  public let nonzeros: Int
  /// Global sparsity: zeros over all targets / weights of all targets.
  public let sparsity: Double
  public let targetSparsity: Double
  public let denseFLOPs: Double
  public let sparseFLOPs: Double

  enum CodingKeys: String, CodingKey {
    case layers, count, nonzeros, sparsity
    case targetSparsity = "target_sparsity"
    case denseFLOPs = "dense_flops"
    case sparseFLOPs = "sparse_flops"
  }

  public init(targets: [SparseTarget]) {
    layers = targets.map {
      Layer(
        name: $0.name, shape: $0.shape, count: $0.count, nonzeros: $0.nonzeros,
        sparsity: $0.sparsity, targetSparsity: $0.targetSparsity,
        denseFLOPs: Double($0.count) * $0.flopsPerWeight,
        sparseFLOPs: Double($0.nonzeros) * $0.flopsPerWeight)
    }
    count = targets.reduce(0) { $0 + $1.count }
    nonzeros = targets.reduce(0) { $0 + $1.nonzeros }
    sparsity = count == 0 ? 0 : Double(count - nonzeros) / Double(count)
    let targetZeros = targets.reduce(0) { $0 + $1.targetZeros }
    targetSparsity = count == 0 ? 0 : Double(targetZeros) / Double(count)
    denseFLOPs = layers.reduce(0) { $0 + $1.denseFLOPs }
    sparseFLOPs = layers.reduce(0) { $0 + $1.sparseFLOPs }
  }

  /// A plain-text table: one line per layer and a total.
  public var table: String {
    let width = max(5, layers.map(\.name.count).max() ?? 0)
    func pad(_ s: String, _ n: Int) -> String {
      s + String(repeating: " ", count: max(0, n - s.count))
    }
    func pct(_ x: Double) -> String { String(format: "%6.2f%%", 100 * x) }
    var lines = [pad("layer", width) + "  shape              nonzeros    sparsity   target"]
    for l in layers {
      lines.append(
        pad(l.name, width) + "  " + pad(l.shape.map(String.init).joined(separator: "×"), 17)
          + String(format: "%10d", l.nonzeros) + "  " + pct(l.sparsity) + "  "
          + pct(l.targetSparsity))
    }
    lines.append(
      pad("total", width) + "  " + pad("\(count) weights", 17) + String(format: "%10d", nonzeros)
        + "  " + pct(sparsity) + "  " + pct(targetSparsity))
    return lines.joined(separator: "\n")
  }
}
