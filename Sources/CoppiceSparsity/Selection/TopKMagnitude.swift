/// Exact top-k selection by magnitude, with deterministic ties.
///
/// Selects exactly `k` entries with the largest |value|; among equal magnitudes the lower flat
/// index wins (across several tensors: the earlier tensor, then the lower index). NaN ranks
/// below every number, so a diverged weight is pruned first.
///
/// The selection is a two-pass radix select on the IEEE bit pattern of |value| (monotone for
/// non-negative floats), linear in the number of entries, with no sorting.
public enum TopKMagnitude {
  /// Which entries of a tensor may be selected.
  public enum Pool {
    /// Every entry.
    case all
    /// Entries whose mask byte is 1.
    case kept([UInt8])
    /// Entries whose mask byte is 0.
    case pruned([UInt8])

    @inline(__always) func contains(_ i: Int) -> Bool {
      switch self {
      case .all: return true
      case .kept(let mask): return mask[i] != 0
      case .pruned(let mask): return mask[i] == 0
      }
    }
  }

  /// One tensor taking part in a selection.
  public struct Candidates {
    public let values: UnsafePointer<Float>
    public let count: Int
    public let pool: Pool
    public init(values: UnsafePointer<Float>, count: Int, pool: Pool = .all) {
      self.values = values
      self.count = count
      self.pool = pool
    }
  }

  /// Rank key: larger key = larger magnitude; NaN is 0, below +0 (key 1).
  @inline(__always) static func key(_ v: Float) -> UInt32 {
    v.isNaN ? 0 : v.magnitude.bitPattern &+ 1
  }

  /// The `k` largest-magnitude eligible entries over several tensors (global ranking),
  /// returned per tensor as ascending flat indices. `k` is clamped to [0, eligible count].
  public static func largest(_ k: Int, among tensors: [Candidates]) -> [[Int]] {
    var selected = tensors.map { _ in [Int]() }
    guard k > 0 else { return selected }
    // Pass 1: histogram of the high 16 bits of the key.
    var high = [Int](repeating: 0, count: 1 << 16)
    var eligible = 0
    for t in tensors {
      for i in 0..<t.count where t.pool.contains(i) {
        high[Int(key(t.values[i]) >> 16)] += 1
        eligible += 1
      }
    }
    if k >= eligible {
      for (n, t) in tensors.enumerated() {
        selected[n] = (0..<t.count).filter { t.pool.contains($0) }
      }
      return selected
    }
    var above = 0
    var bucket = (1 << 16) - 1
    while above + high[bucket] < k {
      above += high[bucket]
      bucket -= 1
    }
    // Pass 2: histogram of the low 16 bits inside the threshold bucket.
    var low = [Int](repeating: 0, count: 1 << 16)
    for t in tensors {
      for i in 0..<t.count where t.pool.contains(i) {
        let key = key(t.values[i])
        if Int(key >> 16) == bucket { low[Int(key & 0xFFFF)] += 1 }
      }
    }
    var lowBucket = (1 << 16) - 1
    while above + low[lowBucket] < k {
      above += low[lowBucket]
      lowBucket -= 1
    }
    let threshold = UInt32(bucket << 16 | lowBucket)
    // Everything above the threshold, then the lowest-index ties at the threshold.
    var ties = k - above
    for (n, t) in tensors.enumerated() {
      for i in 0..<t.count where t.pool.contains(i) {
        let key = key(t.values[i])
        if key > threshold {
          selected[n].append(i)
        } else if key == threshold && ties > 0 {
          selected[n].append(i)
          ties -= 1
        }
      }
    }
    return selected
  }

  /// The `k` largest-magnitude eligible entries of one tensor, ascending flat indices.
  public static func largest(
    _ k: Int, of values: UnsafePointer<Float>, count: Int, pool: Pool = .all
  ) -> [Int] {
    largest(k, among: [Candidates(values: values, count: count, pool: pool)])[0]
  }

  /// A mask keeping exactly `keep` entries with the largest magnitude (clamped to [0, count]).
  public static func mask(keeping keep: Int, of values: UnsafePointer<Float>, count: Int)
    -> [UInt8]
  {
    var mask = [UInt8](repeating: 0, count: count)
    for i in largest(keep, of: values, count: count) { mask[i] = 1 }
    return mask
  }

  /// `mask(keeping:)` for an array.
  public static func mask(keeping keep: Int, of values: [Float]) -> [UInt8] {
    values.withUnsafeBufferPointer { buffer in
      guard let base = buffer.baseAddress else { return [] }
      return mask(keeping: keep, of: base, count: buffer.count)
    }
  }
}
