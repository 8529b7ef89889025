/// A weight tensor under sparse training. Its memory belongs to someone else — an engine
/// parameter, or a buffer registered by a C, C++ or Python host — and must outlive the target
/// (`storageOwner`, when given, is kept alive for that).
///
/// The target owns the mask (one byte per weight, 1 = kept). Every mask change goes through
/// `replaceMask(with:)`, which zeroes newly pruned and newly grown weights and bumps
/// `maskVersion`, so sparse layers know to rebuild their compressed format.
public final class SparseTarget {
  public let name: String
  public let shape: [Int]
  public let count: Int
  /// The weights, `count` floats in row-major order (not owned).
  public let weights: UnsafeMutablePointer<Float>
  /// The gradient buffer of the weights, when the host has one (not owned). RigL needs it.
  public let gradients: UnsafeMutablePointer<Float>?
  /// Forward FLOPs per weight per sample (2 for a linear layer, 2·H_out·W_out for a
  /// convolution). Used for FLOP-balanced GaP partitions and FLOP reports.
  public let flopsPerWeight: Double
  /// The object that owns `weights` and `gradients` (an engine parameter), when there is one:
  /// kept alive by the target, and how a framework finds the target of one of its tensors.
  public let storageOwner: AnyObject?

  /// One byte per weight, 1 = kept, 0 = pruned.
  public private(set) var mask: [UInt8]
  /// Incremented on every mask change.
  public private(set) var maskVersion = 0
  /// The sparsity this weight ends at (set from the sparsity distribution by the sparsifier).
  public var targetSparsity: Double
  /// The block (e.g. residual block) the weight belongs to: GaP's balanced partitions never
  /// split consecutive targets of one block. nil: a block of its own.
  public var block: String?
  /// Whether the coming backward pass must produce the full dense weight gradient (RigL).
  /// Maintained by the sparsifier; sparse layers read it.
  public internal(set) var needsDenseGradient = false

  /// A target over host-owned memory. Throws when the name is empty, a dimension is negative,
  /// the sparsity is outside [0, 1) or `flopsPerWeight` is negative or not finite.
  /// The largest FLOPs per weight a target may declare (a weight of a convolution over a
  /// 4096×4096 output costs ~3·10^7): partition sums over 2^31 weights stay finite.
  public static let maxFlopsPerWeight = 1e12

  public init(
    name: String, shape: [Int], weights: UnsafeMutablePointer<Float>,
    gradients: UnsafeMutablePointer<Float>? = nil, targetSparsity: Double = 0,
    flopsPerWeight: Double = 2
  ) throws {
    guard !name.isEmpty else { throw CoppiceError.invalidArgument("sparse target has no name") }
    guard shape.allSatisfy({ $0 >= 0 }) else {
      throw CoppiceError.invalidArgument("sparse target \(name): negative dimension in \(shape)")
    }
    try SparseTarget.validate(sparsity: targetSparsity, what: "sparse target \(name)")
    guard flopsPerWeight >= 0, flopsPerWeight <= SparseTarget.maxFlopsPerWeight else {
      throw CoppiceError.invalidArgument(
        "sparse target \(name): flopsPerWeight must be in 0...\(SparseTarget.maxFlopsPerWeight) "
          + "(partition sums stay finite), got \(flopsPerWeight)")
    }
    self.name = name
    self.shape = shape
    self.count = shape.reduce(1, *)
    self.weights = weights
    self.gradients = gradients
    self.targetSparsity = targetSparsity
    self.flopsPerWeight = flopsPerWeight
    self.storageOwner = nil
    self.mask = [UInt8](repeating: 1, count: count)
    self.nonzeros = count
  }

  /// A target over memory owned by `storageOwner` (kept alive by the target), for frameworks
  /// that bind their own tensors (the engine binds its parameters this way). The arguments
  /// are trusted: a dimension must not be negative; a `flopsPerWeight` that is not finite and
  /// ≥ 0 becomes 2.
  package init(
    trustedName name: String, shape: [Int], weights: UnsafeMutablePointer<Float>,
    gradients: UnsafeMutablePointer<Float>?, flopsPerWeight: Double, storageOwner: AnyObject
  ) {
    self.name = name
    self.shape = shape
    count = shape.reduce(1, *)
    self.weights = weights
    self.gradients = gradients
    targetSparsity = 0
    self.flopsPerWeight = flopsPerWeight.isFinite ? max(0, flopsPerWeight) : 2
    self.storageOwner = storageOwner
    mask = [UInt8](repeating: 1, count: count)
    nonzeros = count
  }

  /// Kept weights (ones in the mask), maintained with the mask.
  public private(set) var nonzeros: Int
  /// Fraction of pruned weights (zeros in the mask); 0 for an empty tensor.
  public var sparsity: Double { count == 0 ? 0 : Double(count - nonzeros) / Double(count) }
  /// Fraction of kept weights.
  public var density: Double { 1 - sparsity }
  /// Number of zeros the target ends with: round(count · targetSparsity).
  public var targetZeros: Int { SparseTarget.zeros(count: count, sparsity: targetSparsity) }

  /// The exact number of zeros of an `count`-weight tensor at `sparsity`: round(n·s), halves
  /// away from zero, clamped to [0, n].
  public static func zeros(count: Int, sparsity: Double) -> Int {
    min(count, max(0, Int((Double(count) * sparsity).rounded())))
  }

  static func validate(sparsity: Double, what: String) throws {
    guard sparsity.isFinite, sparsity >= 0, sparsity < 1 else {
      throw CoppiceError.invalidArgument("\(what): sparsity must be in [0, 1), got \(sparsity)")
    }
  }

  /// Multiplies the weights by the mask, so pruned weights are exactly zero.
  public func applyMask() { SparseTarget.zero(weights, where: mask) }

  /// Set by a layer whose last backward wrote the gradient with a zero at every pruned
  /// position (the sparse kernels do): the next `maskGradients()` then skips the pass over the
  /// buffer and clears the flag.
  public var gradientIsMasked = false

  /// Zeroes the gradient at pruned positions (no-op without a gradient buffer, or when the
  /// layer already did: `gradientIsMasked`).
  public func maskGradients() {
    if gradientIsMasked {
      gradientIsMasked = false
      return
    }
    guard let gradients else { return }
    SparseTarget.zero(gradients, where: mask)
  }

  /// values[i] = 0 where mask[i] == 0 (branch-free, so it vectorises; NaN at pruned positions
  /// becomes 0 too).
  private static func zero(_ values: UnsafeMutablePointer<Float>, where mask: [UInt8]) {
    mask.withUnsafeBufferPointer { m in
      for i in 0..<m.count { values[i] = m[i] != 0 ? values[i] : 0 }
    }
  }

  /// Installs a new mask. Weights that become pruned and weights that become kept are set to
  /// zero (grown weights start from zero); `maskVersion` is bumped when anything changed.
  /// Returns the flat indices that were grown (0→1) and pruned (1→0), ascending.
  @discardableResult
  public func replaceMask(with newMask: [UInt8]) throws -> MaskChange {
    guard newMask.count == count else {
      throw CoppiceError.invalidArgument(
        "mask for \(name) has \(newMask.count) entries, expected \(count)")
    }
    var change = MaskChange()
    for i in 0..<count {
      let new: UInt8 = newMask[i] == 0 ? 0 : 1
      if new == mask[i] { continue }
      if new == 1 { change.grown.append(i) } else { change.pruned.append(i) }
      mask[i] = new
      weights[i] = 0
    }
    nonzeros += change.grown.count - change.pruned.count
    if !change.isEmpty { maskVersion += 1 }
    return change
  }

  /// Installs a saved mask without touching kept weights (they come from the same checkpoint);
  /// pruned positions are zeroed. For restoring state.
  package func loadMask(_ saved: [UInt8]) throws {
    guard saved.count == count else {
      throw CoppiceError.invalidArgument(
        "saved mask for \(name) has \(saved.count) entries, expected \(count)")
    }
    mask = saved.map { $0 == 0 ? 0 : 1 }
    nonzeros = mask.reduce(0) { $0 + Int($1) }
    maskVersion += 1
    applyMask()
  }
}

/// The positions whose mask changed in one update: grown (0→1) and pruned (1→0) flat indices.
/// A position pruned and regrown within one update (C-GaP with one partition) appears in both;
/// its weight is zero.
public struct MaskChange: Equatable, Sendable {
  public var grown: [Int] = []
  public var pruned: [Int] = []
  public init(grown: [Int] = [], pruned: [Int] = []) {
    self.grown = grown
    self.pruned = pruned
  }
  public var isEmpty: Bool { grown.isEmpty && pruned.isEmpty }
  /// Every changed index (grown, then pruned), for resetting optimizer state.
  public var all: [Int] { grown + pruned }

  mutating func merge(_ other: MaskChange) {
    grown += other.grown
    pruned += other.pruned
  }
}
