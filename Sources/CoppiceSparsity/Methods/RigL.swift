/// RigL (Evci et al. 2020): from a random mask at target sparsity (ERK by default), every
/// `interval` steps until `endStep` drop the cosine-decayed fraction of each target's kept
/// weights by smallest magnitude and grow as many where the dense gradient is largest among
/// the positions not kept. Grown weights start at zero. The update steps need dense gradients.
public final class RigL: SparsitySchedule {
  public let name = "rigl"
  public let timing: DynamicSparseTiming

  public init(timing: DynamicSparseTiming) { self.timing = timing }

  public func start(_ context: SparsityContext) throws {
    var rng = context.rng("rigl.init", step: 0)
    for t in context.targets.indices { try context.randomizeMask(t, rng: &rng) }
    context.record(.start, step: 0, targets: Array(context.targets.indices))
  }

  public func needsDenseGradients(atStep step: Int) -> Bool { timing.isUpdateStep(step) }

  public func update(_ context: SparsityContext, step: Int) throws {
    guard timing.isUpdateStep(step) else { return }
    try timing.update(context, step: step, method: "RigL") { t, k, mask in
      guard let gradient = context.denseGradients[t] else {
        throw CoppiceError.invalidArgument(
          "RigL update at step \(step) needs the dense gradient of \(context.targets[t].name); "
            + "capture it before masking gradients")
      }
      return gradient.withUnsafeBufferPointer {
        TopKMagnitude.largest(k, of: $0.baseAddress!, count: $0.count, pool: .pruned(mask))
      }
    }
  }

  public func isMaskUpdateStep(_ step: Int) -> Bool { timing.isUpdateStep(step) }
  public var lastMaskChangeStep: Int { timing.endStep - 1 }
  public func phase(afterStep step: Int) -> String { timing.phase(afterStep: step, method: "RigL") }
}

extension RigL: ConfiguredSchedule {
  public static let method = SparsityMethod.rigl

  /// Needs a gradient buffer on every non-empty target.
  public static func make(_ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int)
    throws -> (schedule: SparsitySchedule, notes: [String])
  {
    if let missing = targets.first(where: { $0.gradients == nil && $0.count > 0 }) {
      throw CoppiceError.invalidArgument(
        "RigL needs a gradient buffer for every target; \(missing.name) has none")
    }
    return (RigL(timing: DynamicSparseTiming(config, totalSteps: totalSteps)), [])
  }
}
