import Foundation

/// How the drop fraction of SET/RigL evolves between updates.
public enum DropFractionDecay: String, Sendable, CaseIterable, Codable {
  /// The same fraction at every update (original SET).
  case constant
  /// α_t = α/2·(1 + cos(π·t/T_end)) (RigL).
  case cosine
}

/// The timing shared by SET and RigL: update every `interval` steps while step < `endStep`,
/// dropping `dropCount` of each target's kept weights by smallest magnitude and growing the
/// same number among the positions not kept after the drop (just-dropped ones included, as in
/// the RigL paper; a position dropped and regrown keeps its value, every newly grown weight
/// starts at zero). Nonzeros per target never change, so each stays at exactly round(n·s).
public struct DynamicSparseTiming: Equatable, Sendable {
  public let interval: Int
  public let endStep: Int
  public let dropFraction: Double
  public let decay: DropFractionDecay
  /// Drop count floor(α·nonzeros), as the RigL reference code, instead of rounded.
  public let floorsDropCount: Bool

  public init(
    interval: Int, endStep: Int, dropFraction: Double, decay: DropFractionDecay,
    floorsDropCount: Bool = false
  ) {
    self.interval = max(1, interval)
    self.endStep = endStep
    self.dropFraction = dropFraction
    self.decay = decay
    self.floorsDropCount = floorsDropCount
  }

  public func isUpdateStep(_ step: Int) -> Bool {
    step > 0 && step % interval == 0 && step < endStep
  }

  /// The drop fraction at step `step`.
  public func fraction(atStep step: Int) -> Double {
    switch decay {
    case .constant: return dropFraction
    case .cosine:
      let t = Double(min(step, endStep)) / Double(max(endStep, 1))
      return dropFraction / 2 * (1 + cos(Double.pi * t))
    }
  }

  /// Weights dropped (and grown) at step `step` in a target with `nonzeros` kept weights:
  /// round(α_t · nonzeros), or floor(α_t · nonzeros) with `floorsDropCount`.
  public func dropCount(nonzeros: Int, step: Int) -> Int {
    let real = fraction(atStep: step) * Double(nonzeros)
    return min(nonzeros, Int(floorsDropCount ? real.rounded(.down) : real.rounded()))
  }

  /// Performs one drop-and-grow update on every sparse target. `grow(t, k, pool)` returns the
  /// `k` positions to grow among `pool` (the positions not kept after the drop).
  func update(
    _ context: SparsityContext, step: Int, method: String,
    grow: (_ target: Int, _ count: Int, _ notKept: [UInt8]) throws -> [Int]
  ) throws {
    var moved = 0
    var updated: [Int] = []
    for (t, target) in context.targets.enumerated() where target.targetSparsity > 0 {
      updated.append(t)
      let k = dropCount(nonzeros: target.nonzeros, step: step)
      if k == 0 { continue }
      var mask = [UInt8](repeating: 0, count: target.count)
      for i in TopKMagnitude.largest(
        target.nonzeros - k, of: target.weights, count: target.count, pool: .kept(target.mask))
      {
        mask[i] = 1
      }
      for i in try grow(t, k, mask) { mask[i] = 1 }
      try context.setMask(t, mask)
      moved += k
    }
    context.log(
      "step \(step): \(method) drop fraction \(String(format: "%.4f", fraction(atStep: step))), "
        + "dropped and regrew \(moved) weights")
    context.record(.maskUpdate, step: step, targets: updated)
  }

  func phase(afterStep step: Int, method: String) -> String {
    step < endStep ? "\(method) mask updates every \(interval) steps until \(endStep)" : "fine-tune"
  }
}

extension DynamicSparseTiming {
  /// The timing of a SET or RigL configuration: updates every `updateInterval` steps until
  /// `updateEndFraction` of training, the drop fraction decayed as configured (default: cosine
  /// for RigL, constant for SET).
  init(_ config: SparsityConfig, totalSteps: Int) {
    self.init(
      interval: config.updateInterval,
      endStep: max(1, ScheduleFactory.step(atFraction: config.updateEndFraction, of: totalSteps)),
      dropFraction: config.dropFraction,
      decay: config.dropFractionDecay ?? (config.method == .rigl ? .cosine : .constant),
      floorsDropCount: config.referenceMaskUpdates)
  }
}
