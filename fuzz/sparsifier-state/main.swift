// libFuzzer target for the sparsifier state loader, Sparsifier.restore(from:) — what
// coppice_sparsifier_load and a checkpoint's "sparsifier_state" go through. Built by
// mk/fuzz.mk together with every source of CoppiceSparsity (pure Swift) into one module.
//
// Input: one byte choosing the method (static, oneshot, gmp, set, rigl, cgap, pgap), then the
// state JSON. A fixed sparsifier of that method (three targets over host buffers) restores it;
// when the state is accepted, a few training steps follow (mask gradients, step), because
// counters that load fine but overflow later (steps_completed near Int64.max) were the bug.
// Any input must be refused with a CoppiceError or work: never trap or read out of bounds.
//
// FUZZ_WRITE_SEEDS=DIR writes the seed corpus (valid states of every method after 0 to 29
// steps, and forged ones) into DIR and exits: `make fuzz-corpus` does it.
import Foundation

let methods: [SparsityMethod] = [.staticSparse, .oneshot, .gmp, .set, .rigl, .cgap, .pgap]
let shapes: [(String, [Int])] = [("a", [6, 5]), ("b", [4, 2, 3, 3]), ("c", [7, 6])]

func config(_ method: SparsityMethod) -> SparsityConfig {
  var c = SparsityConfig(method: method, sparsity: 0.6)
  c.partitions = .balanced(count: 2, by: .parameters)
  c.gapStepLength = 3
  c.rounds = 2
  c.updateInterval = 2
  c.pruneStep = 5
  c.pruningBeginStep = 2
  c.pruningEndStep = 10
  c.pruningFrequency = 2
  return c
}

/// Host buffers (weights and gradients) for the targets; freed by `release`.
final class Host {
  let weights: [UnsafeMutablePointer<Float>]
  let gradients: [UnsafeMutablePointer<Float>]
  let sparsifier: Sparsifier

  init(_ method: SparsityMethod) throws {
    let counts = shapes.map { $0.1.reduce(1, *) }
    let w = counts.map { UnsafeMutablePointer<Float>.allocate(capacity: $0) }
    let g = counts.map { UnsafeMutablePointer<Float>.allocate(capacity: $0) }
    weights = w
    gradients = g
    for (t, n) in counts.enumerated() {
      for i in 0..<n {
        w[t][i] = Float((i * 7 + t * 3) % 11) - 5
        g[t][i] = Float((i * 5 + t) % 9) - 4
      }
    }
    let targets = try shapes.indices.map {
      try SparseTarget(name: shapes[$0].0, shape: shapes[$0].1, weights: w[$0], gradients: g[$0])
    }
    sparsifier = try Sparsifier(
      targets: targets, config: config(method), stepsPerEpoch: 6, totalSteps: 30, seed: 7)
  }

  /// A few training steps as a host runs them.
  func train(steps: Int) throws {
    for _ in 0..<steps {
      sparsifier.maskGradients()
      _ = try sparsifier.step()
    }
  }

  deinit {
    weights.forEach { $0.deallocate() }
    gradients.forEach { $0.deallocate() }
  }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSparsifierState(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  guard size >= 1, let data else { return 0 }
  let method = methods[Int(data[0]) % methods.count]
  let state = Data(bytes: data + 1, count: size - 1)
  do {
    let host = try Host(method)
    do {
      try host.sparsifier.restore(from: state)
    } catch let error as CoppiceError {
      precondition(!"\(error)".isEmpty)
      return 0
    }
    // Accepted: the masks have the targets' sizes, and training goes on without a trap.
    for t in host.sparsifier.targets { precondition(t.mask.count == t.count) }
    try host.train(steps: 4)
  } catch is CoppiceError {
  } catch {
    preconditionFailure("unexpected error type: \(error)")
  }
  return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
  _ argc: UnsafeMutablePointer<CInt>?,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> CInt {
  guard let directory = ProcessInfo.processInfo.environment["FUZZ_WRITE_SEEDS"] else { return 0 }
  do {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    var written = 0
    func write(_ name: String, _ method: Int, _ json: Data) throws {
      try (Data([UInt8(method)]) + json).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
      written += 1
    }
    for (m, method) in methods.enumerated() {
      for steps in [0, 4, 13, 29] {
        let host = try Host(method)
        try host.sparsifier.start()
        try host.train(steps: steps)
        let json = try host.sparsifier.stateData()
        try write("valid-\(method.rawValue)-step\(steps).json", m, json)
        guard steps == 13 else { continue }
        let text = String(decoding: json, as: UTF8.self)
        let forged: [(String, String)] = [
          ("steps-int64-max", "\"steps_completed\":9223372036854775807"),
          ("steps-2-62", "\"steps_completed\":4611686018427387904"),
          ("steps-negative", "\"steps_completed\":-1"),
        ]
        for (flaw, replacement) in forged {
          let bad = text.replacingOccurrences(of: "\"steps_completed\":13", with: replacement)
          try write("bad-\(method.rawValue)-\(flaw).json", m, Data(bad.utf8))
        }
      }
    }
    print("\(directory): \(written) seed files")
    exit(0)
  } catch {
    print("cannot write seeds: \(error)")
    exit(1)
  }
}
