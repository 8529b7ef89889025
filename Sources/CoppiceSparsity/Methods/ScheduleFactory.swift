/// Builds the schedule of a configured method for a set of targets and a training length.
public enum ScheduleFactory {
  /// The schedule, plus notes for the log (e.g. κ reduced to the number of layers).
  /// Throws `CoppiceError.invalidArgument` for invalid options or a GaP schedule that does not
  /// fit in `totalSteps`.
  public static func makeSchedule(
    _ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int
  ) throws -> (schedule: SparsitySchedule, notes: [String]) {
    try config.validate()
    guard totalSteps >= 1 else {
      throw CoppiceError.invalidArgument("total steps must be ≥ 1, got \(totalSteps)")
    }
    func fraction(_ f: Double) -> Int { Int((Double(totalSteps) * f).rounded()) }
    switch config.method {
    case .dense:
      return (DenseSchedule(), [])
    case .staticSparse:
      return (StaticSparse(), [])
    case .oneshot:
      let step = config.pruneStep ?? totalSteps / 2
      guard step <= totalSteps else {
        throw CoppiceError.invalidArgument(
          "prune step \(step) is after the end of training (\(totalSteps) steps)")
      }
      return (OneShotMagnitude(pruneStep: step, globalMagnitude: config.globalMagnitude), [])
    case .gmp:
      let begin = config.pruningBeginStep ?? fraction(0.25)
      let end = config.pruningEndStep ?? max(begin, fraction(0.75))
      guard end >= begin else {
        throw CoppiceError.invalidArgument("pruning end step \(end) is before begin step \(begin)")
      }
      guard end <= totalSteps else {
        throw CoppiceError.invalidArgument(
          "pruning end step \(end) is after the end of training (\(totalSteps) steps)")
      }
      return (
        GradualMagnitudePruning(
          initialSparsity: config.initialSparsity, beginStep: begin, endStep: end,
          frequency: config.pruningFrequency, globalMagnitude: config.globalMagnitude), []
      )
    case .set, .rigl:
      let rigl = config.method == .rigl
      let timing = DynamicSparseTiming(
        interval: config.updateInterval, endStep: max(1, fraction(config.updateEndFraction)),
        dropFraction: config.dropFraction,
        decay: config.dropFractionDecay ?? (rigl ? .cosine : .constant))
      if rigl, let missing = targets.first(where: { $0.gradients == nil && $0.count > 0 }) {
        throw CoppiceError.invalidArgument(
          "RigL needs a gradient buffer for every target; \(missing.name) has none")
      }
      return (rigl ? RigL(timing: timing) : SparseEvolutionaryTraining(timing: timing), [])
    case .cgap, .pgap:
      guard !targets.isEmpty else {
        throw CoppiceError.invalidArgument("GaP needs at least one sparse target")
      }
      let partitions = try Partitioning.partitions(config.partitions, targets: targets)
      var notes: [String] = []
      if case .balanced(let requested, _) = config.partitions, requested > partitions.count {
        notes.append(
          "partitions reduced from \(requested) to \(partitions.count): only "
            + "\(targets.count) prunable layers")
      }
      let kappa = partitions.count
      let rounds = config.rounds
      let sequential = config.sequentialGaPSteps(partitionCount: kappa)
      let length = config.gapStepLength ?? max(1, fraction(0.75) / max(1, sequential ?? 1))
      let (needed, overflow) = (sequential ?? Int.max).multipliedReportingOverflow(by: length)
      guard sequential != nil, !overflow, needed <= totalSteps else {
        let factors =
          config.method == .cgap ? "\(kappa) partitions × \(rounds) rounds" : "\(rounds) rounds"
        throw CoppiceError.invalidArgument(
          "\(config.method.rawValue): \(factors) × \(length) steps "
            + "= \(needed) optimizer steps, but training has only \(totalSteps)")
      }
      for (p, members) in partitions.enumerated() {
        notes.append(
          "partition \(p): " + members.map { targets[$0].name }.joined(separator: ", "))
      }
      if config.method == .cgap {
        return (CyclicGaP(partitions: partitions, stepLength: length, rounds: rounds), notes)
      }
      return (ParallelGaP(partitions: partitions, stepLength: length, rounds: rounds), notes)
    }
  }
}

extension SparsityConfig {
  /// `ScheduleFactory.makeSchedule` for this configuration.
  public func makeSchedule(targets: [SparseTarget], totalSteps: Int) throws -> SparsitySchedule {
    try ScheduleFactory.makeSchedule(self, targets: targets, totalSteps: totalSteps).schedule
  }
}
