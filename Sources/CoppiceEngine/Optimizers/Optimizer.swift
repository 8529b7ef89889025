/// Updates parameters from their gradients. Implementations keep per-parameter state
/// (momentum, moments) that `resetState(of:at:)` can zero for individual weights — sparse
/// training resets it for weights whose mask status changes.
public protocol Optimizer: AnyObject {
  var learningRate: Float { get set }
  func step()
  /// Zeroes the optimizer state of `parameter` at the given flat indices.
  func resetState(of parameter: Parameter, at indices: [Int])
  /// From now on, updates only the weights of `parameter` at the flat `positions` (ascending,
  /// distinct), or every weight again (nil). For a sparse layer's kept weights: valid only
  /// while the weights, gradients and state everywhere else are zero (the full update would
  /// leave them zero), so both give the same result.
  func updateOnly(_ parameter: Parameter, at positions: [Int32]?)
  /// Named state tensors (for checkpoints).
  var state: [(name: String, tensor: Tensor)] { get }
  /// Steps taken (AdamW's bias correction depends on it; part of a checkpoint).
  var stepCount: Int64 { get set }
}
