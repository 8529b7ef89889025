import Foundation

/// Learning rate as a function of training progress, in optimizer steps.
public enum LearningRateSchedule: Equatable, Sendable, Codable {
  /// Constant base rate.
  case constant
  /// Multiply by `gamma` every `stepSize` steps.
  case step(stepSize: Int, gamma: Float)
  /// Cosine decay from the base rate to `minimum` over the total steps.
  case cosine(minimum: Float)

  /// The rate at `step` (0-based) of `totalSteps`, with `warmupSteps` of linear warm-up from
  /// base/warmupSteps to the base rate first (the decay then runs over the remaining steps).
  public func rate(base: Float, step: Int, totalSteps: Int, warmupSteps: Int = 0) -> Float {
    if warmupSteps > 0 && step < warmupSteps {
      return base * Float(step + 1) / Float(warmupSteps)
    }
    let t = step - warmupSteps
    let span = max(1, totalSteps - warmupSteps)
    switch self {
    case .constant:
      return base
    case .step(let stepSize, let gamma):
      return base * pow(gamma, Float(t / max(1, stepSize)))
    case .cosine(let minimum):
      let progress = min(1, Double(t) / Double(span))
      return minimum + (base - minimum) * Float(0.5 * (1 + cos(Double.pi * progress)))
    }
  }
}
