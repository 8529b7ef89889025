import ArgumentParser
import Coppice
import Foundation

extension ReferenceModel: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}

enum ScheduleName: String, ExpressibleByArgument, CaseIterable {
  case constant, step, cosine
}

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train a reference model on Fashion-MNIST and report accuracy and speed.")

  @Option(help: "Model: mlp, cnn or resnet20.") var model: ReferenceModel = .cnn
  @Option(help: "Training epochs.") var epochs = 10
  @Option(name: .long, help: "Mini-batch size.") var batchSize = 128
  @Option(help: "Base learning rate.") var lr: Float = 0.05
  @Option(help: "Optimizer: sgd or adamw.") var optimizer: OptimizerKind = .sgd
  @Option(help: "SGD momentum.") var momentum: Float = 0.9
  @Flag(help: "Use Nesterov momentum.") var nesterov = false
  @Option(help: "Weight decay (not applied to biases or norms).") var weightDecay: Float = 5e-4
  @Option(help: "Learning-rate schedule: constant, step or cosine.") var schedule: ScheduleName =
    .cosine
  @Option(help: "Step schedule: epochs between decays.") var stepEpochs = 3
  @Option(help: "Step schedule: decay factor.") var gamma: Float = 0.1
  @Option(help: "Epochs of linear learning-rate warm-up.") var warmupEpochs = 0
  @Option(help: "Label smoothing in [0, 1).") var labelSmoothing: Float = 0
  @Option(help: "Random-crop padding in pixels (0 = no crop augmentation).") var cropPadding = 0
  @Flag(help: "Random horizontal flips.") var flip = false
  @Option(help: "Random seed (initialisation, shuffling, augmentation).") var seed: UInt64 = 0
  @Option(help: "Kernel threads (default: all cores).") var threads: Int?
  @Option(help: "Directory with the IDX files.") var dataDir = FashionMNIST.defaultDirectory
  @Option(help: "Use only the first N training images.") var limitTrain: Int?
  @Option(help: "Use only the first N test images.") var limitTest: Int?
  @Option(help: "Write a JSON summary to this file.") var json: String?
  @Flag(help: "Print the model's layers before training.") var summary = false

  func validate() throws {
    if epochs < 0 { throw ValidationError("--epochs must be >= 0") }
    if batchSize < 1 { throw ValidationError("--batch-size must be >= 1") }
    if !(lr > 0) { throw ValidationError("--lr must be positive") }
    if let t = threads, t < 1 { throw ValidationError("--threads must be >= 1") }
    if let n = limitTrain, n < 1 { throw ValidationError("--limit-train must be >= 1") }
    if let n = limitTest, n < 1 { throw ValidationError("--limit-test must be >= 1") }
  }

  func makeConfig() -> TrainingConfig {
    var c = TrainingConfig()
    c.epochs = epochs
    c.batchSize = batchSize
    c.learningRate = lr
    c.optimizer = optimizer
    c.momentum = momentum
    c.nesterov = nesterov
    c.weightDecay = weightDecay
    c.warmupEpochs = warmupEpochs
    c.labelSmoothing = labelSmoothing
    c.seed = seed
    switch schedule {
    case .constant: c.schedule = .constant
    case .cosine: c.schedule = .cosine(minimum: 0)
    case .step:
      let batches = ((limitTrain ?? 60000) + batchSize - 1) / batchSize
      c.schedule = .step(stepSize: stepEpochs * batches, gamma: gamma)
    }
    if cropPadding > 0 || flip {
      c.augmentation = Augmentation(
        cropPadding: cropPadding, horizontalFlip: flip,
        padValue: -FashionMNIST.mean / FashionMNIST.std)
    }
    return c
  }

  func run() throws {
    Threads.set(threads ?? Threads.availableCores)
    let train: Dataset
    let test: Dataset
    do {
      train = try FashionMNIST.load(directory: dataDir, split: "train", limit: limitTrain)
      test = try FashionMNIST.load(directory: dataDir, split: "t10k", limit: limitTest)
    } catch let error as CoppiceError {
      throw ValidationError("cannot load data: \(error)")
    }
    let net = model.build(seed: seed)
    if summary { print(net.summary) }
    let config = makeConfig()
    let trainer = try Trainer(model: net, config: config)
    print(
      "coppice \(Version.string): training \(model.rawValue) (\(net.parameterCount) parameters) "
        + "on \(train.count) images, testing on \(test.count); \(epochs) epochs, batch \(batchSize), "
        + "\(optimizer.rawValue) lr \(lr) \(schedule.rawValue), \(Threads.count) threads")
    let printer = ProgressPrinter()
    let table = TextTable(columns: [
      ("epoch", 5), ("train loss", 10), ("train acc", 9), ("test acc", 8), ("test loss", 9),
      ("seconds", 8), ("img/s", 7),
    ])
    var printedHeader = false
    try trainer.fit(
      train: train, test: test, progress: printer.batch,
      epochEnd: { r in
        printer.endEpoch()
        if !printedHeader {
          print(table.header())
          printedHeader = true
        }
        print(
          table.row([
            "\(r.epoch)", String(format: "%.4f", r.loss), String(format: "%.2f%%", r.trainAccuracy),
            String(format: "%.2f%%", r.testAccuracy), String(format: "%.4f", r.testLoss),
            String(format: "%.1f", r.seconds), String(format: "%.0f", r.imagesPerSecond),
          ]))
        fflush(nil)
      })
    let final = trainer.history.last?.testAccuracy ?? trainer.evaluate(on: test).accuracy
    let throughput = Double(trainer.imagesSeen) / max(trainer.trainSeconds, 1e-9)
    print(
      String(
        format: "result: %@ test accuracy %.2f%% after %d epochs, %.1f s training, %.0f images/s",
        model.rawValue, final, epochs, trainer.trainSeconds, throughput))
    if let json {
      let summary = TrainSummary(
        model: model.rawValue, method: "dense", epochs: epochs, testAccuracy: final,
        trainSeconds: trainer.trainSeconds, imagesPerSecond: throughput,
        parameters: net.parameterCount, batchSize: batchSize, learningRate: lr,
        optimizer: optimizer.rawValue, schedule: schedule.rawValue, seed: seed,
        threads: Threads.count, trainImages: train.count, testImages: test.count,
        forwardFlopsPerImage: net.forwardFLOPsPerSample, history: trainer.history)
      try summary.write(to: json)
      print("wrote \(json)")
    }
  }
}

/// The `--json` summary. Fields are only ever added, never renamed.
struct TrainSummary: Encodable {
  let model: String
  let method: String
  let epochs: Int
  let testAccuracy: Double
  let trainSeconds: Double
  let imagesPerSecond: Double
  let parameters: Int
  let batchSize: Int
  let learningRate: Float
  let optimizer: String
  let schedule: String
  let seed: UInt64
  let threads: Int
  let trainImages: Int
  let testImages: Int
  let forwardFlopsPerImage: Double
  let history: [EpochRecord]

  enum CodingKeys: String, CodingKey {
    case model, method, epochs, parameters, optimizer, schedule, seed, threads, history
    case testAccuracy = "test_accuracy"
    case trainSeconds = "train_seconds"
    case imagesPerSecond = "images_per_second"
    case batchSize = "batch_size"
    case learningRate = "learning_rate"
    case trainImages = "train_images"
    case testImages = "test_images"
    case forwardFlopsPerImage = "forward_flops_per_image"
  }

  func write(to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(self)
    try AtomicFile.write(data, to: path)
  }
}
