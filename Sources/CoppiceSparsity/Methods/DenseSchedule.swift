/// No sparsity: every mask stays all ones. The baseline every comparison needs.
public final class DenseSchedule: SparsitySchedule {
  public let name = "dense"
  public init() {}

  public func start(_ context: SparsityContext) throws {
    for t in context.targets.indices { try context.grow(t) }
  }

  public func update(_ context: SparsityContext, step: Int) throws {}
  public var lastMaskChangeStep: Int { 0 }
  public func phase(afterStep step: Int) -> String { "dense" }
}

extension DenseSchedule: ConfiguredSchedule {
  public static let method = SparsityMethod.dense
  public static func make(_ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int)
    -> (schedule: SparsitySchedule, notes: [String])
  { (DenseSchedule(), []) }
}
