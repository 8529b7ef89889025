import CCoppiceKernels

/// y = relu(body(x) + shortcut(x)). The shortcut is the identity, or — when the body changes
/// the shape — the parameter-free "option A" of He et al.: subsample by the stride and pad the
/// new channels with zeros (what CIFAR ResNet-20 uses).
public final class ResidualBlock: Layer {
  public let body: Sequential
  public var needsInputGradient = true
  private var inputShape: [Int] = []
  private var output: Tensor?
  private var gradSum: Tensor?
  private var gradInput: Tensor?

  public init(body: Sequential) { self.body = body }

  public var description: String { "Residual(\(body.description))" }
  public var parameters: [Parameter] { body.parameters }

  public func outputShape(for inputShape: [Int]) -> [Int] { body.outputShape(for: inputShape) }

  public func forwardFLOPs(inputShape: [Int]) -> Double {
    body.forwardFLOPs(inputShape: inputShape)
  }

  /// In training, when the body ends in a batch norm, its output is not stored: the sum
  /// applies the batch norm's map as it reads the body's last input.
  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    inputShape = x.shape
    if training && body.defersLastOutput {
      let b = body.forwardDeferringLastOutput(x)
      let y = Tensor.reuse(output, shape: b.input.shape)
      output = y
      var s = residualShape(input: x.shape, output: b.input.shape)
      b.withMap { ck_residual_relu_forward_mapped(&s, b.input.data, $0, x.data, y.data) }
      return y
    }
    let b = body.forward(x, training: training)
    let y = Tensor.reuse(output, shape: b.shape)
    output = y
    var s = residualShape(input: x.shape, output: b.shape)
    ck_residual_relu_forward(&s, b.data, x.data, y.data)
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    guard let y = output else { preconditionFailure("ResidualBlock: backward before forward") }
    let gs = Tensor.reuse(gradSum, shape: y.shape)
    gradSum = gs
    var s = residualShape(input: inputShape, output: y.shape)
    // A body ending in a batch norm takes that batch norm's backward sums from each image of
    // the gradient at the sum as it is made (`ImageSumsTaking`); with them the batch norm
    // leaves its input gradient to the convolution before it, as a plane source.
    let norm = body.layers.last as? ImageSumsTaking
    let observer = norm?.imageSumsObserver()
    ck_residual_relu_backward(&s, y.data, dy.data, gs.data, observer)
    norm?.imageSumsTaken = observer != nil
    // With the identity shortcut the body's first convolution adds the shortcut's gradient
    // to its input gradient while each image of it is in cache.
    if inputShape == y.shape {
      let (gb, added) = body.backward(gs, addingToInputGradient: gs)
      if added { return gb }
      let dx = Tensor.reuse(gradInput, shape: inputShape)
      gradInput = dx
      ck_residual_input_gradient(&s, gb.data, gs.data, dx.data)
      return dx
    }
    let gb = body.backward(gs)
    let dx = Tensor.reuse(gradInput, shape: inputShape)
    gradInput = dx
    ck_residual_input_gradient(&s, gb.data, gs.data, dx.data)
    return dx
  }

  private func residualShape(input: [Int], output: [Int]) -> ck_residual_shape {
    precondition(
      input.count == 4 && output.count == 4 && input[0] == output[0] && output[1] >= input[1],
      "ResidualBlock: input \(input), body output \(output)")
    return ck_residual_shape(
      batch: Int32(input[0]), in_channels: Int32(input[1]), in_height: Int32(input[2]),
      in_width: Int32(input[3]), out_channels: Int32(output[1]), out_height: Int32(output[2]),
      out_width: Int32(output[3]))
  }
}
