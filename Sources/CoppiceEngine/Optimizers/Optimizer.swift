/// Updates parameters from their gradients. Implementations keep per-parameter state
/// (momentum, moments) that `resetState(of:at:)` can zero for individual weights — sparse
/// training resets it for weights whose mask status changes.
public protocol Optimizer: AnyObject {
  var learningRate: Float { get set }
  func step()
  /// Zeroes the optimizer state of `parameter` at the given flat indices.
  func resetState(of parameter: Parameter, at indices: [Int])
  /// Named state tensors (for checkpoints).
  var state: [(name: String, tensor: Tensor)] { get }
  /// Steps taken (AdamW's bias correction depends on it; part of a checkpoint).
  var stepCount: Int64 { get set }
}
