import CCoppiceKernels

/// Rectified linear unit, y = max(x, 0).
public final class ReLU: Layer {
  public var needsInputGradient = true
  private var output: Tensor?
  private var gradInput: Tensor?

  public init() {}
  public var description: String { "ReLU" }
  public func outputShape(for inputShape: [Int]) -> [Int] { inputShape }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    let y = Tensor.reuse(output, shape: x.shape)
    output = y
    ck_relu_forward(x.count, x.data, y.data)
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    guard let y = output else { preconditionFailure("ReLU: backward before forward") }
    let dx = Tensor.reuse(gradInput, shape: y.shape)
    gradInput = dx
    ck_relu_backward(y.count, y.data, dy.data, dx.data)
    return dx
  }
}
