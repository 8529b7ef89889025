import CCoppiceKernels

/// Adam with decoupled weight decay (Loshchilov & Hutter); decay skips biases and norms.
public final class AdamW: Optimizer {
  public var learningRate: Float
  public let beta1: Float
  public let beta2: Float
  public let eps: Float
  public let weightDecay: Float
  public var stepCount: Int64 = 0
  private let parameters: [Parameter]
  private let m: [Tensor]
  private let v: [Tensor]
  private var positions: [[Int32]?]

  public init(
    parameters: [Parameter], learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
    eps: Float = 1e-8, weightDecay: Float = 0.01
  ) {
    self.parameters = parameters
    self.learningRate = learningRate
    self.beta1 = beta1
    self.beta2 = beta2
    self.eps = eps
    self.weightDecay = weightDecay
    m = parameters.map { Tensor(shape: $0.shape) }
    v = parameters.map { Tensor(shape: $0.shape) }
    positions = parameters.map { _ in nil }
  }

  public func step() {
    stepCount += 1
    for (i, p) in parameters.enumerated() {
      let decay = p.decays ? weightDecay : 0
      if let at = positions[i] {
        ck_adamw_update_at(
          at.count, at, p.value.data, p.grad.data, m[i].data, v[i].data, learningRate, beta1,
          beta2, eps, decay, stepCount)
      } else {
        ck_adamw_update(
          p.count, p.value.data, p.grad.data, m[i].data, v[i].data, learningRate, beta1, beta2,
          eps, decay, stepCount)
      }
    }
  }

  public func updateOnly(_ parameter: Parameter, at positions: [Int32]?) {
    guard let i = parameters.firstIndex(where: { $0 === parameter }) else { return }
    self.positions[i] = positions
  }

  public func resetState(of parameter: Parameter, at indices: [Int]) {
    guard let i = parameters.firstIndex(where: { $0 === parameter }) else { return }
    for j in indices {
      m[i][j] = 0
      v[i][j] = 0
    }
  }

  public var state: [(name: String, tensor: Tensor)] {
    parameters.indices.flatMap { i in
      [("\(parameters[i].name).exp_avg", m[i]), ("\(parameters[i].name).exp_avg_sq", v[i])]
    }
  }
}
