import CoppiceEngine
import CoppiceSparsity

/// Which optimizer to train with.
public enum OptimizerKind: String, CaseIterable, Sendable, Codable {
  case sgd
  case adamw
}

/// Everything that decides a training run besides the model and the data.
public struct TrainingConfig: Sendable, Equatable, Codable {
  public var epochs = 10
  public var batchSize = 128
  public var learningRate: Float = 0.05
  public var optimizer: OptimizerKind = .sgd
  public var momentum: Float = 0.9
  public var nesterov = false
  /// L2 (SGD) or decoupled (AdamW) weight decay; never applied to biases or norms.
  public var weightDecay: Float = 5e-4
  public var schedule: LearningRateSchedule = .cosine(minimum: 0)
  public var warmupEpochs = 0
  public var labelSmoothing: Float = 0
  public var augmentation: Augmentation? = nil
  public var seed: UInt64 = 0
  public var evalBatchSize = 1000

  public init() {}

  /// Upper bounds that keep epoch and step arithmetic far from overflow (and absurd runs out):
  /// 100,000 epochs (as the C ABI's), batches of 2^20 samples, crop padding of 1024 pixels.
  public static let maxEpochs = 100_000
  public static let maxBatchSize = 1 << 20
  public static let maxCropPadding = 1024

  /// Checks every field, naming the first bad one.
  public func validate() throws {
    func bad(_ m: String) -> CoppiceError { .invalidArgument(m) }
    guard (1...Self.maxEpochs).contains(epochs) else {
      throw bad("epochs must be in 1...\(Self.maxEpochs) (got \(epochs))")
    }
    guard (1...Self.maxBatchSize).contains(batchSize) else {
      throw bad("batch size must be in 1...\(Self.maxBatchSize) (got \(batchSize))")
    }
    guard learningRate.isFinite, learningRate > 0 else {
      throw bad("learning rate must be a positive number (got \(learningRate))")
    }
    guard momentum.isFinite, momentum >= 0, momentum < 1 else {
      throw bad("momentum must be in [0, 1) (got \(momentum))")
    }
    guard weightDecay.isFinite, weightDecay >= 0 else {
      throw bad("weight decay must be >= 0 (got \(weightDecay))")
    }
    guard labelSmoothing >= 0, labelSmoothing < 1 else {
      throw bad("label smoothing must be in [0, 1) (got \(labelSmoothing))")
    }
    guard (0...Self.maxEpochs).contains(warmupEpochs) else {
      throw bad("warmup epochs must be in 0...\(Self.maxEpochs) (got \(warmupEpochs))")
    }
    guard (1...Self.maxBatchSize).contains(evalBatchSize) else {
      throw bad("evaluation batch size must be in 1...\(Self.maxBatchSize)")
    }
    if let a = augmentation, !(0...Self.maxCropPadding).contains(a.cropPadding) {
      throw bad("crop padding must be in 0...\(Self.maxCropPadding) (got \(a.cropPadding))")
    }
    if case .step(let stepSize, let gamma) = schedule {
      guard (1...Sparsifier.maxSteps).contains(stepSize), gamma.isFinite, gamma > 0 else {
        throw bad(
          "step schedule needs 1...2^40 steps between decays (got \(stepSize)) and a finite "
            + "decay factor > 0 (got \(gamma))")
      }
    }
  }

  func makeOptimizer(for parameters: [Parameter]) -> Optimizer {
    switch optimizer {
    case .sgd:
      return SGD(
        parameters: parameters, learningRate: learningRate, momentum: momentum,
        weightDecay: weightDecay, nesterov: nesterov)
    case .adamw:
      return AdamW(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay)
    }
  }
}
