/// Cyclic scheduled grow-and-prune (C-GaP, Ma et al. ICLR 2022).
///
/// Targets are split into κ partitions. At the start every target gets a random mask at its
/// target sparsity, except partition 0, which starts dense (unmasked, its initial weights
/// intact). Every `stepLength` optimizer steps is a GaP step boundary: the partition that was
/// dense is pruned back to its target by exact per-layer top-k magnitude, and the next
/// partition in cyclic order is grown (its mask removed; its pruned weights restart from zero).
/// After `rounds` rounds of κ steps the last dense partition is pruned and all masks are frozen
/// for fine-tuning. Boundary b (1-based) is after step b·stepLength. With `pruneMode` global,
/// a prune keeps the largest magnitudes over the partition's layers together (the final prune:
/// over every sparse layer) under their summed budget (non-uniform GaP).
public final class CyclicGaP: SparsitySchedule {
  public let name = "cgap"
  /// Target indices per partition, in grow order.
  public let partitions: [[Int]]
  /// Optimizer steps per GaP step.
  public let stepLength: Int
  public let rounds: Int
  /// Per-layer prunes (default) or global ones under the pruned layers' budget.
  public let pruneMode: GaPPruneMode

  public init(
    partitions: [[Int]], stepLength: Int, rounds: Int, pruneMode: GaPPruneMode = .layer
  ) {
    self.partitions = partitions
    self.stepLength = max(1, stepLength)
    self.rounds = max(1, rounds)
    self.pruneMode = pruneMode
  }

  /// Number of GaP steps (κ·R); after the last one, fine-tuning.
  public var gapSteps: Int { partitions.count * rounds }

  /// The partition that is dense after `step` completed steps, nil during fine-tuning.
  public func densePartition(afterStep step: Int) -> Int? {
    let b = step / stepLength
    return b < gapSteps ? b % partitions.count : nil
  }

  public func start(_ context: SparsityContext) throws {
    var rng = context.rng("cgap.init", step: 0)
    let first = Set(partitions[0])
    for t in context.targets.indices {
      if first.contains(t) { try context.grow(t) } else { try context.randomizeMask(t, rng: &rng) }
    }
    context.record(.start, step: 0, targets: Array(context.targets.indices))
    context.record(.grow, step: 0, partition: 0, targets: partitions[0])
    context.log("step 0: random masks; partition 0 (\(context.names(partitions[0]))) dense")
  }

  public func update(_ context: SparsityContext, step: Int) throws {
    guard step > 0, step % stepLength == 0 else { return }
    let boundary = step / stepLength
    guard boundary <= gapSteps else { return }
    let pruned = (boundary - 1) % partitions.count
    switch pruneMode {
    case .layer: for t in partitions[pruned] { try context.prune(t) }
    case .global:
      // The final prune ranks the whole model (every sparse layer) under its total budget.
      try context.pruneToBudget(
        boundary < gapSteps ? partitions[pruned] : context.sparseTargetIndices)
    }
    context.record(
      boundary < gapSteps ? .prune : .finalPrune, step: step, partition: pruned,
      targets: boundary < gapSteps ? partitions[pruned] : context.sparseTargetIndices)
    if boundary < gapSteps {
      let grown = boundary % partitions.count
      for t in partitions[grown] { try context.grow(t) }
      context.record(.grow, step: step, partition: grown, targets: partitions[grown])
      context.log(
        "step \(step): prune partition \(pruned) (\(context.names(partitions[pruned]))), "
          + "grow partition \(grown) (\(context.names(partitions[grown])))")
    } else {
      context.log(
        "step \(step): final prune of partition \(pruned) "
          + "(\(context.names(partitions[pruned])))"
          + (pruneMode == .global ? " (global ranking over the whole model)" : "")
          + "; masks frozen for fine-tune")
    }
  }

  public var gapPartitions: [[Int]] { partitions }
  public var lastMaskChangeStep: Int { gapSteps * stepLength }

  public func isGaPStepBoundary(_ step: Int) -> Bool {
    step > 0 && step % stepLength == 0 && step / stepLength <= gapSteps
  }
  public var gapStepLength: Int? { stepLength }

  public func phase(afterStep step: Int) -> String {
    guard let p = densePartition(afterStep: step) else { return "fine-tune" }
    let round = step / stepLength / partitions.count + 1
    return "C-GaP round \(round)/\(rounds), partition \(p) dense"
  }
}

extension CyclicGaP: ConfiguredSchedule {
  public static let method = SparsityMethod.cgap
  public static func make(_ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int)
    throws -> (schedule: SparsitySchedule, notes: [String])
  {
    try GaPPlan.make(config, targets: targets, totalSteps: totalSteps) {
      CyclicGaP(partitions: $0, stepLength: $1, rounds: $2, pruneMode: config.gapPrune)
    }
  }
}
