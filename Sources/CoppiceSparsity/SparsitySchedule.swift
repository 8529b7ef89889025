/// A sparse-training method: when and how masks change. One implementation per method, all
/// driven the same way (normally through `Sparsifier`, by the engine trainer and by the C ABI):
///
/// ```
/// start(context)                                  once, before the first step
/// for step in 1...totalSteps {
///   dense = needsDenseGradients(atStep: step)     before backward of this step
///   forward, backward (full weight gradients if dense), capture them, mask gradients
///   optimizer step, re-apply masks
///   update(context, step: step)                   may change masks
/// }
/// ```
/// Steps count completed optimizer steps, 1-based. Every schedule leaves every target at
/// exactly `targetZeros` zeros when it has finished changing masks — except GaP with
/// `GaPPruneMode.global`, whose per-target zeros differ while their sum is exact.
public protocol SparsitySchedule: AnyObject {
  /// The method's name string ("cgap", "rigl", ...).
  var name: String { get }
  /// Sets initial masks (and zeroes masked weights) before the first step.
  func start(_ context: SparsityContext) throws
  /// Whether the update after optimizer step `step` needs dense gradients (RigL). The caller
  /// then computes full weight gradients for that step instead of only the kept positions, and
  /// they are captured (`SparsityContext.captureDenseGradients`) before gradients are masked.
  func needsDenseGradients(atStep step: Int) -> Bool
  /// Called after every optimizer step (`step` = number of completed steps, 1-based); may
  /// change masks. Records grown/pruned positions and log lines in the context.
  func update(_ context: SparsityContext, step: Int) throws
  /// The last step at which masks may change; afterwards they are frozen.
  var lastMaskChangeStep: Int { get }
  /// Whether masks can no longer change after `step` completed steps (default: past
  /// `lastMaskChangeStep`; P-GaP counts finished rounds instead).
  func masksFrozen(afterStep step: Int) -> Bool
  /// State beyond masks, step and seed that a checkpoint must carry (P-GaP's shared masks),
  /// as named byte strings; empty by default.
  func saveState() -> [String: [UInt8]]
  /// Restores what `saveState` returned. Throws on missing or malformed entries.
  func restoreState(_ state: [String: [UInt8]], context: SparsityContext) throws
  /// What the schedule is doing after `step` completed steps, for progress output
  /// ("C-GaP round 1/2, partition 3 dense", "fine-tune").
  func phase(afterStep step: Int) -> String
  /// Whether step `step` (completed steps) ends a GaP step (C-GaP's prune-and-grow boundaries,
  /// the final prune included), where per-step restarts happen. False by default.
  func isGaPStepBoundary(_ step: Int) -> Bool
  /// Whether step `step` (completed steps, 1-based) is a mask-update step of a dynamic method
  /// (SET, RigL): with `referenceMaskUpdates` the update replaces that step's optimizer step.
  /// False by default.
  func isMaskUpdateStep(_ step: Int) -> Bool
  /// Optimizer steps per GaP step (GaP methods), nil otherwise.
  var gapStepLength: Int? { get }
  /// The GaP partitions (target indices), empty for other methods.
  var gapPartitions: [[Int]] { get }
}

extension SparsitySchedule {
  public func needsDenseGradients(atStep step: Int) -> Bool { false }
  public func masksFrozen(afterStep step: Int) -> Bool { step >= lastMaskChangeStep }
  public func saveState() -> [String: [UInt8]] { [:] }
  public func isGaPStepBoundary(_ step: Int) -> Bool { false }
  public func isMaskUpdateStep(_ step: Int) -> Bool { false }
  public var gapStepLength: Int? { nil }
  public var gapPartitions: [[Int]] { [] }
  public func restoreState(_ state: [String: [UInt8]], context: SparsityContext) throws {}
}
