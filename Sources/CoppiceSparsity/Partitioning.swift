import Foundation

/// What GaP partitions balance.
public enum PartitionBalance: String, Sendable, CaseIterable, Codable {
  /// Number of weights.
  case parameters
  /// Forward FLOPs (weights × `flopsPerWeight`).
  case flops
}

/// How GaP splits the prunable layers into partitions.
///
/// The default, `.balanced(count: 4, by: .flops)`, bounds the cost of each GaP step (only one
/// partition is dense at a time) and gives sensible groups on all reference models:
/// - `mlp` (3 layers, FLOPs = 2·weights): κ is reduced to 3, one layer per partition.
/// - `cnn`: [conv1] [conv2] [conv3] [fc1 fc2]. Balancing by parameters would instead be
///   dominated by fc1 (1.6M of 1.7M weights) and lump the three convolutions, which carry 95%
///   of the FLOPs, into one or two partitions.
/// - `resnet20`: about five convolutions per partition, crossing stage boundaries.
/// Targets registered without FLOP information count 2 FLOPs per weight, so `.flops` then
/// equals `.parameters`.
public enum PartitionSpec: Equatable, Sendable, Codable {
  /// κ contiguous groups in model order. κ larger than the number of layers is reduced to the
  /// number of layers (one layer per partition), with a note in the sparsifier's events.
  case balanced(count: Int, by: PartitionBalance)
  /// Explicit layer names per partition, in partition order. Every layer in exactly one
  /// partition; names need not be contiguous.
  case explicit([[String]])

  public static let defaultCount = 4
  public static let defaultBalance = PartitionBalance.flops
  public static let `default` = PartitionSpec.balanced(count: defaultCount, by: defaultBalance)
}

public enum Partitioning {
  /// Resolves a spec to lists of target indices (model order within each partition).
  ///
  /// Targets the distribution keeps dense (target sparsity 0) belong to no partition when any
  /// target is sparse (`denseByDesign`): growing them would change nothing. Balanced
  /// partitions are made of whole blocks: consecutive targets with the same `block` always
  /// fall in one partition (a residual block is never split). Explicit lists are taken as
  /// given; they need not list the dense-by-design targets.
  public static func partitions(_ spec: PartitionSpec, targets: [SparseTarget]) throws -> [[Int]] {
    let excluded = Set(denseByDesign(targets))
    switch spec {
    case .balanced(let count, let balance):
      let eligible = targets.indices.filter { !excluded.contains($0) }
      var units: [[Int]] = []
      for t in eligible {
        if let last = units.last?.last, let block = targets[t].block,
          targets[last].block == block, last == t - 1 || excluded.contains(t - 1)
        {
          units[units.count - 1].append(t)
        } else {
          units.append([t])
        }
      }
      let loads = units.map { unit in
        unit.reduce(0.0) { sum, i -> Double in
          let t = targets[i]
          return sum
            + (balance == .parameters ? Double(t.count) : Double(t.count) * t.flopsPerWeight)
        }
      }
      return try contiguous(loads: loads, count: count).map { group in
        group.flatMap { units[$0] }
      }
    case .explicit(let lists):
      return try explicit(
        lists, names: targets.map(\.name), optional: Set(excluded.map { targets[$0].name }))
    }
  }

  /// The targets that GaP leaves out of its partitions: those at target sparsity 0 (kept dense
  /// by the distribution, `keepFirstDense`/`keepLastDense` or a table), when any target is
  /// sparse.
  public static func denseByDesign(_ targets: [SparseTarget]) -> [Int] {
    guard targets.contains(where: { $0.targetSparsity > 0 }) else { return [] }
    return targets.indices.filter { targets[$0].targetSparsity == 0 }
  }

  /// Splits `loads` (in order) into `min(count, loads.count)` non-empty contiguous groups
  /// minimising the sum of squared group loads (which favours equal groups and, unlike the
  /// maximum alone, has no ties on a model dominated by one layer). Exact dynamic programme;
  /// the cost of a group, (Σ loads)², satisfies the quadrangle inequality for non-negative
  /// loads, so the best start of the last group only moves right as the prefix grows and each
  /// row is solved by divide and conquer: O(κ·n·log n) instead of O(κ·n²) (3,000 layers in
  /// 1,024 partitions took 17 s), the same cuts (the leftmost best start, as a full scan finds).
  public static func contiguous(loads: [Double], count: Int) throws -> [[Int]] {
    guard count >= 1 else {
      throw CoppiceError.invalidArgument("number of partitions must be ≥ 1, got \(count)")
    }
    guard !loads.isEmpty else {
      throw CoppiceError.invalidArgument("no prunable layers to partition")
    }
    let n = loads.count
    let k = min(count, n)
    var prefix = [0.0]
    for l in loads { prefix.append(prefix.last! + l) }
    // cost[j][i]: best cost of the first i layers in j groups; cut[j][i]: start of the last group.
    let infinity = Double.infinity
    var cost = [[Double]](repeating: [Double](repeating: infinity, count: n + 1), count: k + 1)
    var cut = [[Int]](repeating: [Int](repeating: 0, count: n + 1), count: k + 1)
    cost[0][0] = 0
    // Row j for prefixes lo...hi, knowing their best starts lie in firstStart...lastStart.
    func solve(_ j: Int, _ lo: Int, _ hi: Int, _ firstStart: Int, _ lastStart: Int) {
      guard lo <= hi else { return }
      let mid = (lo + hi) / 2
      var best = infinity
      var bestStart = max(firstStart, j - 1)
      var start = bestStart
      while start <= min(mid - 1, lastStart) {
        if cost[j - 1][start] < infinity {
          let load = prefix[mid] - prefix[start]
          let c = cost[j - 1][start] + load * load
          if c < best {
            best = c
            bestStart = start
          }
        }
        start += 1
      }
      cost[j][mid] = best
      cut[j][mid] = bestStart
      solve(j, lo, mid - 1, firstStart, bestStart)
      solve(j, mid + 1, hi, bestStart, lastStart)
    }
    for j in 1...k { solve(j, j, n, j - 1, n - 1) }
    var groups: [[Int]] = []
    var end = n
    for j in stride(from: k, through: 1, by: -1) {
      let start = cut[j][end]
      groups.append(Array(start..<end))
      end = start
    }
    return groups.reversed()
  }

  /// Validates explicit partitions: non-empty, every name known, no name twice, every layer
  /// in some partition.
  public static func explicit(
    _ lists: [[String]], names: [String], optional: Set<String> = []
  ) throws -> [[Int]] {
    guard !lists.isEmpty else {
      throw CoppiceError.invalidArgument("explicit partitions: no partitions given")
    }
    var index: [String: Int] = [:]
    for (i, name) in names.enumerated() { index[name] = i }
    var seen: [String: Int] = [:]
    var result: [[Int]] = []
    for (p, list) in lists.enumerated() {
      guard !list.isEmpty else {
        throw CoppiceError.invalidArgument("explicit partitions: partition \(p) is empty")
      }
      var members: [Int] = []
      for name in list {
        guard let i = index[name] else {
          throw CoppiceError.invalidArgument(
            "explicit partitions: unknown layer \(name) in partition \(p) "
              + "(layers: \(names.joined(separator: ", ")))")
        }
        if let other = seen[name] {
          throw CoppiceError.invalidArgument(
            "explicit partitions: \(name) is in partition \(other) and partition \(p)")
        }
        seen[name] = p
        members.append(i)
      }
      result.append(members.sorted())
    }
    let missing = names.filter { seen[$0] == nil && !optional.contains($0) }
    guard missing.isEmpty else {
      throw CoppiceError.invalidArgument(
        "explicit partitions: not in any partition: \(missing.joined(separator: ", "))")
    }
    return result
  }

  /// Parses `a,b;c;d,e` (partitions separated by `;`, layer names by `,`) as used on the
  /// command line.
  public static func parseList(_ text: String) -> [[String]] {
    text.split(separator: ";", omittingEmptySubsequences: false).map { part in
      part.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty }
    }
  }
}
