import CCoppiceKernels

/// Stochastic gradient descent with momentum (dampening 0), optional Nesterov momentum and L2
/// weight decay (added to the gradient; not applied to biases and normalisation parameters).
public final class SGD: Optimizer {
  public var learningRate: Float
  public let momentum: Float
  public let weightDecay: Float
  public let nesterov: Bool
  public var stepCount: Int64 = 0
  private let parameters: [Parameter]
  private let velocity: [Tensor]
  private var positions: [[Int32]?]

  public init(
    parameters: [Parameter], learningRate: Float, momentum: Float = 0.9,
    weightDecay: Float = 0, nesterov: Bool = false
  ) {
    self.parameters = parameters
    self.learningRate = learningRate
    self.momentum = momentum
    self.weightDecay = weightDecay
    self.nesterov = nesterov
    velocity = parameters.map { Tensor(shape: $0.shape) }
    positions = parameters.map { _ in nil }
  }

  public func step() {
    stepCount += 1
    for (i, p) in parameters.enumerated() {
      let decay = p.decays ? weightDecay : 0
      if let at = positions[i] {
        ck_sgd_update_at(
          at.count, at, p.value.data, p.grad.data, velocity[i].data, learningRate, momentum,
          decay, nesterov ? 1 : 0)
      } else {
        ck_sgd_update(
          p.count, p.value.data, p.grad.data, velocity[i].data, learningRate, momentum, decay,
          nesterov ? 1 : 0)
      }
    }
  }

  public func updateOnly(_ parameter: Parameter, at positions: [Int32]?) {
    guard let i = parameters.firstIndex(where: { $0 === parameter }) else { return }
    self.positions[i] = positions
  }

  public func resetState(of parameter: Parameter, at indices: [Int]) {
    guard let i = parameters.firstIndex(where: { $0 === parameter }) else { return }
    for j in indices { velocity[i][j] = 0 }
  }

  public var state: [(name: String, tensor: Tensor)] {
    zip(parameters, velocity).map { ("\($0.name).momentum", $1) }
  }
}
