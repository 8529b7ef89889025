import Foundation

/// Progress of a running epoch, reported after every batch.
public struct BatchProgress: Sendable {
  public let epoch: Int
  public let epochs: Int
  public let batch: Int
  public let batches: Int
  /// Mean training loss over the epoch so far.
  public let loss: Double
  public let imagesPerSecond: Double
  /// Estimated seconds left in the whole run.
  public let etaSeconds: Double
  public let learningRate: Float
}

/// What one epoch produced.
public struct EpochRecord: Codable, Sendable {
  public let epoch: Int
  public let loss: Double
  public let trainAccuracy: Double
  public let testAccuracy: Double
  public let testLoss: Double
  public let seconds: Double
  public let imagesPerSecond: Double
  public let learningRate: Float

  enum CodingKeys: String, CodingKey {
    case epoch, loss, seconds
    case trainAccuracy = "train_accuracy"
    case testAccuracy = "test_accuracy"
    case testLoss = "test_loss"
    case imagesPerSecond = "images_per_second"
    case learningRate = "learning_rate"
  }
}

/// Accuracy (percent) and mean loss of a model on a dataset.
public struct Evaluation: Sendable {
  public let accuracy: Double
  public let loss: Double
}

/// Trains an engine model on a dataset with a configured optimizer and schedule.
public final class Trainer {
  public let model: Model
  public let config: TrainingConfig
  public let optimizer: Optimizer
  public private(set) var history: [EpochRecord] = []
  public private(set) var stepsTaken = 0
  public private(set) var trainSeconds = 0.0
  public private(set) var imagesSeen = 0
  private let loss: CrossEntropyLoss
  private var shuffleRNG: SeededGenerator
  private var augmentRNG: SeededGenerator

  public init(model: Model, config: TrainingConfig) throws {
    try config.validate()
    self.model = model
    self.config = config
    self.optimizer = config.makeOptimizer(for: model.parameters)
    self.loss = CrossEntropyLoss(labelSmoothing: config.labelSmoothing)
    shuffleRNG = SeededGenerator(seed: config.seed, stream: "shuffle")
    augmentRNG = SeededGenerator(seed: config.seed, stream: "augment")
  }

  /// Runs all epochs, evaluating on `test` after each. `progress` is called after every batch,
  /// `epochEnd` after every epoch.
  @discardableResult
  public func fit(
    train: Dataset, test: Dataset,
    progress: ((BatchProgress) -> Void)? = nil,
    epochEnd: ((EpochRecord) -> Void)? = nil
  ) throws -> [EpochRecord] {
    guard train.sampleShape == model.inputShape, test.sampleShape == model.inputShape else {
      throw CoppiceError.invalidArgument(
        "data samples \(train.sampleShape) do not match model input \(model.inputShape)")
    }
    guard train.count > 0 else { throw CoppiceError.invalidArgument("training set is empty") }
    let batchesPerEpoch = (train.count + config.batchSize - 1) / config.batchSize
    let totalSteps = batchesPerEpoch * config.epochs
    let warmupSteps = batchesPerEpoch * config.warmupEpochs
    let runStart = Date()
    for epoch in history.count..<config.epochs {
      let epochStart = Date()
      var order = Array(0..<train.count)
      order.shuffle(using: &shuffleRNG)
      var lossSum = 0.0
      var correct = 0
      var seen = 0
      var lr = config.learningRate
      for b in 0..<batchesPerEpoch {
        let lo = b * config.batchSize
        let hi = min(train.count, lo + config.batchSize)
        lr = config.schedule.rate(
          base: config.learningRate, step: stepsTaken, totalSteps: totalSteps,
          warmupSteps: warmupSteps)
        optimizer.learningRate = lr
        let result = trainStep(train: train, indices: order[lo..<hi])
        lossSum += result.loss * Double(hi - lo)
        correct += result.correct
        seen += hi - lo
        if let progress {
          let elapsed = Date().timeIntervalSince(epochStart)
          let rate = Double(seen) / max(elapsed, 1e-9)
          let remainingImages =
            Double(train.count - seen) + Double(config.epochs - epoch - 1) * Double(train.count)
          progress(
            BatchProgress(
              epoch: epoch + 1, epochs: config.epochs, batch: b + 1, batches: batchesPerEpoch,
              loss: lossSum / Double(seen), imagesPerSecond: rate,
              etaSeconds: remainingImages / max(rate, 1e-9), learningRate: lr))
        }
      }
      let seconds = Date().timeIntervalSince(epochStart)
      trainSeconds += seconds
      imagesSeen += seen
      let evaluation = evaluate(on: test)
      let record = EpochRecord(
        epoch: epoch + 1, loss: lossSum / Double(max(seen, 1)),
        trainAccuracy: 100 * Double(correct) / Double(max(seen, 1)),
        testAccuracy: evaluation.accuracy, testLoss: evaluation.loss, seconds: seconds,
        imagesPerSecond: Double(seen) / max(seconds, 1e-9), learningRate: lr)
      history.append(record)
      epochEnd?(record)
    }
    _ = runStart
    return history
  }

  private var batchTensor: Tensor?

  /// One optimizer step on the samples at `indices`; returns the batch's loss and hits.
  public func trainStep(train: Dataset, indices: ArraySlice<Int>) -> (loss: Double, correct: Int) {
    let x = Tensor.reuse(batchTensor, shape: [indices.count] + train.sampleShape)
    batchTensor = x
    let labels = train.fill(
      x, indices: indices, augmentation: config.augmentation, rng: &augmentRNG)
    let logits = model.forward(x, training: true)
    let (value, correct, gradient) = loss(logits, labels: labels)
    model.backward(gradient)
    optimizer.step()
    stepsTaken += 1
    return (value, correct)
  }

  /// Test accuracy (percent) and mean loss, in evaluation mode.
  public func evaluate(on data: Dataset) -> Evaluation {
    Trainer.evaluate(model: model, on: data, batchSize: config.evalBatchSize)
  }

  public static func evaluate(model: Model, on data: Dataset, batchSize: Int = 1000) -> Evaluation {
    guard data.count > 0 else { return Evaluation(accuracy: 0, loss: 0) }
    let loss = CrossEntropyLoss()
    var rng = SeededGenerator(seed: 0)
    var correct = 0
    var lossSum = 0.0
    var start = 0
    while start < data.count {
      let end = min(data.count, start + batchSize)
      let x = Tensor(shape: [end - start] + data.sampleShape)
      let labels = data.fill(x, indices: Array(start..<end)[...], rng: &rng)
      let logits = model.forward(x, training: false)
      let r = loss(logits, labels: labels)
      correct += r.correct
      lossSum += r.loss * Double(end - start)
      start = end
    }
    return Evaluation(
      accuracy: 100 * Double(correct) / Double(data.count), loss: lossSum / Double(data.count))
  }
}
