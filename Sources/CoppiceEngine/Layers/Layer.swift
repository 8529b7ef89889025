/// A layer with an explicit forward and backward pass.
///
/// `forward` keeps whatever it needs for `backward` (inputs, outputs, indices); `backward`
/// receives the gradient of the loss with respect to the layer's output, writes the gradients
/// of its parameters and returns the gradient with respect to its input. Returned tensors are
/// owned by the layer and reused on the next call, so callers must not keep them across steps.
public protocol Layer: AnyObject {
  /// A short description, e.g. `Conv2d(1→32, 3×3, stride 1, pad 1)`.
  var description: String { get }
  /// Trainable parameters in model order, named relative to this layer.
  var parameters: [Parameter] { get }
  /// Output shape for an input shape (including the batch dimension).
  func outputShape(for inputShape: [Int]) -> [Int]
  func forward(_ input: Tensor, training: Bool) -> Tensor
  func backward(_ gradOutput: Tensor) -> Tensor
  /// Forward multiply-accumulate count ×2 (FLOPs) for one sample of the given input shape
  /// (without the batch dimension). Used for throughput reports.
  func forwardFLOPs(inputShape: [Int]) -> Double
  /// When false, `backward` may skip computing the input gradient (first layer).
  var needsInputGradient: Bool { get set }
}

extension Layer {
  public var parameters: [Parameter] { [] }
  public func forwardFLOPs(inputShape: [Int]) -> Double { 0 }
}

/// Layers that hold running state outside their parameters (batch-norm statistics).
public protocol StatefulLayer: Layer {
  /// Named non-trainable tensors to save with a checkpoint.
  var buffers: [(name: String, tensor: Tensor)] { get }
}
