import ArgumentParser
import Coppice

@main
struct CoppiceCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "coppice",
    abstract: "Sparse training with scheduled grow-and-prune, on real sparse kernels.",
    version:
      "\(Version.string) (\(KernelISA.summary)\(Threads.hasOpenMP ? ", OpenMP" : ", no OpenMP"))",
    subcommands: [Train.self, Compare.self, Bench.self, Export.self, Inspect.self])

  static func main() {
    ArgumentEncoding.requireUTF8()
    main(nil)
  }
}
