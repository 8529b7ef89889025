/// Random masks and random choices of positions, reproducible from a `SeededGenerator` on every
/// platform (no reliance on the standard library's unspecified random algorithms).
public enum RandomMask {
  /// A mask over `count` weights with exactly `zeros` zeros at uniformly random positions
  /// (`zeros` clamped to [0, count]). Draws min(zeros, count − zeros) positions.
  public static func mask(count: Int, zeros: Int, using rng: inout SeededGenerator) -> [UInt8] {
    let zeros = min(max(zeros, 0), count)
    // Choose whichever set is smaller: the zeros, or the kept positions.
    let chooseKept = zeros > count / 2
    let k = chooseKept ? count - zeros : zeros
    var mask = [UInt8](repeating: chooseKept ? 0 : 1, count: count)
    var pool = Array(0..<count)
    for i in 0..<k {
      pool.swapAt(i, i + index(below: count - i, using: &rng))
      mask[pool[i]] = chooseKept ? 1 : 0
    }
    return mask
  }

  /// `k` distinct elements of `pool` chosen uniformly at random (partial Fisher–Yates),
  /// returned in ascending order. `k` is clamped to [0, pool.count].
  public static func choose(_ k: Int, from pool: [Int], using rng: inout SeededGenerator)
    -> [Int]
  {
    let k = min(max(k, 0), pool.count)
    var pool = pool
    for i in 0..<k {
      let j = i + index(below: pool.count - i, using: &rng)
      pool.swapAt(i, j)
    }
    return pool[0..<k].sorted()
  }

  /// Uniform integer in [0, bound) without modulo bias (Lemire's method).
  static func index(below bound: Int, using rng: inout SeededGenerator) -> Int {
    precondition(bound > 0)
    let b = UInt64(bound)
    var product = rng.next().multipliedFullWidth(by: b)
    if product.low < b {
      let threshold = (0 &- b) % b
      while product.low < threshold { product = rng.next().multipliedFullWidth(by: b) }
    }
    return Int(product.high)
  }
}
