import CoppiceEngine

/// Wall time of each phase of `Trainer.trainStep`, accumulated while attached to a trainer
/// (`Trainer.stepTimes`); for profiling only.
public final class StepTimes {
  public enum Phase: String, CaseIterable, Sendable {
    case data = "data loading and augmentation"
    case forward
    case loss
    case backward
    case synchronize = "gradient synchronisation"
    case masking = "gradient masking"
    case optimizer
    case sparsifier = "sparsifier step"
  }

  /// Seconds per phase, summed over the steps timed.
  public private(set) var seconds: [Phase: Double] = [:]
  /// Whole steps: their count and summed wall time (phases plus whatever lies between).
  public private(set) var steps = 0
  public private(set) var stepSeconds = 0.0

  public init() {}

  /// Seconds per step of a phase (mean over the steps timed).
  public func mean(_ phase: Phase) -> Double {
    steps == 0 ? 0 : (seconds[phase] ?? 0) / Double(steps)
  }

  func add(_ phase: Phase, since start: Double) -> Double {
    let now = monotonicSeconds()
    seconds[phase, default: 0] += now - start
    return now
  }

  func addStep(since start: Double) {
    stepSeconds += monotonicSeconds() - start
    steps += 1
  }
}
