/// What a sparsity schedule works on: the targets, the training length, a seed, and the log of
/// what the last update changed.
///
/// Randomness is drawn from `rng(_:step:)`, a generator derived from the seed, a purpose and
/// the step, so a run restored from a checkpoint makes the same random choices without saving
/// generator state.
public final class SparsityContext {
  public let targets: [SparseTarget]
  public let stepsPerEpoch: Int
  public let totalSteps: Int
  public let seed: UInt64
  /// Per target, the positions grown and pruned by the last `start` or `update`.
  public internal(set) var changes: [MaskChange]
  /// Log lines of the last `start` or `update`, e.g. "step 1200: grow partition 2 (fc1)".
  public internal(set) var lastEvents: [String] = []
  /// Every log line so far.
  public internal(set) var events: [String] = []
  /// Every structured event so far, in order (`record`).
  public internal(set) var structuredEvents: [SparsityEvent] = []
  /// What the schedule is doing, for progress output ("C-GaP round 1/2, partition 3 dense").
  public var phase = ""
  /// Full weight gradients captured before masking, for schedules that asked for them
  /// (`needsDenseGradients`); nil otherwise.
  public internal(set) var denseGradients: [[Float]?]

  public init(targets: [SparseTarget], stepsPerEpoch: Int, totalSteps: Int, seed: UInt64) {
    self.targets = targets
    self.stepsPerEpoch = stepsPerEpoch
    self.totalSteps = totalSteps
    self.seed = seed
    changes = targets.map { _ in MaskChange() }
    denseGradients = targets.map { _ in nil }
  }

  /// Target sparsities, per target.
  public var targetSparsities: [Double] { targets.map(\.targetSparsity) }

  /// A generator for one purpose at one step, derived from the seed.
  public func rng(_ purpose: String, step: Int) -> SeededGenerator {
    SeededGenerator(seed: seed, stream: "sparsity.\(purpose).\(step)")
  }

  /// Clears the change log; the sparsifier calls it before every `start` and `update`.
  public func beginUpdate() {
    changes = targets.map { _ in MaskChange() }
    lastEvents = []
  }

  /// Whether the last update changed any mask.
  public var masksChanged: Bool { changes.contains { !$0.isEmpty } }

  public func log(_ line: String) {
    lastEvents.append(line)
    events.append(line)
  }

  // MARK: Mask operations (all recorded in `changes`)

  /// Installs a mask on target `t` (see `SparseTarget.replaceMask`).
  public func setMask(_ t: Int, _ mask: [UInt8]) throws {
    changes[t].merge(try targets[t].replaceMask(with: mask))
  }

  /// Removes target `t`'s mask (all kept); the weights that were pruned restart from zero.
  public func grow(_ t: Int) throws {
    try setMask(t, [UInt8](repeating: 1, count: targets[t].count))
  }

  /// A uniformly random mask with exactly `targetZeros` zeros.
  public func randomizeMask(_ t: Int, rng: inout SeededGenerator) throws {
    let target = targets[t]
    try setMask(t, RandomMask.mask(count: target.count, zeros: target.targetZeros, using: &rng))
  }

  /// Prunes target `t` to exactly round(n·sparsity) zeros (default: its target sparsity) by
  /// top-k magnitude among its currently kept weights. Never grows.
  public func prune(_ t: Int, toSparsity sparsity: Double? = nil) throws {
    let target = targets[t]
    let zeros = SparseTarget.zeros(count: target.count, sparsity: sparsity ?? target.targetSparsity)
    let keep = target.count - zeros
    guard keep < target.nonzeros else { return }
    var mask = [UInt8](repeating: 0, count: target.count)
    for i in TopKMagnitude.largest(
      keep, of: target.weights, count: target.count, pool: .kept(target.mask))
    {
      mask[i] = 1
    }
    try setMask(t, mask)
  }

  /// Global magnitude pruning over `indices`: keeps the round(N·(1−s)) largest magnitudes
  /// among their kept weights, N the weights of those targets and s their weight-averaged
  /// `sparsities`. Ties: earlier target, then lower index.
  public func pruneGlobally(_ indices: [Int], sparsities: [Double]) throws {
    guard !indices.isEmpty else { return }
    let total = indices.reduce(0) { $0 + targets[$1].count }
    let zeros = indices.indices.reduce(0.0) {
      $0 + Double(targets[indices[$1]].count) * sparsities[$1]
    }
    let keep = total - min(total, max(0, Int(zeros.rounded())))
    try keepLargest(keep, among: indices)
  }

  /// Masks of `indices` keeping the `keep` largest magnitudes among their kept weights
  /// (ties: earlier target, then lower index).
  private func keepLargest(_ keep: Int, among indices: [Int]) throws {
    let candidates = indices.map {
      TopKMagnitude.Candidates(
        values: targets[$0].weights, count: targets[$0].count, pool: .kept(targets[$0].mask))
    }
    let selected = TopKMagnitude.largest(keep, among: candidates)
    for (n, t) in indices.enumerated() {
      var mask = [UInt8](repeating: 0, count: targets[t].count)
      for i in selected[n] { mask[i] = 1 }
      try setMask(t, mask)
    }
  }

  /// Global magnitude pruning under the targets' own budget: keeps Σ (n_t − targetZeros_t)
  /// weights over `indices`, the largest magnitudes among their kept weights (ties: earlier
  /// target, then lower index). Per-target sparsities then differ; their total is exact.
  /// Never grows.
  public func pruneToBudget(_ indices: [Int]) throws {
    guard !indices.isEmpty else { return }
    let keep = indices.reduce(0) { $0 + targets[$1].count - targets[$1].targetZeros }
    let kept = indices.reduce(0) { $0 + targets[$1].nonzeros }
    guard keep < kept else { return }
    try keepLargest(keep, among: indices)
  }

  /// The targets with a sparse target (target sparsity > 0), in order.
  public var sparseTargetIndices: [Int] {
    targets.indices.filter { targets[$0].targetSparsity > 0 }
  }

  /// Copies the full gradients of every target that has a gradient buffer (before masking).
  public func captureDenseGradients() {
    denseGradients = targets.map { t in
      t.gradients.map { Array(UnsafeBufferPointer(start: $0, count: t.count)) }
    }
  }

  public func clearDenseGradients() { denseGradients = targets.map { _ in nil } }

  /// "fc1.weight" or "conv1.weight, conv2.weight" for log lines.
  func names(_ indices: [Int]) -> String {
    indices.map { targets[$0].name }.joined(separator: ", ")
  }
}
