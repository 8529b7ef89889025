import CoppiceSparsity

/// The fixed reference models every comparison uses (see design.md), on 1×28×28 input.
public enum ReferenceModel: String, CaseIterable, Sendable {
  case mlp
  case cnn
  case resnet20

  public func build(seed: UInt64, classes: Int = 10) -> Model {
    var rng = SeededGenerator(seed: seed, stream: "init")
    switch self {
    case .mlp: return Self.mlp(classes: classes, rng: &rng)
    case .cnn: return Self.cnn(classes: classes, rng: &rng)
    case .resnet20: return Self.resnet20(classes: classes, rng: &rng)
    }
  }

  /// LeNet-300-100: 784→300→100→10 with ReLU.
  static func mlp(classes: Int, rng: inout SeededGenerator) -> Model {
    Model(
      name: "mlp", inputShape: [1, 28, 28],
      layers: [
        Flatten(),
        Linear(name: "fc1", inFeatures: 784, outFeatures: 300, rng: &rng), ReLU(),
        Linear(name: "fc2", inFeatures: 300, outFeatures: 100, rng: &rng), ReLU(),
        Linear(name: "fc3", inFeatures: 100, outFeatures: classes, rng: &rng),
      ])
  }

  /// conv(1→32)+BN+ReLU, conv(32→64)+BN+ReLU, pool, conv(64→128)+BN+ReLU, pool,
  /// linear(6272→256)+ReLU, linear(256→10). Each BN+ReLU followed by a pool runs as one fused
  /// layer (`BatchNormReLUMaxPool`); parameters and buffers keep their names.
  static func cnn(classes: Int, rng: inout SeededGenerator) -> Model {
    Model(
      name: "cnn", inputShape: [1, 28, 28],
      layers: [
        Conv2d(
          name: "conv1", inChannels: 1, outChannels: 32, kernelSize: 3, padding: 1, bias: false,
          rng: &rng),
        BatchNorm2d(name: "bn1", channels: 32, relu: true),
        Conv2d(
          name: "conv2", inChannels: 32, outChannels: 64, kernelSize: 3, padding: 1, bias: false,
          rng: &rng),
        BatchNormReLUMaxPool(
          norm: BatchNorm2d(name: "bn2", channels: 64, relu: true), pool: MaxPool2d(kernelSize: 2)),
        Conv2d(
          name: "conv3", inChannels: 64, outChannels: 128, kernelSize: 3, padding: 1, bias: false,
          rng: &rng),
        BatchNormReLUMaxPool(
          norm: BatchNorm2d(name: "bn3", channels: 128, relu: true), pool: MaxPool2d(kernelSize: 2)),
        Flatten(),
        Linear(name: "fc1", inFeatures: 6272, outFeatures: 256, rng: &rng), ReLU(),
        Linear(name: "fc2", inFeatures: 256, outFeatures: classes, rng: &rng),
      ])
  }

  /// CIFAR ResNet-20 (3 stages × 3 basic blocks, 16/32/64 channels, option-A shortcuts).
  static func resnet20(classes: Int, rng: inout SeededGenerator) -> Model {
    var layers: [Layer] = [
      Conv2d(
        name: "conv1", inChannels: 1, outChannels: 16, kernelSize: 3, padding: 1, bias: false,
        rng: &rng),
      BatchNorm2d(name: "bn1", channels: 16, relu: true),
    ]
    var channels = 16
    for (stage, width) in [16, 32, 64].enumerated() {
      for block in 0..<3 {
        let stride = (stage > 0 && block == 0) ? 2 : 1
        let prefix = "layer\(stage + 1).\(block)"
        let body = Sequential([
          Conv2d(
            name: "\(prefix).conv1", inChannels: channels, outChannels: width, kernelSize: 3,
            stride: stride, padding: 1, bias: false, rng: &rng),
          BatchNorm2d(name: "\(prefix).bn1", channels: width, relu: true),
          Conv2d(
            name: "\(prefix).conv2", inChannels: width, outChannels: width, kernelSize: 3,
            padding: 1, bias: false, rng: &rng),
          BatchNorm2d(name: "\(prefix).bn2", channels: width),
        ])
        layers.append(ResidualBlock(body: body))
        channels = width
      }
    }
    layers += [
      GlobalAvgPool(), Linear(name: "fc", inFeatures: 64, outFeatures: classes, rng: &rng),
    ]
    return Model(name: "resnet20", inputShape: [1, 28, 28], layers: layers)
  }
}
