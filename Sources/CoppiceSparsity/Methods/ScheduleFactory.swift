/// A sparse-training method as the registry knows it: a schedule type that builds itself from a
/// configuration. Each method's file implements it next to its schedule; adding a method is
/// that file plus its line in `ScheduleFactory.methods`.
public protocol ConfiguredSchedule: SparsitySchedule {
  /// The method this schedule implements.
  static var method: SparsityMethod { get }
  /// The schedule for `config` over `targets` and `totalSteps` optimizer steps (both already
  /// validated), plus notes for the log. Throws `CoppiceError.invalidArgument` when the
  /// method's options do not fit this training length or these targets.
  static func make(_ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int) throws
    -> (schedule: SparsitySchedule, notes: [String])
}

/// The registry of sparse-training methods: builds the schedule of a configured method.
public enum ScheduleFactory {
  /// Every method, one schedule type each.
  public static var methods: [any ConfiguredSchedule.Type] {
    [
      DenseSchedule.self, StaticSparse.self, OneShotMagnitude.self, GradualMagnitudePruning.self,
      SparseEvolutionaryTraining.self, RigL.self, CyclicGaP.self, ParallelGaP.self,
    ]
  }

  /// The schedule, plus notes for the log (e.g. κ reduced to the number of layers).
  /// Throws `CoppiceError.invalidArgument` for invalid options or a schedule that does not
  /// fit in `totalSteps`.
  public static func makeSchedule(
    _ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int
  ) throws -> (schedule: SparsitySchedule, notes: [String]) {
    try config.validate()
    guard totalSteps >= 1 else {
      throw CoppiceError.invalidArgument("total steps must be ≥ 1, got \(totalSteps)")
    }
    guard let type = methods.first(where: { $0.method == config.method }) else {
      throw CoppiceError.invalidArgument("no schedule registered for \(config.method.rawValue)")
    }
    return try type.make(config, targets: targets, totalSteps: totalSteps)
  }

  /// round(totalSteps · fraction): the step at a fraction of training.
  static func step(atFraction fraction: Double, of totalSteps: Int) -> Int {
    Int((Double(totalSteps) * fraction).rounded())
  }
}

extension SparsityConfig {
  /// `ScheduleFactory.makeSchedule` for this configuration.
  public func makeSchedule(targets: [SparseTarget], totalSteps: Int) throws -> SparsitySchedule {
    try ScheduleFactory.makeSchedule(self, targets: targets, totalSteps: totalSteps).schedule
  }
}
