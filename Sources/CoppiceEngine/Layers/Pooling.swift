import CCoppiceKernels

/// [N, C, H, W] after a k×k window with the given stride and padding.
func pooledShape(_ s: [Int], kernelSize k: Int, stride: Int, padding p: Int) -> [Int] {
  [s[0], s[1], (s[2] + 2 * p - k) / stride + 1, (s[3] + 2 * p - k) / stride + 1]
}

/// Max pooling over each channel plane of NCHW input.
public final class MaxPool2d: Layer {
  public let kernelSize: Int
  public let stride: Int
  public let padding: Int
  public var needsInputGradient = true
  private var inputShape: [Int] = []
  private var output: Tensor?
  private var gradInput: Tensor?
  private var argmax: [Int32] = []

  public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
    (self.kernelSize, self.stride, self.padding) = (kernelSize, stride ?? kernelSize, padding)
  }

  public var description: String { "MaxPool2d(\(kernelSize), stride \(stride))" }

  public func outputShape(for s: [Int]) -> [Int] {
    pooledShape(s, kernelSize: kernelSize, stride: stride, padding: padding)
  }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    let outShape = outputShape(for: x.shape)
    let y = Tensor.reuse(output, shape: outShape)
    output = y
    inputShape = x.shape
    if argmax.count != y.count { argmax = [Int32](repeating: 0, count: y.count) }
    argmax.withUnsafeMutableBufferPointer { arg in
      ck_maxpool_forward(
        Int32(x.shape[0] * x.shape[1]), Int32(x.shape[2]), Int32(x.shape[3]), Int32(kernelSize),
        Int32(stride), Int32(padding), Int32(outShape[2]), Int32(outShape[3]), x.data, y.data,
        arg.baseAddress)
    }
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    let dx = Tensor.reuse(gradInput, shape: inputShape)
    gradInput = dx
    argmax.withUnsafeBufferPointer { arg in
      ck_maxpool_backward(
        Int32(inputShape[0] * inputShape[1]), Int32(inputShape[2]), Int32(inputShape[3]),
        Int32(dy.shape[2]), Int32(dy.shape[3]), arg.baseAddress, dy.data, dx.data)
    }
    return dx
  }
}

/// Average pooling over each channel plane of NCHW input (padding counts as zeros).
public final class AvgPool2d: Layer {
  public let kernelSize: Int
  public let stride: Int
  public let padding: Int
  public var needsInputGradient = true
  private var inputShape: [Int] = []
  private var output: Tensor?
  private var gradInput: Tensor?

  public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
    (self.kernelSize, self.stride, self.padding) = (kernelSize, stride ?? kernelSize, padding)
  }

  public var description: String { "AvgPool2d(\(kernelSize), stride \(stride))" }

  public func outputShape(for s: [Int]) -> [Int] {
    pooledShape(s, kernelSize: kernelSize, stride: stride, padding: padding)
  }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    let outShape = outputShape(for: x.shape)
    let y = Tensor.reuse(output, shape: outShape)
    output = y
    inputShape = x.shape
    ck_avgpool_forward(
      Int32(x.shape[0] * x.shape[1]), Int32(x.shape[2]), Int32(x.shape[3]), Int32(kernelSize),
      Int32(stride), Int32(padding), Int32(outShape[2]), Int32(outShape[3]), x.data, y.data)
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    let dx = Tensor.reuse(gradInput, shape: inputShape)
    gradInput = dx
    ck_avgpool_backward(
      Int32(inputShape[0] * inputShape[1]), Int32(inputShape[2]), Int32(inputShape[3]),
      Int32(kernelSize), Int32(stride), Int32(padding), Int32(dy.shape[2]), Int32(dy.shape[3]),
      dy.data, dx.data)
    return dx
  }
}

/// Global average pooling: NCHW → [N, C].
public final class GlobalAvgPool: Layer {
  public var needsInputGradient = true
  private var inputShape: [Int] = []
  private var output: Tensor?
  private var gradInput: Tensor?

  public init() {}
  public var description: String { "GlobalAvgPool" }
  public func outputShape(for s: [Int]) -> [Int] { [s[0], s[1]] }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    inputShape = x.shape
    let planes = x.shape[0] * x.shape[1]
    let hw = x.shape[2] * x.shape[3]
    let y = Tensor.reuse(output, shape: [x.shape[0], x.shape[1]])
    output = y
    let inv = 1 / Float(hw)
    for p in 0..<planes {
      var sum: Float = 0
      let base = x.data + p * hw
      for i in 0..<hw { sum += base[i] }
      y[p] = sum * inv
    }
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    let dx = Tensor.reuse(gradInput, shape: inputShape)
    gradInput = dx
    let planes = inputShape[0] * inputShape[1]
    let hw = inputShape[2] * inputShape[3]
    let inv = 1 / Float(hw)
    for p in 0..<planes {
      let v = dy[p] * inv
      (dx.data + p * hw).update(repeating: v, count: hw)
    }
    return dx
  }
}
