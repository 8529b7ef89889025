import CCoppiceKernels

/// A batch norm with ReLU followed by a 2×2, stride-2 max pooling, run as one layer: in
/// training the fused kernels never store the full-size normalised output nor its gradient
/// (`ck_batchnorm_relu_maxpool2_*`), so the pair reads and writes far less memory. The two
/// layers keep their own parameters, buffers and names; evaluation runs them one after the
/// other.
public final class BatchNormReLUMaxPool: StatefulLayer {
  public let norm: BatchNorm2d
  public let pool: MaxPool2d
  public var needsInputGradient: Bool {
    get { norm.needsInputGradient }
    set { norm.needsInputGradient = newValue }
  }
  private var input: Tensor?
  private var output: Tensor?
  private var gradInput: Tensor?
  private(set) var winners: [UInt8] = []
  /// Whether the last forward ran fused (training) or as the two layers (evaluation).
  private var ranFused = false

  /// `norm` must have its ReLU fused and `pool` be a 2×2 window with stride 2 and no padding.
  public init(norm: BatchNorm2d, pool: MaxPool2d) {
    precondition(norm.relu, "BatchNormReLUMaxPool: the batch norm must have relu: true")
    precondition(
      pool.kernelSize == 2 && pool.stride == 2 && pool.padding == 0,
      "BatchNormReLUMaxPool: the pooling must be 2×2 with stride 2 and no padding")
    self.norm = norm
    self.pool = pool
  }

  public var description: String { "\(norm.description)+\(pool.description)" }
  public var parameters: [Parameter] { norm.parameters }
  public var buffers: [(name: String, tensor: Tensor)] { norm.buffers }

  public func outputShape(for inputShape: [Int]) -> [Int] { pool.outputShape(for: inputShape) }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    ranFused = training
    guard training else { return pool.forward(norm.forward(x, training: false), training: false) }
    precondition(
      x.shape.count == 4 && x.shape[1] == norm.channels, "\(norm.name): input \(x.shape)")
    let y = Tensor.reuse(output, shape: outputShape(for: x.shape))
    output = y
    input = x
    if winners.count != y.count { winners = [UInt8](repeating: 0, count: y.count) }
    winners.withUnsafeMutableBufferPointer { w in
      ck_batchnorm_relu_maxpool2_forward_train(
        Int32(x.shape[0]), Int32(x.shape[1]), Int32(x.shape[2]), Int32(x.shape[3]), x.data,
        norm.gamma.value.data, norm.beta.value.data, norm.eps, norm.momentum,
        norm.runningMean.data, norm.runningVar.data, norm.saveMean.data, norm.saveInvStd.data,
        y.data, w.baseAddress)
    }
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    guard ranFused else { return norm.backward(pool.backward(dy)) }
    guard let x = input, let y = output else {
      preconditionFailure("\(norm.name): backward before forward")
    }
    let dx = Tensor.reuse(gradInput, shape: x.shape)
    gradInput = dx
    winners.withUnsafeBufferPointer { w in
      ck_batchnorm_relu_maxpool2_backward(
        Int32(x.shape[0]), Int32(x.shape[1]), Int32(x.shape[2]), Int32(x.shape[3]), x.data,
        norm.gamma.value.data, norm.beta.value.data, norm.saveMean.data, norm.saveInvStd.data,
        y.data, w.baseAddress, dy.data, needsInputGradient ? dx.data : nil, norm.gamma.grad.data,
        norm.beta.grad.data)
    }
    return dx
  }
}
