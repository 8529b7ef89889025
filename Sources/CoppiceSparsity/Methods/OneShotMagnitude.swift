/// One-shot magnitude pruning: train dense until `pruneStep`, prune every target to its target
/// sparsity by exact top-k magnitude (per layer, or one global ranking), then fine-tune with
/// frozen masks.
public final class OneShotMagnitude: SparsitySchedule {
  public let name = "oneshot"
  /// Completed steps after which the model is pruned (0 = prune at the start).
  public let pruneStep: Int
  /// One ranking over all sparse targets instead of one per layer. The total number of zeros
  /// is then exact (round of Σ n·s) but individual layers are not at their target.
  public let globalMagnitude: Bool

  public init(pruneStep: Int, globalMagnitude: Bool = false) {
    self.pruneStep = pruneStep
    self.globalMagnitude = globalMagnitude
  }

  public func start(_ context: SparsityContext) throws {
    for t in context.targets.indices { try context.grow(t) }
    if pruneStep == 0 { try prune(context, step: 0) }
  }

  public func update(_ context: SparsityContext, step: Int) throws {
    if step == pruneStep { try prune(context, step: step) }
  }

  private func prune(_ context: SparsityContext, step: Int) throws {
    if globalMagnitude {
      let sparse = context.targets.indices.filter { context.targets[$0].targetSparsity > 0 }
      try context.pruneGlobally(
        sparse, sparsities: sparse.map { context.targets[$0].targetSparsity })
    } else {
      for t in context.targets.indices { try context.prune(t) }
    }
    context.log(
      "step \(step): one-shot \(globalMagnitude ? "global" : "per-layer") magnitude prune; "
        + "masks frozen for fine-tune")
    context.record(.magnitudePrune, step: step, targets: Array(context.targets.indices))
    context.record(.frozen, step: step, targets: Array(context.targets.indices))
  }

  public var lastMaskChangeStep: Int { pruneStep }

  public func phase(afterStep step: Int) -> String {
    step < pruneStep ? "dense (prune after step \(pruneStep))" : "fine-tune"
  }
}

extension OneShotMagnitude: ConfiguredSchedule {
  public static let method = SparsityMethod.oneshot

  /// Prunes at `pruneStep` (default: half of training).
  public static func make(_ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int)
    throws -> (schedule: SparsitySchedule, notes: [String])
  {
    let step = config.pruneStep ?? totalSteps / 2
    guard step <= totalSteps else {
      throw CoppiceError.invalidArgument(
        "prune step \(step) is after the end of training (\(totalSteps) steps)")
    }
    return (OneShotMagnitude(pruneStep: step, globalMagnitude: config.globalMagnitude), [])
  }
}
