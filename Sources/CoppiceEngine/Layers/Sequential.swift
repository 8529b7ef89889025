/// Layers applied in order.
public final class Sequential: Layer {
  public private(set) var layers: [Layer]
  /// When set, every forward and backward adds each layer's wall time to it (profiling).
  public var times: LayerTimes?
  public var needsInputGradient: Bool {
    get { layers.first?.needsInputGradient ?? true }
    // The first layer with weights and the parameter-free layers before it (e.g. Flatten).
    set {
      for layer in layers {
        layer.needsInputGradient = newValue
        if !layer.parameters.isEmpty { break }
      }
    }
  }

  public init(_ layers: [Layer]) { self.layers = layers }

  /// The wall clock when profiling (`times` set), else 0: unprofiled steps read no clock.
  private func clock() -> Double { times == nil ? 0 : monotonicSeconds() }

  public var description: String {
    "Sequential(" + layers.map(\.description).joined(separator: ", ") + ")"
  }
  public var parameters: [Parameter] { layers.flatMap(\.parameters) }

  public func outputShape(for inputShape: [Int]) -> [Int] {
    layers.reduce(inputShape) { $1.outputShape(for: $0) }
  }

  public func forwardFLOPs(inputShape: [Int]) -> Double {
    var shape = [1] + inputShape
    var total = 0.0
    for layer in layers {
      total += layer.forwardFLOPs(inputShape: Array(shape.dropFirst()))
      shape = layer.outputShape(for: shape)
    }
    return total
  }

  /// Layers in order; in training, where an `OutputDeferring` layer precedes a
  /// `DeferredActivationConsumer` (a batch norm before a convolution), the convolution applies
  /// the batch norm's map as it reads the batch norm's input, which is never normalised in
  /// full.
  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    var seconds = [Double](repeating: 0, count: layers.count)
    let y = forward(x, training: training, layers: layers.count, seconds: &seconds)
    times?.addForward(seconds)
    return y
  }

  /// Whether `forwardDeferringLastOutput` may be called.
  var defersLastOutput: Bool { layers.last is OutputDeferring }

  /// The training forward with the last layer's output left to the caller as a
  /// `DeferredActivation` (the last layer must be `OutputDeferring`): a residual block adds
  /// its body's last batch norm output without it being stored.
  func forwardDeferringLastOutput(_ x: Tensor) -> DeferredActivation {
    guard let last = layers.last as? OutputDeferring else {
      preconditionFailure("Sequential: the last layer does not defer its output")
    }
    var seconds = [Double](repeating: 0, count: layers.count)
    let h = forward(x, training: true, layers: layers.count - 1, seconds: &seconds)
    let start = clock()
    let deferred = last.forwardDeferringOutput(h)
    seconds[layers.count - 1] = clock() - start
    times?.addForward(seconds)
    return deferred
  }

  /// The first `count` layers, each one's wall time in `seconds`.
  private func forward(_ x: Tensor, training: Bool, layers count: Int, seconds: inout [Double])
    -> Tensor
  {
    var h = x
    var i = 0
    while i < count {
      var start = clock()
      if training, i + 1 < count, let deferring = layers[i] as? OutputDeferring,
        let consumer = layers[i + 1] as? DeferredActivationConsumer
      {
        let deferred = deferring.forwardDeferringOutput(h)
        seconds[i] = clock() - start
        start = clock()
        let observed = observeOutput(ofLayer: i + 1, input: h.shape)
        h = consumer.forward(deferred)
        observed()
        i += 1
      } else {
        let observed = training ? observeOutput(ofLayer: i, input: h.shape) : {}
        h = layers[i].forward(h, training: training)
        observed()
      }
      seconds[i] = clock() - start
      i += 1
    }
    return h
  }

  /// Layers in reverse order; where an `InputGradientDeferring` layer follows a
  /// `DeferredGradientConsumer` (a batch norm + ReLU + pool after a convolution), the
  /// convolution produces the batch norm's input gradient plane by plane as it reads it; where
  /// a convolution follows a batch norm, the convolution hands each finished image of its input
  /// gradient to the batch norm, which takes its sums there (`observeInputGradient`).
  public func backward(_ dy: Tensor) -> Tensor {
    backward(dy, addingToInputGradient: nil).gradient
  }

  /// The backward with `addend` (the input's shape) added to the input gradient by the first
  /// layer as it writes it, when that layer is `InputGradientAccumulating` and computes one
  /// (`added`); otherwise the caller adds it.
  func backward(_ dy: Tensor, addingToInputGradient addend: Tensor?) -> (
    gradient: Tensor, added: Bool
  ) {
    var g = dy
    var added = false
    var seconds = [Double](repeating: 0, count: layers.count)
    // The addend for layer j: only the first layer takes it, and only when it computes dx.
    func addendFor(_ j: Int) -> Tensor? {
      j == 0 && layers[0].needsInputGradient ? addend : nil
    }
    var i = layers.count - 1
    while i >= 0 {
      var start = clock()
      if i > 0, let consumer = layers[i - 1] as? DeferredGradientConsumer,
        let deferring = layers[i] as? InputGradientDeferring,
        let deferred = deferring.backwardDeferringInputGradient(g, to: consumer)
      {
        seconds[i] = clock() - start
        start = clock()
        let observed = observeInputGradient(ofLayer: i - 1)
        g = consumer.backward(deferred, addingToInputGradient: addendFor(i - 1))
        observed()
        added = added || addendFor(i - 1) != nil
        i -= 1
      } else if let addend = addendFor(i),
        let accumulating = layers[i] as? InputGradientAccumulating
      {
        let observed = observeInputGradient(ofLayer: i)
        g = accumulating.backward(g, addingToInputGradient: addend)
        observed()
        added = true
      } else {
        let observed = observeInputGradient(ofLayer: i)
        g = layers[i].backward(g)
        observed()
      }
      seconds[i] = clock() - start
      i -= 1
    }
    times?.addBackward(seconds)
    return (g, added)
  }

  /// When layer j is a convolution and layer j + 1 takes statistics over its input (a batch
  /// norm), lets the convolution's next (training) forward hand each finished image of its
  /// output to that layer, which takes its statistics' sums there instead of in a pass of its
  /// own. Returns what to call after that forward.
  private func observeOutput(ofLayer j: Int, input shape: [Int]) -> () -> Void {
    guard j + 1 < layers.count, shape.count == 4, let conv = layers[j] as? Conv2d,
      let norm = layers[j + 1] as? StatisticsTaking,
      let observer = norm.statisticsObserver(inputShape: conv.outputShape(for: shape))
    else { return {} }
    conv.outputObserver = observer
    return {
      norm.statisticsTaken = conv.observedOutput
      conv.outputObserver = nil
    }
  }

  /// When layer j (a convolution, or a linear layer) computes its input gradient and layer
  /// j − 1 is a batch norm (or layer j − 2, with a `Flatten` between), lets layer j's next
  /// backward hand each finished image of that gradient (the batch norm's output gradient) to
  /// the batch norm, which takes its backward's sums there instead of in a pass of its own over
  /// its output or input and that gradient. Returns what to call after that backward (it tells
  /// the batch norm whether every image was given).
  private func observeInputGradient(ofLayer j: Int) -> () -> Void {
    guard j >= 1, let producer = layers[j] as? InputGradientObservable,
      producer.needsInputGradient
    else { return {} }
    let before = layers[j - 1] is Flatten && j >= 2 ? j - 2 : j - 1
    guard let norm = layers[before] as? ImageSumsTaking, let observer = norm.imageSumsObserver()
    else { return {} }
    producer.inputGradientObserver = observer
    return {
      norm.imageSumsTaken = producer.observedInputGradient
      producer.inputGradientObserver = nil
    }
  }

  /// Every layer, depth first (for collecting running buffers and descriptions).
  public var allLayers: [Layer] {
    layers.flatMap { layer -> [Layer] in
      if let s = layer as? Sequential { return s.allLayers }
      if let r = layer as? ResidualBlock { return [r] + r.body.allLayers }
      return [layer]
    }
  }
}
