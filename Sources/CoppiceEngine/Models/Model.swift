import CoppiceSparsity

/// A network: a sequence of layers with a fixed per-sample input shape, e.g. [1, 28, 28].
public final class Model {
  public let name: String
  public let inputShape: [Int]
  public let network: Sequential
  /// Masks attached by `load` for sparse inference (layers hold mask sources weakly).
  var loadedMasks: [SparseTarget] = []

  public init(name: String, inputShape: [Int], layers: [Layer]) {
    self.name = name
    self.inputShape = inputShape
    self.network = Sequential(layers)
    self.network.needsInputGradient = false  // no gradient needs to reach the data
  }

  public var parameters: [Parameter] { network.parameters }
  public var prunableParameters: [Parameter] { parameters.filter(\.prunable) }
  public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

  /// Running statistics of normalisation layers, by name.
  public var buffers: [(name: String, tensor: Tensor)] {
    network.allLayers.compactMap { $0 as? StatefulLayer }.flatMap(\.buffers)
  }

  public var numberOfClasses: Int { network.outputShape(for: [1] + inputShape).last ?? 0 }

  /// Dense forward FLOPs for one sample (2 per multiply-accumulate in conv and linear layers).
  public var forwardFLOPsPerSample: Double { network.forwardFLOPs(inputShape: inputShape) }

  /// Useful FLOPs of one training step per sample: forward, weight gradient and input gradient
  /// of every conv/linear layer (the first layer computes no input gradient).
  public var trainingFLOPsPerSample: Double {
    weightFLOPs.reduce(0) { $0 + $1.flops * ($1.inputGradient ? 3 : 2) }
  }

  /// Dense forward FLOPs per sample of every conv/linear layer, keyed by its weight's name,
  /// plus whether the layer computes an input gradient in training.
  public var weightFLOPs: [(name: String, flops: Double, inputGradient: Bool)] {
    var result: [(String, Double, Bool)] = []
    func walk(_ layers: [Layer], shape: [Int]) -> [Int] {
      var shape = shape
      for layer in layers {
        if let seq = layer as? Sequential {
          _ = walk(seq.layers, shape: shape)
        } else if let block = layer as? ResidualBlock {
          _ = walk(block.body.layers, shape: shape)
        } else if let conv = layer as? Conv2d {
          result.append(
            (
              conv.weight.name, conv.forwardFLOPs(inputShape: Array(shape.dropFirst())),
              conv.needsInputGradient
            ))
        } else if let fc = layer as? Linear {
          result.append(
            (
              fc.weight.name, fc.forwardFLOPs(inputShape: Array(shape.dropFirst())),
              fc.needsInputGradient
            ))
        }
        shape = layer.outputShape(for: shape)
      }
      return shape
    }
    _ = walk(network.layers, shape: [1] + inputShape)
    return result
  }

  /// The conv and linear layers, in model order (depth first).
  public var weightLayers: [Layer] {
    network.allLayers.filter { $0 is Conv2d || $0 is Linear }
  }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    network.forward(x, training: training)
  }

  public func backward(_ gradOutput: Tensor) { _ = network.backward(gradOutput) }

  public func zeroGradients() { for p in parameters { p.grad.zero() } }

  public var summary: String {
    var lines = ["\(name): \(parameterCount) parameters, input \(inputShape)"]
    var shape = [1] + inputShape
    for layer in network.layers {
      shape = layer.outputShape(for: shape)
      lines.append(
        "  \(layer.description) → \(shape.dropFirst().map(String.init).joined(separator: "×"))")
    }
    return lines.joined(separator: "\n")
  }
}
