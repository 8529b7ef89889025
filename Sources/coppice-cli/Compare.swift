import ArgumentParser
import Coppice
import Foundation

/// Runs several methods on the same model, data, seed and epoch budget and writes a Markdown
/// table and SVG plots to an output directory.
struct Compare: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Compare sparse-training methods: Markdown table and SVG plots.",
    discussion: """
      Every method trains the same model from the same seed on the same data for the same
      number of epochs (P-GaP's epochs count per worker: its workers run one after another
      here, so its wall time is κ× what κ machines would take). Writes results.md,
      accuracy.svg (zoomed to the results, with a 0–100% panel), sparsity.svg (sparsity per
      epoch and the target), layer-sparsity.svg (per layer at the end) and one JSON summary per
      method into --out.
      """)

  @Option(help: "Model: mlp, cnn or resnet20.") var model: ReferenceModel = .cnn
  @Option(
    help: "Comma-separated methods (dense, static, oneshot, gmp, set, rigl, cgap, pgap).")
  var methods = "dense,static,gmp,set,rigl,cgap,pgap"
  @Option(help: "Epochs for every method.") var epochs = TrainingConfig().epochs
  @Option(help: "Output directory.") var out = "runs/compare"
  @OptionGroup(title: "Training") var training: TrainingOptions
  @OptionGroup(title: "Sparse training") var sparse: SparsityOptions

  func parsedMethods() throws -> [SparsityMethod] {
    let names = methods.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    guard !names.isEmpty else { throw ValidationError("--methods is empty") }
    do {
      return try names.map { try SparsityMethod(parsing: $0) }
    } catch let error as CoppiceError {
      throw ValidationError("\(error)")
    }
  }

  func validate() throws {
    _ = try parsedMethods()
    try requireRange(epochs, 1...TrainingConfig.maxEpochs, "--epochs")
  }

  func run() throws {
    Threads.set(training.threads ?? Threads.availableCores)
    SparseDispatch.mode = sparse.dispatch
    let data = try loadData(
      dataDir: training.dataDir, limitTrain: training.limitTrain, limitTest: training.limitTest)
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    var results: [TrainSummary] = []
    for method in try parsedMethods() {
      print("\n=== \(method.rawValue) ===")
      let summary = try CommandLineRun(
        model: model, method: method, config: training.makeConfig(epochs: epochs),
        sparse: sparse, epochs: epochs
      ).run(train: data.train, test: data.test)
      try summary.write(to: "\(out)/\(method.rawValue).json")
      results.append(summary)
      // Rewrite the report after every method, so a long comparison is readable as it goes.
      try writeReport(results)
    }
    print("\n" + markdownTable(results))
    print(
      "wrote \(out)/results.md, \(out)/accuracy.svg, \(out)/sparsity.svg, "
        + "\(out)/layer-sparsity.svg")
  }

  func writeReport(_ results: [TrainSummary]) throws {
    let title =
      "\(model.rawValue), \(Int((sparse.sparsity * 100).rounded()))% target sparsity, "
      + "\(epochs) epochs, seed \(training.seed)"
    var md = "# coppice compare: \(title)\n\n"
    md +=
      "Command: `coppice compare \(CommandLine.arguments.dropFirst(2).joined(separator: " "))`\n\n"
    md +=
      markdownTable(results)
      + "\n\n![accuracy](accuracy.svg)\n\n![sparsity](sparsity.svg)\n\n"
      + "![per-layer sparsity](layer-sparsity.svg)\n"
    try AtomicFile.write(Data(md.utf8), to: "\(out)/results.md")
    let accuracy = results.map { r in
      SVGChart.Series(
        name: r.method, points: r.history.map { (Double($0.epoch), $0.testAccuracy) })
    }
    let accuracyChart = SVGChart.lineChart(
      title: "Test accuracy, \(title)", xLabel: "epoch", yLabel: "test accuracy (%)",
      series: accuracy, fullRange: 0...100, mainCaption: "zoomed to the results",
      fullCaption: "0–100% (shaded: the zoomed window)")
    try AtomicFile.write(Data(accuracyChart.utf8), to: "\(out)/accuracy.svg")
    let sparsity = results.map { r in
      SVGChart.Series(
        name: r.method, points: r.history.map { (Double($0.epoch), 100 * $0.sparsity) })
    }
    let target = 100 * sparse.sparsity
    // Methods at the same sparsity side by side: about 4% of the x-span over all of them.
    let span = Double(max(1, (results.map(\.history.count).max() ?? 1) - 1))
    let dodge = span * 0.04 / Double(max(1, results.count - 1))
    let sparsityChart = SVGChart.lineChart(
      title: "Sparsity at the end of each epoch, \(title)",
      xLabel: "epoch", yLabel: "sparsity (%)", series: sparsity, yRange: 0...100,
      reference: .init(y: target, label: "target \(SVGChart.format(target))%"),
      dodge: dodge)
    try AtomicFile.write(Data(sparsityChart.utf8), to: "\(out)/sparsity.svg")
    let layerNames = results.first { !$0.layers.isEmpty }?.layers.map(\.name) ?? []
    let bars = SVGChart.barChart(
      title: "Per-layer sparsity at the end", yLabel: "sparsity (%)",
      groups: layerNames.map { $0.replacingOccurrences(of: ".weight", with: "") },
      series: results.map { r in
        (r.method, layerNames.map { n in 100 * (r.layers.first { $0.name == n }?.sparsity ?? 0) })
      })
    try AtomicFile.write(Data(bars.utf8), to: "\(out)/layer-sparsity.svg")
  }

  func markdownTable(_ results: [TrainSummary]) -> String {
    let dense = results.first { $0.method == "dense" }
    var lines = [
      "| method | test accuracy | best | sparsity | train FLOPs (× dense) | inference FLOPs/image | s/epoch | vs dense epoch |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results {
      let perEpoch = r.trainSeconds / Double(max(1, r.history.count))
      let denseEpoch =
        r.denseEpochSeconds
        ?? dense.map { $0.trainSeconds / Double(max(1, $0.history.count)) }
      let ratio = denseEpoch.map { String(format: "%.2f×", perEpoch / $0) } ?? "–"
      let best = r.history.map(\.testAccuracy).max() ?? r.testAccuracy
      lines.append(
        String(
          format: "| %@ | %.2f%% | %.2f%% | %.1f%% | %.3g (%.2f) | %.3g | %.1f | %@ |", r.method,
          r.testAccuracy, best, 100 * r.sparsity, r.trainFlops,
          r.trainFlops / max(r.trainFlopsDense, 1), r.inferenceFlops, perEpoch, ratio))
    }
    return lines.joined(separator: "\n")
  }
}
