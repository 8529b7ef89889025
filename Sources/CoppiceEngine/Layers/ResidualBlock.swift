import CCoppiceKernels

/// y = relu(body(x) + shortcut(x)). The shortcut is the identity, or — when the body changes
/// the shape — the parameter-free "option A" of He et al.: subsample by the stride and pad the
/// new channels with zeros (what CIFAR ResNet-20 uses).
public final class ResidualBlock: Layer {
  public let body: Sequential
  public var needsInputGradient = true
  private var inputShape: [Int] = []
  private var sum: Tensor?
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

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    inputShape = x.shape
    let b = body.forward(x, training: training)
    let s = Tensor.reuse(sum, shape: b.shape)
    sum = s
    s.copy(from: b)
    addShortcut(from: x, into: s)
    let y = Tensor.reuse(output, shape: b.shape)
    output = y
    ck_relu_forward(s.count, s.data, y.data)
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    guard let y = output else { preconditionFailure("ResidualBlock: backward before forward") }
    let gs = Tensor.reuse(gradSum, shape: y.shape)
    gradSum = gs
    ck_relu_backward(y.count, y.data, dy.data, gs.data)
    let gb = body.backward(gs)
    let dx = Tensor.reuse(gradInput, shape: inputShape)
    gradInput = dx
    dx.copy(from: gb)
    addShortcutGradient(from: gs, into: dx)
    return dx
  }

  /// out[n, c, y, x] += in[n, c, y·stride, x·stride] for c < C_in (identity when shapes agree).
  private func addShortcut(from x: Tensor, into out: Tensor) {
    if x.shape == out.shape {
      ck_add_inplace(x.count, x.data, out.data)
      return
    }
    mapShortcut(inShape: x.shape, outShape: out.shape) { inIndex, outIndex in
      out.data[outIndex] += x.data[inIndex]
    }
  }

  private func addShortcutGradient(from g: Tensor, into dx: Tensor) {
    if g.shape == dx.shape {
      ck_add_inplace(g.count, g.data, dx.data)
      return
    }
    mapShortcut(inShape: dx.shape, outShape: g.shape) { inIndex, outIndex in
      dx.data[inIndex] += g.data[outIndex]
    }
  }

  private func mapShortcut(inShape: [Int], outShape: [Int], _ body: (Int, Int) -> Void) {
    let (n, cin, h, w) = (inShape[0], inShape[1], inShape[2], inShape[3])
    let (cout, oh, ow) = (outShape[1], outShape[2], outShape[3])
    let stride = max(1, h / oh)
    let pad = (cout - cin) / 2
    for i in 0..<n {
      for c in 0..<cin {
        let inBase = (i * cin + c) * h * w
        let outBase = (i * cout + c + pad) * oh * ow
        for y in 0..<oh {
          for x in 0..<ow {
            body(inBase + y * stride * w + x * stride, outBase + y * ow + x)
          }
        }
      }
    }
  }
}
