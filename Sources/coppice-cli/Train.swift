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
  @Option(help: "Method: dense, static, oneshot, gmp, set, rigl, cgap, pgap.")
  var method: SparsityMethod = .dense
  @Option(help: "Training epochs (for GaP: rounds, fine-tune and all).") var epochs =
    TrainingConfig().epochs
  @Option(help: "Write a JSON summary to this file.") var json: String?
  @Option(help: "After training, write the model for inference (sparse weights as CSR) here.")
  var export: String?
  @Flag(help: "Print the model's layers before training.") var summary = false
  @OptionGroup(title: "Training") var training: TrainingOptions
  @OptionGroup(title: "Sparse training") var sparse: SparsityOptions
  @OptionGroup(title: "Checkpoints") var checkpoints: CheckpointOptions
  @Flag(
    help:
      "Join an MPI job (automatic under mpirun with several processes): data-parallel training, or for pgap one worker per rank."
  )
  var distributed = false

  func validate() throws {
    try requireRange(epochs, 1...TrainingConfig.maxEpochs, "--epochs")
  }

  func run() throws {
    let world = try DistributedRun.start(requested: distributed)
    defer { world?.finalize() }
    Threads.set(training.threads ?? DistributedRun.defaultThreads(ranks: world))
    SparseDispatch.mode = sparse.dispatch
    let data = try loadData(
      dataDir: training.dataDir, limitTrain: training.limitTrain, limitTest: training.limitTest)
    var run = CommandLineRun(
      model: model, method: method, config: training.makeConfig(epochs: epochs), sparse: sparse,
      epochs: epochs, printSummary: summary, checkpoints: checkpoints)
    run.world = world
    let result: TrainSummary
    do {
      result = try run.run(train: data.train, test: data.test, export: export)
    } catch let error where (world?.rank ?? 0) != 0 && !(error is ExitCode) {
      // One line in one write, so that the ranks' messages do not interleave.
      FileHandle.standardError.write(Data("coppice rank \(world!.rank): error: \(error)\n".utf8))
      throw ExitCode.failure
    }
    if let json, (world?.rank ?? 0) == 0 {
      try result.write(to: json)
      print("wrote \(json)")
    }
  }
}

/// Options of the training loop shared by `train` and `compare`.
struct TrainingOptions: ParsableArguments {
  @Option(name: .long, help: "Mini-batch size.") var batchSize = TrainingConfig().batchSize
  @Option(help: "Base learning rate.") var lr = TrainingConfig().learningRate
  @Option(help: "Optimizer: sgd or adamw.") var optimizer = TrainingConfig().optimizer
  @Option(help: "SGD momentum.") var momentum = TrainingConfig().momentum
  @Flag(help: "Use Nesterov momentum.") var nesterov = false
  @Option(help: "Weight decay (not applied to biases or norms).") var weightDecay = TrainingConfig()
    .weightDecay
  @Option(help: "Learning-rate schedule: constant, step or cosine.") var schedule: ScheduleName =
    .cosine
  @Option(help: "Step LR schedule: epochs between decays.") var lrStepEpochs = 3
  @Option(help: "Step schedule: decay factor.") var gamma: Float = 0.1
  @Option(help: "Epochs of linear learning-rate warm-up.") var warmupEpochs = TrainingConfig()
    .warmupEpochs
  @Option(help: "Label smoothing in [0, 1).") var labelSmoothing = TrainingConfig().labelSmoothing
  @Option(help: "Random-crop padding in pixels (0 = no crop augmentation).") var cropPadding = 0
  @Flag(help: "Random horizontal flips.") var flip = false
  @Option(help: "Random seed (initialisation, shuffling, augmentation).") var seed =
    TrainingConfig().seed
  @Option(help: "Kernel threads (default: all cores).") var threads: Int?
  @Option(help: "Directory with the IDX files.") var dataDir = FashionMNIST.defaultDirectory
  @Option(help: "Use only the first N training images.") var limitTrain: Int?
  @Option(help: "Use only the first N test images.") var limitTest: Int?

  func validate() throws {
    if let t = threads, t < 1 || t > Threads.maximum {
      throw ValidationError("--threads must be in 1...\(Threads.maximum)")
    }
    if let n = limitTrain, n < 1 { throw ValidationError("--limit-train must be >= 1") }
    if let n = limitTest, n < 1 { throw ValidationError("--limit-test must be >= 1") }
    try requireRange(batchSize, 1...TrainingConfig.maxBatchSize, "--batch-size")
    try requireRange(warmupEpochs, 0...TrainingConfig.maxEpochs, "--warmup-epochs")
    try requireRange(lrStepEpochs, 1...TrainingConfig.maxEpochs, "--lr-step-epochs")
    try requireRange(cropPadding, 0...TrainingConfig.maxCropPadding, "--crop-padding")
    guard gamma.isFinite, gamma > 0 else {
      throw ValidationError("--gamma must be a finite number > 0, got \(gamma)")
    }
  }

  func makeConfig(epochs: Int) -> TrainingConfig {
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
      c.schedule = .step(stepSize: lrStepEpochs * batches, gamma: gamma)
    }
    if cropPadding > 0 || flip {
      c.augmentation = Augmentation(
        cropPadding: cropPadding, horizontalFlip: flip,
        padValue: -FashionMNIST.mean / FashionMNIST.std)
    }
    return c
  }

}

/// Loads Fashion-MNIST with a CLI-friendly error.
func loadData(dataDir: String, limitTrain: Int?, limitTest: Int?) throws -> (
  train: Dataset, test: Dataset
) {
  do {
    return (
      try FashionMNIST.load(directory: dataDir, split: "train", limit: limitTrain),
      try FashionMNIST.load(directory: dataDir, split: "t10k", limit: limitTest)
    )
  } catch let error as CoppiceError {
    throw ValidationError("cannot load data: \(error)")
  }
}

/// The `--json` summary. Fields are only ever added, never renamed (`schedule` keeps the old
/// Swift description of the learning-rate schedule; `training.lr_schedule` is the same as
/// plain values, and `schedule_events` are `events` in structured form).
struct TrainSummary: Encodable {
  let coppiceVersion = Version.string
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
  /// Global sparsity of the prunable weights at the end (0 for dense).
  let sparsity: Double
  let targetSparsity: Double
  /// Per prunable layer at the end of training.
  let layers: [SparsityReport.Layer]
  /// Seconds a dense training epoch of the same model takes, measured in the same run.
  let denseEpochSeconds: Double?
  let trainFlops: Double
  let trainFlopsDense: Double
  let inferenceFlops: Double
  let inferenceFlopsDense: Double
  let events: [String]
  /// Every setting of the run as plain values (`sparseTraining` nil for dense runs).
  let training: TrainingSettings
  let sparseTraining: SparsitySettings?
  let scheduleEvents: [ScheduleEventRecord]

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
    case sparsity, layers, events
    case targetSparsity = "target_sparsity"
    case denseEpochSeconds = "dense_epoch_seconds"
    case trainFlops = "train_flops"
    case trainFlopsDense = "train_flops_dense"
    case inferenceFlops = "inference_flops"
    case inferenceFlopsDense = "inference_flops_dense"
    case coppiceVersion = "coppice_version"
    case training
    case sparseTraining = "sparse_training"
    case scheduleEvents = "schedule_events"
  }

  func write(to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(self)
    try AtomicFile.write(data, to: path)
  }
}

/// Throws a usage error naming `option` unless `value` is in `range` (checked before any
/// arithmetic, so absurd numbers are errors, not overflow traps).
func requireRange(_ value: Int, _ range: ClosedRange<Int>, _ option: String) throws {
  guard range.contains(value) else {
    throw ValidationError(
      "\(option) must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
  }
}
