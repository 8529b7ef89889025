import ArgumentParser
import Coppice
import Foundation

/// One training run as the CLI shows it: progress, a per-epoch table, sparse-training events,
/// a final per-layer report and a summary for `--json` (shared by `train` and `compare`). The
/// run itself (resume, checkpoint cadence, events) is the library's `TrainingRun`.
struct CommandLineRun {
  let model: ReferenceModel
  let method: SparsityMethod
  var config: TrainingConfig
  let sparse: SparsityOptions
  let epochs: Int
  var printSummary = false
  var checkpoints: CheckpointOptions?
  /// The ranks of a distributed run (nil: one process).
  var world: Collective?

  init(
    model: ReferenceModel, method: SparsityMethod, config: TrainingConfig,
    sparse: SparsityOptions, epochs: Int, printSummary: Bool = false,
    checkpoints: CheckpointOptions? = nil
  ) {
    self.checkpoints = checkpoints
    self.model = model
    self.method = method
    self.config = config
    self.sparse = sparse
    self.epochs = epochs
    self.printSummary = printSummary
  }

  func run(train: Dataset, test: Dataset, export: String? = nil) throws -> TrainSummary {
    var config = self.config
    let stepsPerEpoch = TrainingRun.stepsPerEpoch(
      trainCount: train.count, batchSize: config.batchSize)
    config.epochs = try sparse.totalEpochs(
      method: method, epochs: epochs, stepsPerEpoch: stepsPerEpoch, model: model)
    let sparsityConfig =
      method == .dense
      ? nil
      : try sparse.config(
        method: method, stepsPerEpoch: stepsPerEpoch, totalEpochs: config.epochs)
    let net = model.build(seed: config.seed)
    if printSummary { print(net.summary) }
    let store = try checkpoints?.checkpointDir.map {
      try CheckpointDirectory(
        path: $0, keep: checkpoints!.keepCheckpoints, every: checkpoints!.checkpointEvery)
    }
    let run = try TrainingRun(
      model: net, config: config, sparsity: sparsityConfig, trainCount: train.count,
      checkpoints: store.map {
        .init(directory: $0, resume: checkpoints?.resume == true, stopOnSaveFailure: false)
      }, collective: world)
    let trainer = run.trainer
    let denseEpoch = try measureDenseEpochSeconds(config: config, train: train)
    let what =
      sparsityConfig.map { c in
        "\(method.rawValue) at \(Int((c.sparsity * 100).rounded()))% sparsity "
          + "(\(c.resolvedDistribution.name))"
      } ?? "dense"
    print(
      "coppice \(Version.string): \(model.rawValue) (\(net.parameterCount) parameters), \(what); "
        + "\(train.count) train / \(test.count) test images; \(config.epochs) epochs, batch "
        + "\(config.batchSize), \(config.optimizer.rawValue) lr \(config.learningRate), "
        + "\(Threads.count) threads"
        + (Threads.hasOpenMP ? "" : " (built without OpenMP: see Package.swift)")
        + (world.map { " per rank, \($0.size) MPI ranks" + Self.distributedNote(method) } ?? ""))
    if let d = denseEpoch {
      print(String(format: "dense reference: %.1f s per epoch (measured on this model)", d))
    }
    if let world, world.size > 1 {
      let floats = trainer.gradientExchange
      print(
        String(
          format:
            "data parallel: each step sums %.2f MB of gradients over the ranks at the start (%.2f MB dense), "
            + "%d samples per rank", Double(floats.sparse) * 4e-6, Double(floats.dense) * 4e-6,
          config.batchSize / world.size))
    }
    let printer = ProgressPrinter()
    let table = TextTable(columns: [
      ("epoch", 5), ("train loss", 10), ("test acc", 8), ("sparsity", 8), ("seconds", 7),
      ("vs dense", 8), ("img/s", 6), ("phase", 0),
    ])
    var printedHeader = false
    func warn(_ message: String) {
      FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
    }
    if store != nil { Interrupt.install() }
    let outcome = try run.run(
      train: train, test: test,
      onEvent: { event in
        switch event {
        case .sparsity(let line): print("  · \(line)")
        case .resumed(let file):
          print(
            "resumed from \(file): step \(trainer.stepsTaken), \(trainer.epochsDone) of "
              + "\(config.epochs) epochs done"
              + (trainer.sparsifier.map { "; \($0.phase)" } ?? ""))
        case .nothingToResume(let directory):
          print("no checkpoint in \(directory) yet: starting from the beginning")
        case .warning(let message): warn(message)
        case .batch(let progress): printer.batch(progress)
        case .epoch(let r):
          printer.endEpoch()
          if !printedHeader {
            print(table.header())
            printedHeader = true
          }
          let ratio = denseEpoch.map { String(format: "%.2f×", r.seconds / $0) } ?? "-"
          print(
            table.row([
              "\(r.epoch)", String(format: "%.4f", r.loss),
              String(format: "%.2f%%", r.testAccuracy),
              String(format: "%.1f%%", 100 * r.sparsity), String(format: "%.1f", r.seconds), ratio,
              String(format: "%.0f", r.imagesPerSecond), r.phase,
            ]))
          fflush(nil)
        case .checkpointSaved: break
        case .checkpointFailed(let error):
          warn("checkpoint not written (\(error)); the previous one is intact")
        }
      }, shouldStop: { Interrupt.requested })
    if case .stopped(let checkpoint) = outcome {
      printer.endEpoch()
      print(
        "interrupted at step \(trainer.stepsTaken)"
          + (checkpoint.map { ": checkpoint \($0); continue with --resume" } ?? ""))
      throw ExitCode(130)
    }
    let report = trainer.sparsifier?.report
    if let report {
      print("\nper-layer sparsity at the end:")
      print(report.table)
    }
    let final = trainer.history.last?.testAccuracy ?? trainer.evaluate(on: test).accuracy
    let throughput = Double(trainer.imagesSeen) / max(trainer.trainSeconds, 1e-9)
    let meanEpoch = trainer.trainSeconds / Double(max(1, trainer.history.count))
    var line = String(
      format: "result: %@ %@ test accuracy %.2f%%, sparsity %.2f%%, %d epochs, %.1f s training",
      model.rawValue, method.rawValue, final, 100 * (report?.sparsity ?? 0), config.epochs,
      trainer.trainSeconds)
    if let d = denseEpoch {
      line += String(format: ", %.2f× a dense epoch on average", meanEpoch / d)
    }
    print(line)
    if let export, (world?.rank ?? 0) == 0 {
      print(Export.report(path: export, try SparseExport.write(net, to: export)))
    }
    if let world, world.size > 1, trainer.sparsifier != nil {
      print(
        "masks identical on all \(world.size) ranks at each of \(trainer.maskChecks) checks "
          + "(CRC-32 compared after every mask update)")
    }
    let history = trainer.history
    return TrainSummary(
      model: model.rawValue, method: method.rawValue, epochs: config.epochs, testAccuracy: final,
      trainSeconds: trainer.trainSeconds, imagesPerSecond: throughput,
      parameters: net.parameterCount, batchSize: config.batchSize,
      learningRate: config.learningRate, optimizer: config.optimizer.rawValue,
      schedule: "\(config.schedule)", seed: config.seed, threads: Threads.count,
      trainImages: train.count, testImages: test.count,
      forwardFlopsPerImage: net.forwardFLOPsPerSample, history: history,
      sparsity: report?.sparsity ?? 0, targetSparsity: sparsityConfig?.sparsity ?? 0,
      layers: report?.layers ?? [], denseEpochSeconds: denseEpoch,
      trainFlops: history.reduce(0) { $0 + $1.trainFLOPs },
      trainFlopsDense: history.reduce(0) { $0 + $1.trainFLOPsDense },
      inferenceFlops: history.last?.inferenceFLOPs ?? 0,
      inferenceFlopsDense: history.last?.inferenceFLOPsDense ?? 0,
      events: trainer.sparsifier?.events ?? [],
      training: TrainingSettings(config, stepsPerEpoch: stepsPerEpoch),
      sparseTraining: trainer.sparsifier.map { s in
        SparsitySettings(
          config: s.config, stepsPerEpoch: stepsPerEpoch,
          effectivePartitions: s.partitions.map { $0.map { s.targets[$0].name } })
      },
      scheduleEvents: (trainer.sparsifier?.events(since: 0) ?? []).map {
        ScheduleEventRecord(event: $0, stepsPerEpoch: stepsPerEpoch)
      })
  }

  /// What the ranks do, for the first line of output.
  static func distributedNote(_ method: SparsityMethod) -> String {
    method == .pgap
      ? " (P-GaP: rank i grows partition i, then data-parallel fine-tune)"
      : " (data parallel: each global batch split across the ranks)"
  }

  /// Times dense training steps of a fresh copy of the model on real batches and scales the
  /// median step to an epoch, so sparse epochs can be compared with dense ones measured in the
  /// same run. The first steps are warm-up (buffers, pages, threads): with one warm-up step and
  /// the mean of six, the cnn's reference came out 1.2–1.5× a real dense epoch measured right
  /// before and after (101 and 80 s against 67–69 s). nil for dense runs (their own epochs are
  /// the reference).
  func measureDenseEpochSeconds(config: TrainingConfig, train: Dataset) throws
    -> Double?
  {
    guard method != .dense else { return nil }
    let trainer = try Trainer(model: model.build(seed: config.seed), config: config)
    let n = min(config.batchSize, train.count)
    let indices = Array(0..<n)[...]
    for _ in 0..<3 { _ = try trainer.trainStep(train: train, indices: indices) }
    var seconds: [Double] = []
    for _ in 0..<12 {
      let start = Date()
      _ = try trainer.trainStep(train: train, indices: indices)
      seconds.append(Date().timeIntervalSince(start))
    }
    let perStep = seconds.sorted()[seconds.count / 2]
    return perStep * Double(train.count) / Double(n)
  }
}
