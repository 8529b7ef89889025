import ArgumentParser
import CCoppiceKernels
import Coppice
import Foundation

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Benchmarks: training throughput against the OpenBLAS sgemm rate.",
    subcommands: [BenchTrain.self, BenchKernels.self, BenchLayers.self])
}

/// Times `body` `repeats` times after one warm-up call; returns the median in seconds.
func medianSeconds(repeats: Int, _ body: () -> Void) -> Double {
  body()
  var times: [Double] = []
  for _ in 0..<max(1, repeats) {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
  }
  times.sort()
  return times[times.count / 2]
}

/// GFLOP/s of OpenBLAS's own threaded sgemm on an M×K by K×N product.
func openBLASGFLOPS(m: Int, k: Int, n: Int, threads: Int, repeats: Int = 5) -> Double {
  let a = Tensor(shape: [m, k])
  let b = Tensor(shape: [k, n])
  let c = Tensor(shape: [m, n])
  var rng = SeededGenerator(seed: 1)
  for i in 0..<a.count { a[i] = rng.nextUniform() - 0.5 }
  for i in 0..<b.count { b[i] = rng.nextUniform() - 0.5 }
  let t = medianSeconds(repeats: repeats) {
    ck_sgemm_openblas(
      Int32(threads), 0, 0, Int32(m), Int32(n), Int32(k), 1, a.data, Int32(k), b.data, Int32(n),
      0, c.data, Int32(n))
  }
  return 2 * Double(m) * Double(n) * Double(k) / t / 1e9
}
