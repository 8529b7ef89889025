/// Drives one sparse-training method over a set of targets: owns the targets, the schedule and
/// its context. The engine trainer and the C ABI both use it the same way:
///
/// ```
/// let s = try Sparsifier(targets: ..., config: ..., stepsPerEpoch: ..., totalSteps: ..., seed: 1)
/// try s.start()
/// for each batch {
///   if s.needsDenseGradients { compute full weight gradients }   // RigL update steps
///   forward, backward
///   s.maskGradients()
///   optimizer.step()
///   if try s.step() { reset optimizer state for s.lastChanges }   // the optimizer's side
/// }
/// ```
///
/// Target sparsities come from `config` (its distribution overwrites each target's
/// `targetSparsity`). Not thread-safe: use one sparsifier from one thread at a time.
public final class Sparsifier {
  public let targets: [SparseTarget]
  public let config: SparsityConfig
  public let schedule: SparsitySchedule
  public let context: SparsityContext
  /// Completed optimizer steps.
  public internal(set) var stepsCompleted = 0
  public internal(set) var isStarted = false
  /// Whether `step()` keeps a copy of the current P-GaP worker's partition for
  /// `finishParallelRoundFromImports()` (hosts that finish rounds themselves). The engine
  /// trainer, which passes every worker's weights explicitly, turns it off.
  package var snapshotsWorkerPartition = true

  /// The most steps a run may have (2^40, as the C ABI's total_steps): step counts read from
  /// saved states are held to it, so no step arithmetic can overflow.
  public static let maxSteps = 1 << 40

  /// Resolves per-target sparsities from the configured distribution (all 0 for `dense`),
  /// builds the schedule and validates everything. Target names must be unique.
  public init(
    targets: [SparseTarget], config: SparsityConfig, stepsPerEpoch: Int, totalSteps: Int,
    seed: UInt64
  ) throws {
    try config.validate()
    guard stepsPerEpoch >= 1 else {
      throw CoppiceError.invalidArgument("steps per epoch must be ≥ 1, got \(stepsPerEpoch)")
    }
    guard totalSteps >= 1, totalSteps <= Self.maxSteps else {
      throw CoppiceError.invalidArgument("total steps must be in 1...2^40, got \(totalSteps)")
    }
    var seen = Set<String>()
    for t in targets where !seen.insert(t.name).inserted {
      throw CoppiceError.invalidArgument("sparse target \(t.name) is registered twice")
    }
    try Self.assignTargetSparsities(targets, config: config)
    let made = try ScheduleFactory.makeSchedule(config, targets: targets, totalSteps: totalSteps)
    self.targets = targets
    self.config = config
    self.schedule = made.schedule
    self.context = SparsityContext(
      targets: targets, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps, seed: seed)
    for note in made.notes { context.log(note) }
  }

  /// Sets each target's `targetSparsity` from the configured distribution (all 0 for `dense`).
  public static func assignTargetSparsities(_ targets: [SparseTarget], config: SparsityConfig)
    throws
  {
    if config.method == .dense {
      for t in targets { t.targetSparsity = 0 }
    } else {
      let sparsities = try config.resolvedDistribution.sparsities(
        names: targets.map(\.name), shapes: targets.map(\.shape), sparsity: config.sparsity,
        keepFirstDense: config.keepFirstDense, keepLastDense: config.keepLastDense)
      for (t, s) in zip(targets, sparsities) { t.targetSparsity = s }
    }
  }

  /// The GaP partitions (target indices) a sparsifier with `config` would use over `targets`
  /// (whose target sparsities this sets): κ as it takes effect — reduced to the number of
  /// blocks, without dense-by-design layers. For front ends that plan the GaP phase.
  public static func gapPartitions(of targets: [SparseTarget], config: SparsityConfig) throws
    -> [[Int]]
  {
    try assignTargetSparsities(targets, config: config)
    return try Partitioning.partitions(config.partitions, targets: targets)
  }

  /// Sets the initial masks (zeroing masked weights). Call once, before the first step.
  public func start() throws {
    // Magnitude pruning on NaN or infinite weights would keep or drop them arbitrarily.
    for t in targets {
      if let i = (0..<t.count).first(where: { !t.weights[$0].isFinite }) {
        throw CoppiceError.invalidArgument(
          "parameter \(t.name) holds a non-finite weight (\(t.weights[i]) at index \(i)); "
            + "sparse training needs finite weights")
      }
    }
    context.beginUpdate()
    try schedule.start(context)
    for t in targets where t.count > 0 && t.targetSparsity < 1 && t.targetZeros >= t.count {
      context.log(
        "warning: \(t.name): sparsity \(t.targetSparsity) prunes all \(t.count) of its weights "
          + "(round(n·s) = n); the layer will only pass its bias on")
    }
    isStarted = true
    stepsCompleted = 0
    refresh()
  }

  /// Whether `step()` zeroes the pruned weights again before the schedule's update (the
  /// default: a host's optimizer may move them). A caller whose optimizer provably keeps them
  /// zero may turn it off: gradients masked, optimizer state zeroed wherever a mask changes,
  /// and an update that leaves a zero weight with zero gradient and zero state at zero (the
  /// engine's trainer does, with SGD and AdamW).
  public var reappliesMasks = true

  /// Whether the coming step needs full dense weight gradients (also published to each
  /// target's `needsDenseGradient` for sparse layers).
  public var needsDenseGradients: Bool {
    schedule.needsDenseGradients(atStep: stepsCompleted + 1)
  }

  /// Whether the caller should skip the optimizer step of the coming step: a SET/RigL mask
  /// update step with `referenceMaskUpdates` (the RigL reference does the mask update instead
  /// of the gradient step). Call `maskGradients()` and `step()` as usual.
  public var skipsOptimizerStep: Bool {
    config.referenceMaskUpdates && schedule.isMaskUpdateStep(stepsCompleted + 1)
  }

  /// Whether the last `step()` ended a GaP step (where per-step restarts happen).
  public var endedGaPStep: Bool { schedule.isGaPStepBoundary(stepsCompleted) }

  /// The GaP partitions as target indices (empty for other methods).
  public var partitions: [[Int]] { schedule.gapPartitions }

  /// The partition of target `index`, nil when it is in none.
  public func partition(ofTarget index: Int) -> Int? {
    partitions.firstIndex { $0.contains(index) }
  }

  /// Structured events after the first `count` (`events(since: 0)`: all of them).
  public func events(since count: Int) -> ArraySlice<SparsityEvent> {
    let all = context.structuredEvents
    return all[min(max(0, count), all.count)...]
  }

  /// Call after backward: captures dense gradients when the coming update needs them, then
  /// zeroes gradients at pruned positions.
  public func maskGradients() {
    if needsDenseGradients { context.captureDenseGradients() }
    for t in targets { t.maskGradients() }
  }

  /// Call after the optimizer step: re-applies the masks (so pruned weights stay exactly zero
  /// despite momentum and weight decay), then runs the schedule's update. Returns whether any
  /// mask changed; `lastChanges` then says where.
  @discardableResult
  public func step() throws -> Bool {
    guard isStarted else {
      throw CoppiceError.invalidArgument("sparsifier: call start() before step()")
    }
    if reappliesMasks { for t in targets { t.applyMask() } }
    stepsCompleted += 1
    if snapshotsWorkerPartition, let gap = schedule as? ParallelGaP, let worker = gap.currentWorker
    {
      var snapshot: [Int: [Float]] = [:]
      for t in gap.partitions[worker] {
        snapshot[t] = Array(UnsafeBufferPointer(start: targets[t].weights, count: targets[t].count))
      }
      gap.workerSnapshot = snapshot
    }
    context.beginUpdate()
    defer {
      context.clearDenseGradients()
      refresh()
    }
    try schedule.update(context, step: stepsCompleted)
    return context.masksChanged
  }

  /// Per target, the positions grown and pruned by the last `start`, `step` or P-GaP call.
  public var lastChanges: [MaskChange] { context.changes }
  /// Log lines of the last `start`, `step` or P-GaP call.
  public var lastEvents: [String] { context.lastEvents }
  /// Every log line so far.
  public var events: [String] { context.events }
  /// What the schedule is doing now.
  public var phase: String { context.phase }
  /// Whether masks can no longer change.
  public var masksFrozen: Bool { schedule.masksFrozen(afterStep: stepsCompleted) }

  /// Sparsity and FLOPs per target and overall.
  public var report: SparsityReport { SparsityReport(targets: targets) }

  func refresh() {
    context.phase = schedule.phase(afterStep: stepsCompleted)
    let dense = needsDenseGradients
    for t in targets { t.needsDenseGradient = dense }
  }
}
