import Foundation

/// How a global sparsity budget is spread over the layers.
public enum SparsityDistribution: Equatable, Sendable, Codable {
  /// Every layer at the global sparsity. Layers kept dense (first/last) are simply dense, so
  /// the global sparsity is then slightly below the requested one (as in RigL's code).
  case uniform
  /// Erdős–Rényi-Kernel: density ∝ (Σ dims / Π dims)^power, scaled so the total number of
  /// zeros over the layers is round(N·s) exactly. Layers whose density would exceed 1 are made
  /// dense (inside the budget) and the rest re-solved. Layers kept dense by `keepFirstDense` /
  /// `keepLastDense` are outside the budget (as the RigL reference treats layers with a custom
  /// sparsity): N counts only the other layers.
  case erk(power: Double = SparsityDistribution.defaultERKPower)
  /// An explicit sparsity per layer name; every layer must be listed, no unknown names.
  case table([String: Double])

  /// The ERK power when none is given.
  public static let defaultERKPower = 1.0

  /// A short name: "uniform", "erk", "erk(0.5)", "table".
  public var name: String {
    switch self {
    case .uniform: return "uniform"
    case .erk(let power): return power == 1 ? "erk" : "erk(\(power))"
    case .table: return "table"
    }
  }

  /// Per-layer sparsities for layers of the given shapes (model order), at global sparsity
  /// `sparsity` (ignored by `.table`). `keepFirstDense` / `keepLastDense` force the first /
  /// last layer to sparsity 0.
  public func sparsities(
    names: [String], shapes: [[Int]], sparsity: Double,
    keepFirstDense: Bool = false, keepLastDense: Bool = false
  ) throws -> [Double] {
    precondition(names.count == shapes.count)
    try SparseTarget.validate(sparsity: sparsity, what: "global sparsity")
    var forcedDense = Set<Int>()
    if keepFirstDense, !names.isEmpty { forcedDense.insert(0) }
    if keepLastDense, !names.isEmpty { forcedDense.insert(names.count - 1) }
    switch self {
    case .uniform:
      return names.indices.map { forcedDense.contains($0) ? 0 : sparsity }
    case .erk(let power):
      guard power.isFinite, power >= 0 else {
        throw CoppiceError.invalidArgument("ERK power must be finite and ≥ 0, got \(power)")
      }
      return try Self.erk(
        shapes: shapes, sparsity: sparsity, power: power, forcedDense: forcedDense)
    case .table(let table):
      let known = Set(names)
      let unknown = table.keys.filter { !known.contains($0) }.sorted()
      guard unknown.isEmpty else {
        throw CoppiceError.invalidArgument(
          "sparsity table names unknown layers: \(unknown.joined(separator: ", "))"
            + " (layers: \(names.joined(separator: ", ")))")
      }
      let missing = names.filter { table[$0] == nil }
      guard missing.isEmpty else {
        throw CoppiceError.invalidArgument(
          "sparsity table has no entry for: \(missing.joined(separator: ", "))")
      }
      return try names.indices.map { i in
        let s = table[names[i]]!
        try SparseTarget.validate(sparsity: s, what: "sparsity table entry \(names[i])")
        return forcedDense.contains(i) ? 0 : s
      }
    }
  }

  /// ERK densities solved in reals, then turned into integer zero counts whose sum is exactly
  /// round(N·s) (largest-remainder rounding among the sparse layers). A layer always keeps at
  /// least one weight.
  static func erk(shapes: [[Int]], sparsity: Double, power: Double, forcedDense: Set<Int>)
    throws -> [Double]
  {
    let counts = shapes.map { $0.reduce(1, *) }
    // Layers kept dense on request are outside the budget: N and round(N·s) count the others.
    let total = counts.indices.filter { !forcedDense.contains($0) }.reduce(0) { $0 + counts[$1] }
    let totalZeros = SparseTarget.zeros(count: total, sparsity: sparsity)
    var dense = forcedDense.union(counts.indices.filter { counts[$0] == 0 })
    var raw: [Double] = []
    var scale = 0.0
    while true {
      raw = erkScores(
        shapes: shapes, counts: counts, power: power,
        among: counts.indices.filter { !dense.contains($0) })
      // Σ_sparse scale·raw_i·n_i = kept budget − Σ_dense n_i (dense inside the budget)
      let denseCount = dense.subtracting(forcedDense).reduce(0) { $0 + counts[$1] }
      let budget = Double(total - totalZeros - denseCount)
      let weighted = counts.indices.filter { !dense.contains($0) }
        .reduce(0.0) { $0 + raw[$1] * Double(counts[$1]) }
      if weighted == 0 {
        guard totalZeros == 0 else {
          throw CoppiceError.invalidArgument(
            "ERK cannot reach sparsity \(sparsity): every layer would have to be dense")
        }
        break
      }
      guard budget > 0 else {
        throw CoppiceError.invalidArgument(
          "ERK cannot reach sparsity \(sparsity): the layers kept dense hold \(denseCount) of "
            + "\(total) weights")
      }
      scale = budget / weighted
      let overflow = counts.indices.filter { !dense.contains($0) && scale * raw[$0] > 1 }
      if overflow.isEmpty { break }
      dense.formUnion(overflow)
    }
    // Integer zero counts: floor the real counts, then hand out the remainder by the largest
    // fractional part (ties: lower layer index).
    var zeros = [Int](repeating: 0, count: counts.count)
    var fractions: [(index: Int, fraction: Double)] = []
    for i in counts.indices where !dense.contains(i) {
      let real = Double(counts[i]) * (1 - scale * raw[i])
      guard real.isFinite else {
        throw CoppiceError.invalidArgument(
          "ERK with power \(power) gives no finite density for layer \(i) (shape \(shapes[i]))")
      }
      let whole = min(counts[i] - 1, max(0, Int(real.rounded(.down))))
      zeros[i] = whole
      fractions.append((i, real - Double(whole)))
    }
    var remainder = totalZeros - zeros.reduce(0, +)
    fractions.sort { $0.fraction != $1.fraction ? $0.fraction > $1.fraction : $0.index < $1.index }
    while remainder > 0 {
      var progressed = false
      for f in fractions where remainder > 0 && zeros[f.index] < counts[f.index] - 1 {
        zeros[f.index] += 1
        remainder -= 1
        progressed = true
      }
      if !progressed { break }
    }
    return counts.indices.map { counts[$0] == 0 ? 0 : Double(zeros[$0]) / Double(counts[$0]) }
  }

  /// The raw ERK score (Σ dims / Π dims)^power of each layer (0 for an empty one); only the
  /// scores of the layers `among` (those still sparse) are used. Only ratios between scores
  /// matter, so when a large power overflows or underflows them (a [1, 1] layer at power 1100
  /// gives 2^1100), they are computed in log space relative to the largest among `among`,
  /// which keeps every score finite and in [0, 1].
  static func erkScores(shapes: [[Int]], counts: [Int], power: Double, among: [Int]) -> [Double] {
    let plain = zip(shapes, counts).map { shape, count -> Double in
      count == 0 ? 0 : pow(Double(shape.reduce(0, +)) / Double(count), power)
    }
    let weighted = among.reduce(0.0) { $0 + plain[$1] * Double(counts[$1]) }
    if weighted.isFinite && among.allSatisfy({ plain[$0] > 0 }) { return plain }
    let logs = zip(shapes, counts).map { shape, count -> Double in
      count == 0 ? -.infinity : power * (log(Double(shape.reduce(0, +))) - log(Double(count)))
    }
    let top = among.map { logs[$0] }.max() ?? 0
    return logs.map { $0 == -.infinity ? 0 : min(1, exp($0 - top)) }
  }
}
