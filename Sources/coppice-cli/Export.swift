import ArgumentParser
import Coppice
import Foundation

struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write a trained model for inference with its sparse weights in CSR form "
      + "(safetensors), and check that it loads back identical.")

  @Argument(help: "A checkpoint or model file written by Coppice.") var input: String
  @Option(name: [.short, .long], help: "The export to write.") var output: String
  @Flag(help: "Evaluate the export on the test set, sparse and dense kernels, timing both.")
  var evaluate = false
  @Option(help: "Directory with the IDX files.") var dataDir = FashionMNIST.defaultDirectory
  @Option(help: "Use only the first N test images.") var limitTest: Int?

  func validate() throws {
    // Writing the export over its input would replace a training checkpoint without a word.
    var a = stat()
    var b = stat()
    if stat(input, &a) == 0, stat(output, &b) == 0, a.st_dev == b.st_dev, a.st_ino == b.st_ino {
      throw ValidationError(
        "--output \(output) is the input file; write the export to another path")
    }
  }

  func run() throws {
    do {
      let model = try Self.model(for: input)
      try model.load(path: input)
      print(Self.report(path: output, try SparseExport.write(model, to: output)))
      let copy = try Self.model(for: output)
      try copy.load(path: output)
      for (a, b) in zip(model.parameters, copy.parameters) where a.value.array != b.value.array {
        throw ValidationError("export check failed: \(a.name) differs after loading it back")
      }
      print("checked: loads back with identical weights")
      if evaluate { try compare(copy) }
    } catch let error as CoppiceError {
      throw ValidationError("\(error)")
    }
  }

  /// "wrote PATH: sizes" for an export just written.
  static func report(path: String, _ size: SparseExport.Summary) -> String {
    String(
      format: "wrote %@: %d bytes, %d sparse weights in CSR (%.1f%% of the %d bytes dense)",
      path, size.bytes, size.sparseWeights,
      100 * Double(size.bytes) / Double(max(1, size.denseBytes)), size.denseBytes)
  }

  /// The reference model a file was written for (its metadata names it and its classes).
  static func model(for path: String) throws -> Model {
    let metadata = try SafeTensors.read(path: path).metadata
    guard let name = metadata["model"], let kind = ReferenceModel(rawValue: name) else {
      throw CoppiceError.invalidFile(
        path: path, reason: "names no reference model (mlp, cnn, resnet20) in its metadata")
    }
    return kind.build(seed: 0, classes: metadata["classes"].flatMap { Int($0) } ?? 10)
  }

  private func compare(_ model: Model) throws {
    let test = try FashionMNIST.load(directory: dataDir, split: "t10k", limit: limitTest)
    for mode in [SparseDispatch.Mode.automatic, .alwaysDense] {
      SparseDispatch.mode = mode
      _ = Trainer.evaluate(model: model, on: test.prefix(1000))
      let start = Date()
      let result = Trainer.evaluate(model: model, on: test)
      let seconds = Date().timeIntervalSince(start)
      print(
        String(
          format: "%@ kernels: test accuracy %.2f%%, %.0f images/s",
          mode == .automatic ? "sparse" : "dense ", result.accuracy,
          Double(test.count) / max(seconds, 1e-9)))
    }
    SparseDispatch.mode = .automatic
  }
}
