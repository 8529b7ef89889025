import Foundation

/// Gradual magnitude pruning (Zhu & Gupta 2017): starting dense, at steps t0, t0+Δt, …, up to
/// the end step, each target is pruned to exactly round(n·s_t) zeros by top-k magnitude among
/// its kept weights, with the cubic schedule
///
///     s_t = s_f + (s_i − s_f)·(1 − (t − t0)/(t_end − t0))³
///
/// (s_f the target's sparsity, s_i the initial sparsity capped at s_f). When t_end − t0 is
/// not a multiple of Δt, the end step is a pruning step too, so every target reaches s_f.
public final class GradualMagnitudePruning: SparsitySchedule {
  public let name = "gmp"
  public let initialSparsity: Double
  public let beginStep: Int
  public let endStep: Int
  public let frequency: Int
  /// One global ranking at each pruning step (see `OneShotMagnitude.globalMagnitude`).
  public let globalMagnitude: Bool

  public init(
    initialSparsity: Double = 0, beginStep: Int, endStep: Int, frequency: Int,
    globalMagnitude: Bool = false
  ) {
    self.initialSparsity = initialSparsity
    self.beginStep = beginStep
    self.endStep = max(beginStep, endStep)
    self.frequency = max(1, frequency)
    self.globalMagnitude = globalMagnitude
  }

  /// The sparsity a target with final sparsity `final` has after step `step`.
  public func sparsity(final: Double, atStep step: Int) -> Double {
    let initial = min(initialSparsity, final)
    if step < beginStep { return 0 }
    if step >= endStep { return final }
    let progress = Double(step - beginStep) / Double(endStep - beginStep)
    return final + (initial - final) * pow(1 - progress, 3)
  }

  /// Whether masks are recomputed after step `step`.
  public func isPruningStep(_ step: Int) -> Bool {
    step >= beginStep && step <= endStep
      && ((step - beginStep) % frequency == 0 || step == endStep)
  }

  public func start(_ context: SparsityContext) throws {
    for t in context.targets.indices { try context.grow(t) }
    if isPruningStep(0) { try update(context, step: 0) }
  }

  public func update(_ context: SparsityContext, step: Int) throws {
    guard isPruningStep(step) else { return }
    let sparsities = context.targets.map { sparsity(final: $0.targetSparsity, atStep: step) }
    if globalMagnitude {
      let sparse = context.targets.indices.filter { context.targets[$0].targetSparsity > 0 }
      try context.pruneGlobally(sparse, sparsities: sparse.map { sparsities[$0] })
    } else {
      for t in context.targets.indices { try context.prune(t, toSparsity: sparsities[t]) }
    }
    let pruned = context.changes.reduce(0) { $0 + $1.pruned.count }
    context.log(
      "step \(step): GMP prune of \(pruned) weights"
        + (step == endStep ? "; target reached, masks frozen" : ""))
    context.record(.magnitudePrune, step: step, targets: Array(context.targets.indices))
    if step == endStep {
      context.record(.frozen, step: step, targets: Array(context.targets.indices))
    }
  }

  public var lastMaskChangeStep: Int { endStep }

  public func phase(afterStep step: Int) -> String {
    if step < beginStep { return "dense (GMP from step \(beginStep))" }
    if step < endStep { return "GMP pruning (until step \(endStep))" }
    return "fine-tune"
  }
}

extension GradualMagnitudePruning: ConfiguredSchedule {
  public static let method = SparsityMethod.gmp

  /// Prunes from `pruningBeginStep` to `pruningEndStep` (default: 25% to 75% of training).
  public static func make(_ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int)
    throws -> (schedule: SparsitySchedule, notes: [String])
  {
    let begin = config.pruningBeginStep ?? ScheduleFactory.step(atFraction: 0.25, of: totalSteps)
    let end =
      config.pruningEndStep
      ?? max(begin, ScheduleFactory.step(atFraction: 0.75, of: totalSteps))
    guard end >= begin else {
      throw CoppiceError.invalidArgument("pruning end step \(end) is before begin step \(begin)")
    }
    guard end <= totalSteps else {
      throw CoppiceError.invalidArgument(
        "pruning end step \(end) is after the end of training (\(totalSteps) steps)")
    }
    let schedule = GradualMagnitudePruning(
      initialSparsity: config.initialSparsity, beginStep: begin, endStep: end,
      frequency: config.pruningFrequency, globalMagnitude: config.globalMagnitude)
    return (schedule, [])
  }
}
