/// What C-GaP and P-GaP share before they start: the partitions of the targets and the length
/// of a GaP step, checked to fit in training.
struct GaPPlan {
  /// Target indices per partition, in grow order.
  let partitions: [[Int]]
  /// Optimizer steps per GaP step.
  let stepLength: Int
  /// Log lines: κ reduced, and the layers of each partition.
  let notes: [String]

  /// Resolves the partitions; the step length is `gapStepLength`, or else the sequential GaP
  /// steps (`SparsityConfig.sequentialGaPSteps`) fill 75% of training. Throws when there is
  /// no target or the GaP phase does not fit in `totalSteps`.
  init(_ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int) throws {
    guard !targets.isEmpty else {
      throw CoppiceError.invalidArgument("GaP needs at least one sparse target")
    }
    let partitions = try Partitioning.partitions(config.partitions, targets: targets)
    var notes: [String] = []
    let excluded = Partitioning.denseByDesign(targets)
    if !excluded.isEmpty {
      notes.append(
        "left out of the GaP partitions (kept dense by the distribution): "
          + excluded.map { targets[$0].name }.joined(separator: ", "))
    }
    if case .balanced(let requested, _) = config.partitions, requested > partitions.count {
      let units = Set(
        partitions.joined().map { targets[$0].block ?? "#\($0)" }
      ).count
      notes.append(
        "partitions reduced from \(requested) to \(partitions.count): only "
          + "\(units) prunable layers or blocks to partition")
    }
    let kappa = partitions.count
    let sequential = config.sequentialGaPSteps(partitionCount: kappa)
    let length =
      config.gapStepLength
      ?? max(1, ScheduleFactory.step(atFraction: 0.75, of: totalSteps) / max(1, sequential ?? 1))
    let (needed, overflow) = (sequential ?? Int.max).multipliedReportingOverflow(by: length)
    guard sequential != nil, !overflow, needed <= totalSteps else {
      let factors =
        config.method == .cgap
        ? "\(kappa) partitions × \(config.rounds) rounds" : "\(config.rounds) rounds"
      throw CoppiceError.invalidArgument(
        "\(config.method.rawValue): \(factors) × \(length) steps "
          + "= \(needed) optimizer steps, but training has only \(totalSteps)")
    }
    for (p, members) in partitions.enumerated() {
      notes.append("partition \(p): " + members.map { targets[$0].name }.joined(separator: ", "))
    }
    self.partitions = partitions
    self.stepLength = length
    self.notes = notes
  }

  /// The GaP schedule `build(partitions, stepLength, rounds)` makes from the plan of
  /// `config`, with the plan's notes.
  static func make(
    _ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int,
    _ build: ([[Int]], Int, Int) -> SparsitySchedule
  ) throws -> (schedule: SparsitySchedule, notes: [String]) {
    let plan = try GaPPlan(config, targets: targets, totalSteps: totalSteps)
    return (build(plan.partitions, plan.stepLength, config.rounds), plan.notes)
  }
}
