import ArgumentParser
import CCoppiceKernels
import Coppice
import Foundation

/// `coppice bench train`: training-step throughput of a reference model, dense and with static
/// masks at given sparsities, measured in interleaved rounds in one process (the ratios are
/// medians of per-round pairs against the first configuration), against the OpenBLAS sgemm
/// rate; `--profile` breaks a step down per layer and per phase.
struct BenchTrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract:
      "Training-step throughput, dense and sparse (static masks), interleaved; vs OpenBLAS sgemm."
  )

  @Option(help: "Model: mlp, cnn or resnet20.") var model: ReferenceModel = .cnn
  @Option(
    help:
      "Sparsities, comma-separated (0 = dense; others: static masks at that sparsity). Ratios are against the first."
  )
  var sparsity = "0"
  @Option(help: "Distribution of the sparsity over layers: uniform or erk.")
  var distribution: DistributionName = .uniform
  @Option(help: "Kernel choice for masked layers: automatic, alwaysSparse, alwaysDense.")
  var dispatch: SparseDispatch.Mode = .automatic
  @Option(
    help:
      "Weights kept dense in every sparse configuration, comma-separated (e.g. conv2.weight): a C-GaP step with that partition grown."
  )
  var grown = ""
  @Option(help: "Mini-batch size.") var batchSize = 128
  @Option(help: "Threads.") var threads: Int?
  @Option(help: "Interleaved rounds (every configuration runs once per round).") var rounds = 5
  @Option(help: "Timed training steps per configuration and round.") var steps = 10
  @Option(help: "Write the results as JSON to this file.") var json: String?
  @Flag(help: "Also break a step down: forward/backward per layer, data, loss, optimizer, …")
  var profile = false

  func validate() throws {
    try requireRange(batchSize, 1...4096, "--batch-size")
    try requireRange(steps, 1...1_000_000, "--steps")
    try requireRange(rounds, 1...10_000, "--rounds")
    if let t = threads { try requireRange(t, 1...Threads.maximum, "--threads") }
    _ = try sparsities()
  }

  func sparsities() throws -> [Double] {
    let parts = sparsity.split(separator: ",", omittingEmptySubsequences: false)
    let values = parts.compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 0 && $0 < 1 })
    else { throw ValidationError("--sparsity takes values in [0, 1), comma-separated") }
    return values
  }

  /// One configuration under test: a trainer on its own copy of the model.
  struct Contender {
    let sparsity: Double
    let trainer: Trainer
    let grown: [String]
    var label: String { sparsity == 0 ? "dense" : String(format: "static %.0f%%", sparsity * 100) }
  }

  /// The weights `--grown` names.
  func grownNames() -> [String] {
    grown.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
      .filter { !$0.isEmpty }
  }

  func run() throws {
    let threadCount = threads ?? Threads.availableCores
    Threads.set(threadCount)
    SparseDispatch.mode = dispatch
    let gemm = measureGEMM(threads: threadCount)
    let reference = gemm.map(\.gflops).max() ?? 1

    let data = try syntheticBatch()
    let indices = Array(0..<batchSize)[...]
    let contenders = try sparsities().map { s -> Contender in
      let trainer = try makeTrainer(sparsity: s)
      try trainer.prepareSparsity(stepsPerEpoch: 1_000_000)
      let grown = s > 0 ? grownNames() : []
      for name in grown {
        guard let target = trainer.sparsifier?.targets.first(where: { $0.name == name }) else {
          let names = (trainer.sparsifier?.targets ?? []).map(\.name).joined(separator: ", ")
          throw ValidationError("--grown: no weight \(name) (sparse weights: \(names))")
        }
        _ = try target.replaceMask(with: [UInt8](repeating: 1, count: target.count))
      }
      _ = try trainer.trainStep(train: data, indices: indices)  // warm-up: buffers, plans
      return Contender(sparsity: s, trainer: trainer, grown: grown)
    }

    // Interleaved rounds: every contender runs `steps` steps per round.
    var perRound = [[Double]](repeating: [], count: contenders.count)  // seconds per step
    for _ in 0..<rounds {
      for (i, c) in contenders.enumerated() {
        let start = monotonicSeconds()
        for _ in 0..<steps { _ = try c.trainer.trainStep(train: data, indices: indices) }
        perRound[i].append((monotonicSeconds() - start) / Double(steps))
      }
    }

    print(
      "\(model.rawValue) training step, batch \(batchSize), \(threadCount) threads, "
        + "median of \(rounds) interleaved rounds × \(steps) steps; "
        + "distribution \(distribution.rawValue)")
    let grownNote = grownNames().joined(separator: ", ")
    if !grownNote.isEmpty { print("grown (dense in every sparse configuration): \(grownNote)") }
    print("configuration   ms/step   images/s  vs \(contenders[0].label)  useful GFLOP/s")
    var records: [[String: Any]] = []
    for (i, c) in contenders.enumerated() {
      let seconds = median(perRound[i])
      let ratio = median(zip(perRound[0], perRound[i]).map { $0 / $1 })
      let flops = c.trainer.model.trainingFLOPsPerSample
      let denseGFLOPS = flops * Double(batchSize) / seconds / 1e9
      print(
        String(
          format: "%@ %9.1f %10.0f %7.2f× %12.1f",
          c.label.padding(toLength: 14, withPad: " ", startingAt: 0), seconds * 1e3,
          Double(batchSize) / seconds, ratio, denseGFLOPS))
      records.append([
        "sparsity": c.sparsity, "grown": c.grown, "label": c.label, "step_ms": seconds * 1e3,
        "images_per_second": Double(batchSize) / seconds, "speedup_vs_first": ratio,
        "round_step_ms": perRound[i].map { $0 * 1e3 },
      ])
    }
    if contenders[0].sparsity == 0 {
      let useful =
        contenders[0].trainer.model.trainingFLOPsPerSample * Double(batchSize)
        / median(perRound[0]) / 1e9
      print(
        String(
          format: "dense: %.1f useful GFLOP/s = %.0f%% of the best sgemm rate (%.1f GFLOP/s)",
          useful, 100 * useful / reference, reference))
    }

    var profiles: [[String: Any]] = []
    if profile {
      for c in contenders {
        profiles.append(try profileSteps(c, data: data, indices: indices))
      }
    }
    if let json {
      let record: [String: Any] = [
        "model": model.rawValue, "batch_size": batchSize, "threads": threadCount,
        "rounds": rounds, "steps": steps, "distribution": distribution.rawValue,
        "configurations": records, "sgemm_gflops": reference,
        "sgemm": gemm.map { ["shape": $0.shape, "gflops": $0.gflops] }, "profiles": profiles,
      ]
      let data = try JSONSerialization.data(
        withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
      try data.write(to: URL(fileURLWithPath: json))
    }
  }

  func measureGEMM(threads: Int) -> [(shape: [Int], gflops: Double)] {
    let shapes = [(256, 2304, 3136), (64, 288, 784 * batchSize), (128, 576, 196 * batchSize)]
    return shapes.map { (m, k, n) in
      let g = openBLASGFLOPS(m: m, k: k, n: n, threads: threads)
      print(
        String(
          format: "OpenBLAS sgemm %d×%d×%d (%d threads, core %@): %.1f GFLOP/s", m, k, n,
          threads, KernelISA.blasCore, g))
      return ([m, k, n], g)
    }
  }

  /// Two batches of random normal images with labels 0…9.
  func syntheticBatch() throws -> Dataset {
    var rng = SeededGenerator(seed: 2)
    let n = batchSize * 2
    var images = [Float](repeating: 0, count: n * 784)
    for i in images.indices { images[i] = rng.nextNormal() }
    let labels = (0..<n).map { Int32($0 % 10) }
    return try Dataset(images: images, labels: labels, sampleShape: [1, 28, 28], classes: 10)
  }

  func makeTrainer(sparsity: Double) throws -> Trainer {
    var config = TrainingConfig()
    config.batchSize = batchSize
    config.epochs = 1
    guard sparsity > 0 else { return try Trainer(model: model.build(seed: 0), config: config) }
    var s = SparsityConfig(method: .staticSparse, sparsity: sparsity)
    s.distribution = distribution == .uniform ? .uniform : .erk(power: 1)
    return try Trainer(model: model.build(seed: 0), config: config, sparsity: s)
  }

  /// Times `steps` steps with every Sequential and the trainer's phases timed; prints and
  /// returns the breakdown (mean milliseconds per step).
  func profileSteps(_ c: Contender, data: Dataset, indices: ArraySlice<Int>) throws -> [String:
    Any]
  {
    let sequentials = collectSequentials(c.trainer.model.network)
    for s in sequentials { s.times = LayerTimes(layerCount: s.layers.count) }
    let phases = StepTimes()
    c.trainer.stepTimes = phases
    defer {
      for s in sequentials { s.times = nil }
      c.trainer.stepTimes = nil
    }
    for _ in 0..<steps { _ = try c.trainer.trainStep(train: data, indices: indices) }
    let perStep = 1e3 / Double(steps)
    let rows = layerRows(c.trainer.model.network, scale: perStep)
    let stepMs = phases.stepSeconds * perStep

    /// One row: a name, its forward and backward milliseconds (a phase: one figure), and its
    /// share of the step.
    func row(_ name: String, _ split: (forward: Double, backward: Double)?, _ milliseconds: Double)
    {
      let label = name.padding(toLength: 43, withPad: " ", startingAt: 0)
      let figures =
        split.map { String(format: "%10.3f %12.3f", $0.forward, $0.backward) }
        ?? String(format: "%23.3f", milliseconds)
      print("\(label) \(figures) \(String(format: "%6.1f%%", 100 * milliseconds / stepMs))")
    }
    print("\n\(c.label): \(String(format: "%.2f", stepMs)) ms per step (\(steps) steps profiled)")
    print(
      "layer".padding(toLength: 44, withPad: " ", startingAt: 0) + "forward ms  backward ms   share"
    )
    for r in rows { row(r.name, (r.forward, r.backward), r.forward + r.backward) }
    let layerForward = rows.map(\.forward).reduce(0, +)
    let layerBackward = rows.map(\.backward).reduce(0, +)
    row("layers, all", (layerForward, layerBackward), layerForward + layerBackward)
    var phaseRecords: [String: Double] = [:]
    for phase in StepTimes.Phase.allCases where ![.forward, .backward].contains(phase) {
      guard phases.seconds[phase] != nil else { continue }
      let ms = phases.mean(phase) * 1e3
      phaseRecords[phase.rawValue] = ms
      row(phase.rawValue, nil, ms)
    }
    let unaccounted = stepMs - layerForward - layerBackward - phaseRecords.values.reduce(0, +)
    phaseRecords["unaccounted"] = unaccounted
    row("unaccounted", nil, unaccounted)
    return [
      "label": c.label, "sparsity": c.sparsity, "step_ms": stepMs,
      "layers": rows.map {
        ["name": $0.name, "forward_ms": $0.forward, "backward_ms": $0.backward]
      },
      "phases_ms": phaseRecords,
    ]
  }

  func collectSequentials(_ s: Sequential) -> [Sequential] {
    [s]
      + s.layers.flatMap { layer -> [Sequential] in
        if let inner = layer as? Sequential { return collectSequentials(inner) }
        if let block = layer as? ResidualBlock { return collectSequentials(block.body) }
        return []
      }
  }

  /// One row per leaf layer (depth first); a residual block adds a row for its own work (the
  /// shortcut add and ReLU): its time minus its body's.
  func layerRows(_ s: Sequential, scale: Double) -> [(
    name: String, forward: Double, backward: Double
  )] {
    guard let times = s.times else { return [] }
    var rows: [(name: String, forward: Double, backward: Double)] = []
    for (i, layer) in s.layers.enumerated() {
      let f = times.forward[i] * scale
      let b = times.backward[i] * scale
      if let inner = layer as? Sequential {
        rows += layerRows(inner, scale: scale)
      } else if let block = layer as? ResidualBlock {
        let body = layerRows(block.body, scale: scale)
        rows += body
        rows.append(
          (
            "  residual add + ReLU", f - body.map(\.forward).reduce(0, +),
            b - body.map(\.backward).reduce(0, +)
          ))
      } else {
        rows.append((layerName(layer), f, b))
      }
    }
    return rows
  }

  /// A layer's name and type; for convolutions and linear layers also the kernels its last
  /// step ran, e.g. "conv2 [F:S B:S] (Conv2d)" (S sparse, D dense; forward, backward).
  func layerName(_ layer: Layer) -> String {
    if let p = layer.parameters.first {
      let name = p.name.split(separator: ".").dropLast().joined(separator: ".")
      let ran = (layer as? Conv2d)?.execution ?? (layer as? Linear)?.execution
      let kernels = ran.map {
        " [F:\($0.forwardSparse ? "S" : "D") B:\($0.backwardSparse ? "S" : "D")]"
      }
      return "\(name)\(kernels ?? "") (\(String(describing: type(of: layer))))"
    }
    return String(describing: type(of: layer))
  }
}

func median(_ values: [Double]) -> Double {
  guard !values.isEmpty else { return 0 }
  let s = values.sorted()
  return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
